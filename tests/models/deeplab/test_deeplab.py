"""DeepLabV3+ on AutoBackbone and the ResNet recognition helpers: tiny presets, real classes."""

from __future__ import annotations

import pytest
import torch
from testing_utils import (
    HUB_CONFIGS,
    check_gradients_reach_all_parameters,
    check_save_load_round_trip,
    load_preset,
    tiny_config,
)
from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation, ResNetForImageClassification

from hf_crossdistill.models.deeplab import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    build_resnet_classifier,
    resnet_classifier_config,
)
from hf_crossdistill.models.deeplab.dilated_resnet import dilate_resnet_backbone

TINY = "deeplabv3plus_tiny_events"


def _tiny_model(**overrides) -> DeepLabV3PlusForSemanticSegmentation:
    return DeepLabV3PlusForSemanticSegmentation(tiny_config(DeepLabV3PlusConfig, TINY, **overrides))


@pytest.mark.parametrize("channels", [1, 2, 3, 10])
def test_output_shapes_for_input_channels(channels):
    model = _tiny_model(num_channels=channels).eval()
    out = model(torch.randn(2, channels, 64, 96))
    assert out.logits.shape == (2, 6, 64, 96)
    assert out.encoder_features.shape == (2, 32, 4, 6)  # output stride 16
    assert out.decoder_features.shape == (2, 32, 16, 24)
    assert out.low_level_features.shape == (2, 16, 16, 24)
    assert out.loss is None


def test_output_stride_and_odd_sizes():
    assert _tiny_model().output_stride == 16
    assert _tiny_model(output_stride=8).eval()(torch.randn(1, 2, 64, 64)).encoder_features.shape[-2:] == (8, 8)
    assert _tiny_model(output_stride=32).eval()(torch.randn(1, 2, 64, 64)).encoder_features.shape[-2:] == (2, 2)
    # DDD17 sensor crop (200 x 346): logits come back at the input size.
    assert _tiny_model().eval()(torch.randn(1, 2, 200, 346)).logits.shape == (1, 6, 200, 346)


def test_dilation_keeps_weights_and_only_changes_strides():
    backbone = dict(load_preset(TINY)["backbone_config"], depths=[1, 1, 2, 2])
    model = _tiny_model(output_stride=32, backbone_config=dict(backbone))
    dilated = _tiny_model(output_stride=8, backbone_config=dict(backbone))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in dilated.state_dict().items()}
    # Output stride 8: stage3 (dilation 2) and stage4 (dilation 4); each first layer keeps the previous rate.
    for stage_index, (first_rate, rate) in ((2, (1, 2)), (3, (2, 4))):
        stage = dilated.backbone.encoder.stages[stage_index]
        convs = [m for m in stage.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.stride == (1, 1) for c in convs)
        first = [
            c.dilation[0]
            for c in stage.layers[0].modules()
            if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)
        ]
        later = [
            c.dilation[0]
            for c in stage.layers[1].modules()
            if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)
        ]
        assert set(first) == {first_rate} and set(later) == {rate}
    assert all(c.dilation == (1, 1) for c in model.backbone.modules() if isinstance(c, torch.nn.Conv2d))
    with pytest.raises(TypeError, match="ResNetBackbone"):
        dilate_resnet_backbone(torch.nn.Conv2d(1, 1, 1), 16)


def test_loss_ignores_255_and_gradients_reach_all_parameters():
    model = _tiny_model().train()
    labels = torch.randint(0, 6, (2, 64, 64))
    labels[:, :10] = 255
    out = model(torch.randn(2, 2, 64, 64), labels=labels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    check_gradients_reach_all_parameters(model, out.loss)
    all_ignored = model(torch.randn(2, 2, 64, 64), labels=torch.full((2, 64, 64), 255)).loss
    assert float(all_ignored.detach()) == 0.0


def test_input_validation():
    model = _tiny_model()
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="labels must be"):
        model(torch.randn(1, 2, 32, 32), labels=torch.zeros(1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="output_stride"):
        tiny_config(DeepLabV3PlusConfig, TINY, output_stride=4)
    with pytest.raises(ValueError, match="out_features"):
        DeepLabV3PlusConfig(backbone_config={"model_type": "resnet", "out_features": ["stage4"]})


def test_save_load_round_trip_with_auto_classes():
    model = _tiny_model()
    inputs = {"pixel_values": torch.randn(2, 2, 64, 64)}
    reloaded = check_save_load_round_trip(model, inputs)  # AutoModel
    assert reloaded.output_stride == 16
    check_save_load_round_trip(model, inputs, load=AutoModelForSemanticSegmentation.from_pretrained)


@pytest.mark.parametrize("name", ["image", "events", "aps"])
def test_presets_load_with_autoconfig(name):
    for size in ("tiny", "resnet101"):
        path = HUB_CONFIGS / "models" / f"deeplabv3plus_{size}_{name}.json"
        config = AutoConfig.from_pretrained(path)
        assert isinstance(config, DeepLabV3PlusConfig)
        assert config.num_channels == {"image": 3, "events": 2, "aps": 1}[name]
        assert config.backbone_config.num_channels == config.num_channels
        assert config.num_labels == 6 and config.ignore_index == 255
        # The file is exactly what save_pretrained writes for that config.
        assert config.to_dict() == AutoConfig.from_pretrained(path).to_dict()
        assert load_preset(path.stem)["model_type"] == "deeplabv3plus"


def test_paper_size_presets_on_meta_device(capsys):
    for name in ("image", "events"):
        config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"deeplabv3plus_resnet101_{name}.json")
        assert config.backbone_config.depths == [3, 4, 23, 3]
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        assert model.output_stride == 16
        count = sum(p.numel() for p in model.parameters())
        with capsys.disabled():
            print(f"\ndeeplabv3plus_resnet101_{name}: {count / 1e6:.2f} M parameters")
        # ResNet-101 backbone (~42.5 M) + ASPP + decoder (~16.5 M): the usual ~59 M DeepLabV3+ ResNet-101.
        assert 55e6 < count < 62e6


def test_recognition_presets_and_helper(capsys):
    tiny = build_resnet_classifier(HUB_CONFIGS / "models" / "resnet_tiny_events_ncaltech.json")
    assert isinstance(tiny, ResNetForImageClassification)
    x = torch.randn(2, tiny.config.num_channels, 48, 64)
    out = tiny(pixel_values=x, labels=torch.tensor([0, 3]))
    assert out.logits.shape == (2, tiny.config.num_labels)
    check_gradients_reach_all_parameters(tiny, out.loss)
    check_save_load_round_trip(
        tiny, {"pixel_values": x}, load=lambda p: ResNetForImageClassification.from_pretrained(p)
    )
    custom = build_resnet_classifier(
        HUB_CONFIGS / "models" / "resnet_tiny_events_ncaltech.json", num_channels=5, num_labels=7
    )
    assert custom.eval()(pixel_values=torch.randn(1, 5, 32, 32)).logits.shape == (1, 7)
    config = resnet_classifier_config(HUB_CONFIGS / "models" / "resnet34_events_ncaltech.json")
    assert config.depths == [3, 4, 6, 3] and config.layer_type == "basic" and config.num_labels == 101
    with torch.device("meta"):
        count = sum(p.numel() for p in ResNetForImageClassification(config).parameters())
    with capsys.disabled():
        print(f"\nresnet34_events_ncaltech: {count / 1e6:.2f} M parameters")
    assert 21e6 < count < 22e6
    with pytest.raises(FileNotFoundError):
        resnet_classifier_config("does/not/exist.json")
    with pytest.raises(ValueError, match="num_channels"):
        resnet_classifier_config(None, num_channels=0)

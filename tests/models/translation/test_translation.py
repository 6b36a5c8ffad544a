"""BMR generators, PatchGAN discriminators and the modality classifier h: tiny presets, real classes."""

from __future__ import annotations

import pytest
import torch
from testing_utils import HUB_CONFIGS, check_gradients_reach_all_parameters, check_save_load_round_trip, tiny_config
from transformers import AutoConfig, AutoModel

from hf_crossdistill.models.translation import (
    BMRGenerator,
    BMRGeneratorConfig,
    ModalityClassifier,
    ModalityClassifierConfig,
    PatchGANDiscriminator,
    PatchGANDiscriminatorConfig,
    log_gradient_event_prior,
)


def _generator(preset="bmr_generator_events_to_image_tiny", **overrides) -> BMRGenerator:
    return BMRGenerator(tiny_config(BMRGeneratorConfig, preset, **overrides))


@pytest.mark.parametrize(("in_channels", "out_channels"), [(1, 3), (2, 3), (3, 2), (5, 1)])
@pytest.mark.parametrize("size", [(32, 48), (37, 50)])  # the second is not a multiple of 4: padded and cropped
def test_generator_shapes(in_channels, out_channels, size):
    model = _generator(in_channels=in_channels, out_channels=out_channels).eval()
    out = model(torch.randn(2, in_channels, *size)).generated
    assert out.shape == (2, out_channels, *size)
    assert torch.isfinite(out).all()


def test_generator_output_activations():
    x = torch.randn(1, 3, 16, 16) * 10
    sig = _generator("bmr_generator_image_to_events_tiny").eval()(x).generated
    assert sig.min() >= 0 and sig.max() <= 1
    tanh = _generator(output_activation="tanh").eval()(torch.randn(1, 2, 16, 16) * 10).generated
    assert tanh.abs().max() <= 1
    with pytest.raises(ValueError, match="output_activation"):
        BMRGeneratorConfig(output_activation="relu")
    with pytest.raises(ValueError, match="pixel_values must be"):
        _generator()(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_gradients_reach_all_parameters(norm):
    gen = _generator(norm=norm).train()
    disc = PatchGANDiscriminator(tiny_config(PatchGANDiscriminatorConfig, "bmr_discriminator_image_tiny", norm=norm))
    fake = gen(torch.randn(2, 2, 32, 32)).generated
    check_gradients_reach_all_parameters(gen, fake.square().mean())
    logits = disc(torch.randn(2, 3, 32, 32)).logits
    assert logits.shape[:2] == (2, 1)
    check_gradients_reach_all_parameters(disc, logits.square().mean())


def test_patchgan_receptive_field_is_local():
    # Paper-size PatchGAN layout: a change in one corner leaves far patch logits unchanged (70x70 field).
    # Without normalisation: instance-norm statistics span the whole image and would couple all patches.
    config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / "bmr_discriminator_image.json")
    disc = PatchGANDiscriminator(
        PatchGANDiscriminatorConfig(**{**config.to_dict(), "base_channels": 4, "norm": "none"})
    ).eval()
    x = torch.randn(1, 3, 160, 160)
    y = x.clone()
    y[..., :8, :8] += 5.0
    a, b = disc(x).logits, disc(y).logits
    assert a.shape == (1, 1, 18, 18)
    changed = (a - b).abs()[0, 0] > 1e-6
    assert changed[0, 0] and not changed[-1, -1] and not changed[10:, 10:].any()


def test_modality_classifier():
    h = ModalityClassifier(tiny_config(ModalityClassifierConfig, "bmr_modality_classifier_tiny"))
    logits = h(torch.randn(2, 192, 5, 7)).logits
    assert logits.shape == (2, 1, 5, 7)
    check_gradients_reach_all_parameters(h, logits.mean())
    with pytest.raises(ValueError, match="must be"):
        h(torch.randn(2, 10, 5, 7))


@pytest.mark.parametrize(
    ("preset", "cls", "shape"),
    [
        ("bmr_generator_events_to_image_tiny", BMRGenerator, (2, 2, 32, 32)),
        ("bmr_generator_image_to_events_tiny", BMRGenerator, (2, 3, 32, 32)),
        ("bmr_discriminator_image_tiny", PatchGANDiscriminator, (2, 3, 32, 32)),
        ("bmr_discriminator_events_tiny", PatchGANDiscriminator, (2, 2, 32, 32)),
        ("bmr_modality_classifier_tiny", ModalityClassifier, (2, 192, 4, 4)),
    ],
)
def test_save_load_round_trip_with_automodel(preset, cls, shape):
    config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{preset}.json")
    model = AutoModel.from_config(config)
    assert type(model) is cls
    # Train a step so norm statistics and weights differ from a fresh initialisation.
    model.train()
    out = next(iter(model(torch.randn(*shape)).values()))
    out.mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * p.grad.sign())
    check_save_load_round_trip(model, {model.main_input_name: torch.randn(*shape)})


def test_paper_size_presets_on_meta_device(capsys):
    counts = {}
    for name in (
        "bmr_generator_events_to_image",
        "bmr_generator_image_to_events",
        "bmr_discriminator_image",
        "bmr_discriminator_events",
        "bmr_modality_classifier",
    ):
        config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{name}.json")
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        counts[name] = sum(p.numel() for p in model.parameters())
    with capsys.disabled():
        print("\n" + "\n".join(f"{k}: {v / 1e6:.2f} M parameters" for k, v in counts.items()))
    # CycleGAN's 9-block ResNet generator has 11.4 M parameters, the 70x70 PatchGAN 2.8 M.
    assert 11.0e6 < counts["bmr_generator_events_to_image"] < 11.6e6
    assert 2.7e6 < counts["bmr_discriminator_image"] < 2.8e6


def test_log_gradient_prior_is_zero_on_flat_images_and_fires_on_edges():
    flat = torch.full((2, 3, 16, 20), 0.4)
    assert log_gradient_event_prior(flat).abs().max() == 0
    # A vertical step edge between columns 9 and 10: the prior peaks (1) on the edge, is 0 away from it.
    step = torch.full((1, 3, 16, 20), 0.2)
    step[..., 10:] = 0.9
    prior = log_gradient_event_prior(step, spread=1)
    assert prior.shape == (1, 1, 16, 20) and prior.min() >= 0
    assert prior[0, 0, :, 9:11].min() == 1.0 and prior[0, 0, :, :8].max() == 0 and prior[0, 0, :, 12:].max() == 0
    # Spreading widens the band (the sensor moves over the edge); the same contrast in log gives the same map.
    assert (log_gradient_event_prior(step, spread=5)[0, 0, 0] > 0).sum() > (prior[0, 0, 0] > 0).sum()
    torch.testing.assert_close(log_gradient_event_prior(step * 0.5), log_gradient_event_prior(step), atol=0.05, rtol=0)
    # Gray inputs of any channel count; differentiable with finite gradients, also where the image is flat.
    gray = step.mean(dim=1, keepdim=True).requires_grad_(True)
    log_gradient_event_prior(gray).sum().backward()
    assert torch.isfinite(gray.grad).all() and gray.grad.abs().sum() > 0
    for bad, match in ((torch.rand(3, 8, 8), "must be"), (torch.ones(1, 1, 8, 8, dtype=torch.long), "floating")):
        with pytest.raises(ValueError, match=match):
            log_gradient_event_prior(bad)
    with pytest.raises(ValueError, match="spread"):
        log_gradient_event_prior(flat, spread=2)


def test_edge_prior_switch_keeps_the_state_dict_and_starts_from_the_prior():
    preset = "bmr_generator_image_to_events_tiny"
    assert BMRGeneratorConfig().edge_prior == "none"  # default off: old presets and checkpoints unchanged
    torch.manual_seed(0)
    plain = _generator(preset).eval()
    torch.manual_seed(0)
    prior = _generator(preset, edge_prior="log_gradient", edge_prior_spread=3).eval()
    assert plain.state_dict().keys() == prior.state_dict().keys()  # the branch has no parameters or buffers
    prior.load_state_dict(plain.state_dict(), strict=True)
    x = torch.rand(2, 3, 24, 30)
    assert not torch.allclose(plain(x).generated, prior(x).generated)
    check_gradients_reach_all_parameters(prior.train(), prior(x).generated.square().mean())
    check_save_load_round_trip(prior, {"pixel_values": x})
    # With a zero residual the generator draws the prior itself (in both polarity channels).
    with torch.no_grad():
        prior.layers[-1].weight.zero_()
        prior.layers[-1].bias.zero_()
    expected = log_gradient_event_prior(x, 3).clamp(0.01, 0.99).expand(-1, 2, -1, -1)
    torch.testing.assert_close(prior.eval()(x).generated, expected)
    for bad in ({"edge_prior": "sobel"}, {"edge_prior_spread": 4}, {"edge_prior_spread": 0}):
        with pytest.raises(ValueError, match="edge_prior"):
            BMRGeneratorConfig(**bad)

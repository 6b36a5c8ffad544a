"""BEVDetectorModel / BEVDetectorForObjectDetection: forward/backward per modality, gradients, save/load."""

from __future__ import annotations

import pytest
import torch
from bev_detector_helpers import TINY_PRESETS, make_contract_batch
from testing_utils import check_gradients_reach_all_parameters, check_save_load_round_trip, tiny_config
from transformers import AutoModel, AutoModelForObjectDetection

from hf_crossdistill.models.bev_detector import (
    BEVDetectorConfig,
    BEVDetectorForObjectDetection,
    BEVDetectorModel,
    BEVDetectorOutput,
)

MODALITIES = list(TINY_PRESETS)
CAMERA_KEYS = ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar")


def _inputs(batch: dict, modality: str, with_targets: bool = True) -> dict:
    keys = {"bev_aug_matrix"}
    if modality != "camera":
        keys.add("points")
    if modality in ("camera", "fusion"):
        keys.update(CAMERA_KEYS)
    if with_targets:
        keys.update({"gt_boxes", "gt_labels", "gt_mask"})
    return {k: v for k, v in batch.items() if k in keys}


@pytest.mark.parametrize("modality", MODALITIES)
def test_forward_backward_contract_batch(modality, contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS[modality])
    model = BEVDetectorForObjectDetection(config).train()
    out = model(**_inputs(contract_batch, modality))
    assert isinstance(out, BEVDetectorOutput)
    h, w = config.bev_shape
    assert out.low_level_bev.shape == (2, config.low_bev_channels, h, w)
    assert out.high_level_bev.shape == (2, config.high_bev_channels, h, w)
    assert out.heatmap_logits.shape == (2, 10, h, w)
    assert out.regression.shape == (2, 6 * 10, h, w)
    assert set(out.loss_dict) == {"heatmap_loss", "bbox_loss"}
    assert all(not v.requires_grad and v.ndim == 0 for v in out.loss_dict.values())
    expected = (
        config.heatmap_loss_weight * out.loss_dict["heatmap_loss"]
        + config.bbox_loss_weight * out.loss_dict["bbox_loss"]
    )
    torch.testing.assert_close(out.loss.detach(), expected)
    # Every trainable parameter (encoders, fuser, backbone, all six task heads) is reached by the loss.
    check_gradients_reach_all_parameters(model, out.loss)


def test_camera_count_comes_from_input(contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["camera"])
    model = BEVDetectorModel(config).eval()
    for num_cams in (1, 3):
        batch = make_contract_batch(num_cams=num_cams)
        out = model(**_inputs(batch, "camera", with_targets=False))
        assert out.low_level_bev.shape[0] == 2
        assert out.low_level_bev.abs().sum() > 0


def test_padded_boxes_contribute_nothing(contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"])
    model = BEVDetectorForObjectDetection(config).eval()
    inputs = _inputs(contract_batch, "pillar")
    with torch.no_grad():
        base = model(**inputs).loss
        garbage = dict(inputs, gt_boxes=inputs["gt_boxes"].clone(), gt_labels=inputs["gt_labels"].clone())
        garbage["gt_boxes"][0, 3] = torch.tensor([1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0])
        garbage["gt_labels"][0, 3] = 4
        torch.testing.assert_close(model(**garbage).loss, base)


@pytest.mark.parametrize("modality", ["lidar", "camera", "fusion"])
def test_save_load_round_trip(modality, contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS[modality])
    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(config)
    # A few training steps so BatchNorm statistics differ from their initial values.
    model.train()
    with torch.no_grad():
        model(**_inputs(contract_batch, modality))
    reloaded = check_save_load_round_trip(
        model, _inputs(contract_batch, modality), load=AutoModelForObjectDetection.from_pretrained
    )
    if modality != "lidar":
        # Non-persistent buffers (depth bins, image normalisation) are rebuilt from the config on load.
        encoder = reloaded.model.camera_encoder
        torch.testing.assert_close(encoder.depths, model.model.camera_encoder.depths)
        torch.testing.assert_close(encoder.image_std, model.model.camera_encoder.image_std)


def test_auto_model_round_trip_base_model(contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["fusion"])
    model = BEVDetectorModel(config)
    reloaded = check_save_load_round_trip(model, _inputs(contract_batch, "fusion", with_targets=False))
    assert isinstance(reloaded, BEVDetectorModel)


def test_auto_model_loads_base_from_detection_checkpoint(tmp_path, contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"])
    detector = BEVDetectorForObjectDetection(config).eval()
    detector.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, BEVDetectorModel)
    inputs = _inputs(contract_batch, "lidar", with_targets=False)
    with torch.no_grad():
        torch.testing.assert_close(base(**inputs).high_level_bev, detector(**inputs).high_level_bev)


def test_missing_inputs_have_clear_errors(contract_batch):
    camera = BEVDetectorForObjectDetection(tiny_config(BEVDetectorConfig, TINY_PRESETS["camera"]))
    with pytest.raises(ValueError, match="needs `images`"):
        camera(points=contract_batch["points"])
    inputs = _inputs(contract_batch, "camera", with_targets=False)
    inputs["intrinsics"] = inputs["intrinsics"][:, :1]
    with pytest.raises(ValueError, match="intrinsics must be"):
        camera(**inputs)
    lidar = BEVDetectorForObjectDetection(tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"]))
    with pytest.raises(ValueError, match="needs `points`"):
        lidar(images=contract_batch["images"])
    with pytest.raises(ValueError, match=r"points must be a \(P, 6\)"):
        lidar(points=contract_batch["points"][:, :4])
    with pytest.raises(ValueError, match="gt_labels"):
        lidar(points=contract_batch["points"], gt_boxes=contract_batch["gt_boxes"])


def test_every_parameter_is_in_the_graph_when_tasks_have_no_boxes(contract_batch):
    """DDP needs every parameter in the graph even when a batch only holds cars."""
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"])
    model = BEVDetectorForObjectDetection(config).train()
    inputs = _inputs(contract_batch, "pillar")
    inputs["gt_mask"] = inputs["gt_mask"] & (inputs["gt_labels"] == 0)
    model(**inputs).loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_config_label_maps_mirror_class_names():
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"])
    assert config.id2label == dict(enumerate(config.class_names)) and config.num_labels == 10


def test_shared_regression_branch_matches_separate_branches_when_weights_agree(contract_batch):
    """The shared branch is the five CenterPoint branches with their first convs tied: same outputs, a third of
    the head's convolutions; and a model with it trains (gradients everywhere) and round-trips."""
    separate = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"], shared_regression_branch=False)
    shared = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"], shared_regression_branch=True)
    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(shared).train()
    out = model(**_inputs(contract_batch, "pillar"))
    assert out.regression.shape == (2, len(shared.tasks) * 10, *shared.bev_shape)
    check_gradients_reach_all_parameters(model, out.loss)
    reference = BEVDetectorForObjectDetection(separate).eval()
    model.eval()
    # Copy everything but the regression branches, then build each separate branch from the shared one: the
    # first conv + BN are the shared trunk, the output conv is the shared output conv's rows for that branch.
    state = {k: v for k, v in model.state_dict().items() if ".regression." not in k}
    missing = reference.load_state_dict(state, strict=False).missing_keys
    assert missing and all(".regression." in k for k in missing)
    start = 0
    for name, size in (("offset", 2), ("height", 1), ("size", 3), ("heading", 2), ("velocity", 2)):
        for task_ref, task in zip(reference.head.tasks, model.head.tasks):
            branch = task_ref.regression[name]
            branch[0].load_state_dict(task.regression[0].state_dict())
            branch[1].load_state_dict(task.regression[1].state_dict())
            branch[3].weight.data.copy_(task.regression[3].weight[start : start + size])
            branch[3].bias.data.copy_(task.regression[3].bias[start : start + size])
        start += size
    inputs = _inputs(contract_batch, "pillar", with_targets=False)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).regression, reference(**inputs).regression)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in reference.parameters())
    with pytest.raises(ValueError, match="shared_regression_branch"):
        tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"], shared_regression_branch="yes")


def test_depth_supervision_adds_a_depth_term_from_the_lidar_points(contract_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["camera"], depth_loss_weight=3.0)
    model = BEVDetectorForObjectDetection(config).train()
    inputs = _inputs(contract_batch, "camera")
    out = model(points=contract_batch["points"], **inputs)
    assert set(out.loss_dict) == {"heatmap_loss", "bbox_loss", "depth_loss"} and out.loss_dict["depth_loss"] > 0
    expected = (
        config.heatmap_loss_weight * out.loss_dict["heatmap_loss"]
        + config.bbox_loss_weight * out.loss_dict["bbox_loss"]
        + 3.0 * out.loss_dict["depth_loss"]
    )
    torch.testing.assert_close(out.loss.detach(), expected)
    with pytest.raises(ValueError, match="need the LiDAR `points`"):
        model(**inputs)
    # Inference needs no points; without the weight the points are ignored (BEVDet).
    model(**_inputs(contract_batch, "camera", with_targets=False))
    plain = BEVDetectorForObjectDetection(tiny_config(BEVDetectorConfig, TINY_PRESETS["camera"])).train()
    assert "depth_loss" not in plain(points=contract_batch["points"], **inputs).loss_dict
    with pytest.raises(ValueError, match="depth_loss_weight"):
        tiny_config(BEVDetectorConfig, TINY_PRESETS["camera"], depth_loss_weight=-1.0)


@pytest.mark.parametrize("modality", ["pillar", "camera"])
def test_trains_under_bfloat16_autocast_with_float32_losses(modality, contract_batch):
    """`bf16: true` recipes run the forward under CPU autocast: the losses (focal, L1, depth) stay float32 and
    finite, the depth targets' geometry too, and every parameter still gets a gradient."""
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS[modality], depth_loss_weight=3.0)
    model = BEVDetectorForObjectDetection(config).train()
    inputs = _inputs(contract_batch, modality)
    inputs["points"] = contract_batch["points"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert out.heatmap_logits.dtype == torch.bfloat16  # the convs did run in bf16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.loss_dict.values())
    check_gradients_reach_all_parameters(model, out.loss)

"""UniDistillConfig validation and the adaptive layers (no detector needed)."""

from __future__ import annotations

import pytest
import torch

from hf_crossdistill.distill.unidistill_config import PAPER_LOSS_WEIGHTS, UniDistillConfig
from hf_crossdistill.models.adaptive import BEVAdaptiveLayers, check_same_grid


def make_config(tmp_path, **overrides) -> UniDistillConfig:
    return UniDistillConfig(output_dir=str(tmp_path), report_to="none", **overrides)


def test_config_defaults_suit_bev_batches(tmp_path):
    config = make_config(tmp_path)
    assert config.remove_unused_columns is False
    assert config.accelerator_config.dispatch_batches is False  # sample_token strings cannot be dispatched
    assert config.label_names == ["gt_boxes", "gt_labels", "gt_mask"]
    assert config.loss_weights == (10.0, 5.0, 10.0)
    assert not config.distills
    # The study's switches default to the paper's behaviour.
    assert config.feature_normalization == "none" and config.loss_balancing == "none"
    assert config.feature_region == "crucial_points"
    assert config.kd_warmup_steps == 0 and config.diagnostics_steps == 0


def test_paper_loss_weights():
    assert PAPER_LOSS_WEIGHTS["lidar_camera_to_lidar"] == (10.0, 1.0, 10.0)
    assert PAPER_LOSS_WEIGHTS["lidar_camera_to_camera"] == (10.0, 5.0, 10.0)
    assert PAPER_LOSS_WEIGHTS["camera_to_lidar"] == (10.0, 5.0, 1.0)
    assert PAPER_LOSS_WEIGHTS["lidar_to_camera"] == (100.0, 40.0, 10.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lambda_feature": -1.0}, "lambda_feature"),
        ({"lambda_response": float("nan")}, "lambda_response"),
        ({"teacher_temperature": 0.0}, "teacher_temperature"),
        ({"response_min_overlap": 1.0}, "response_min_overlap"),
        ({"response_min_radius": -2}, "response_min_radius"),
        ({"adaptive_kernel_size": 2}, "adaptive_kernel_size"),
        ({"remove_unused_columns": True}, "remove_unused_columns"),
        ({"use_adaptive_layers": True}, "needs a teacher"),
        ({"use_adaptive_layers": True, "teacher_model_name_or_path": "t", "lambda_relation": 0.0}, "lambda_relation"),
        ({"feature_normalization": "batch"}, "feature_normalization"),
        ({"feature_region": "everywhere"}, "feature_region"),
        ({"loss_balancing": "gradnorm"}, "loss_balancing"),
        ({"loss_balancing_interval": 0}, "loss_balancing_interval"),
        ({"kd_warmup_steps": -1}, "kd_warmup_steps"),
        ({"kd_warmup_steps": 2.5}, "kd_warmup_steps"),
        ({"diagnostics_steps": True}, "diagnostics_steps"),
    ],
)
def test_config_validation(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(tmp_path, **overrides)


def test_adaptive_layers_map_channels_and_keep_the_grid():
    layers = BEVAdaptiveLayers(3, 5, 4, 7, kernel_size=3)
    low, high = layers(torch.randn(2, 3, 6, 8), torch.randn(2, 4, 6, 8))
    assert low.shape == (2, 5, 6, 8) and high.shape == (2, 7, 6, 8)
    (low.sum() + high.sum()).backward()
    assert all(p.grad is not None for p in layers.parameters())
    with pytest.raises(ValueError, match="low_level_bev"):
        layers(torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8))
    with pytest.raises(ValueError, match="kernel_size"):
        BEVAdaptiveLayers(3, 5, 4, 7, kernel_size=2)
    with pytest.raises(ValueError, match="teacher_high_channels"):
        BEVAdaptiveLayers(3, 5, 4, 0)


def test_grid_check_names_the_level():
    check_same_grid(torch.zeros(1, 3, 4, 4), torch.zeros(1, 8, 4, 4), "low-level BEV")  # channels may differ
    with pytest.raises(ValueError, match="high-level BEV.*grid"):
        check_same_grid(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8), "high-level BEV")

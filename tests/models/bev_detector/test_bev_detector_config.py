"""BEVDetectorConfig: presets, validation, paper-size parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from testing_utils import HUB_CONFIGS, tiny_config
from transformers import AutoConfig

from hf_crossdistill.data.nuscenes import NUSCENES_CLASSES
from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection

PRESETS = sorted(HUB_CONFIGS.glob("models/bev_*.json"))
PAPER_PRESETS = ["bev_lidar_nuscenes", "bev_camera_nuscenes", "bev_fusion_nuscenes"]


def test_presets_exist():
    names = {p.stem for p in PRESETS}
    for name in PAPER_PRESETS:
        assert name in names and f"{name}_tiny" in names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_with_autoconfig_and_is_what_save_pretrained_writes(path, tmp_path):
    config = AutoConfig.from_pretrained(path)
    assert isinstance(config, BEVDetectorConfig)
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    stored = json.loads(path.read_text())
    written.pop("transformers_version"), stored.pop("transformers_version")
    assert written == stored, f"{path.name} differs from what save_pretrained writes for the same config"


def test_paper_presets_follow_the_paper():
    for name in PAPER_PRESETS:
        config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{name}.json")
        assert config.bev_shape == (180, 180) and config.bev_cell_size == pytest.approx(0.6)
        assert config.point_cloud_range == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
        assert config.voxel_size == [0.075, 0.075, 0.2]
        assert (config.low_bev_channels, config.high_bev_channels) == (256, 512)
        assert config.num_sweeps == 10 and config.class_names == list(NUSCENES_CLASSES)
        assert [len(t) for t in config.tasks] == [1, 2, 2, 1, 2, 2]
        if "camera" in config.modalities:
            assert config.num_depth_bins == 112 and config.depth_bins == [2.0, 58.0, 0.5]
            assert config.image_size == [256, 704]
            backbone = config.image_backbone_config
            assert backbone.model_type == "resnet" and backbone.depths == [3, 4, 6, 3]
            assert backbone.layer_type == "bottleneck"


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_instantiate_on_meta_device(name):
    config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{name}.json")
    with torch.device("meta"):
        model = BEVDetectorForObjectDetection(config)
    counts = {
        part: sum(p.numel() for p in module.parameters())
        for part, module in [
            ("lidar", model.model.lidar_encoder),
            ("camera", model.model.camera_encoder),
            ("fuser", model.model.fuser),
            ("bev_backbone", model.model.bev_backbone),
            ("head", model.head),
        ]
        if module is not None
    }
    total = sum(p.numel() for p in model.parameters())
    print(f"{name}: {total / 1e6:.2f} M parameters " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in counts.items()))
    # SECOND backbone (two levels of 6 convs + deconvs) ≈ 4.8 M; CenterPoint head ≈ 1.3 M.
    assert 4e6 < counts["bev_backbone"] < 6e6
    assert 0.5e6 < counts["head"] < 2e6
    if "lidar" in counts:
        assert 2e6 < counts["lidar"] < 8e6  # sparse ResNet 16→128 with 3×3×3 kernels
    if "camera" in counts:
        assert 25e6 < counts["camera"] < 45e6  # ResNet-50 trunk (23.5 M) + neck + depth head
    assert 5e6 < total < 60e6


def test_default_tasks_follow_the_class_order():
    config = BEVDetectorConfig()
    assert [c for t in config.tasks for c in t] == list(NUSCENES_CLASSES)
    assert config.num_classes == 10


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modalities": ["radar"]}, "modalities must be"),
        ({"modalities": []}, "modalities must be"),
        ({"lidar_encoder": "points"}, "lidar_encoder must be one of"),
        ({"voxel_size": [0.7, 0.7, 0.4]}, "not a multiple of voxel_size"),
        ({"voxel_size": [0.4, 0.2, 0.4], "point_cloud_range": [-51.2, -51.2, -5, 51.2, 51.2, 3]}, "must be square"),
        ({"out_size_factor": 8}, "downsamples by 4"),
        ({"low_bev_channels": 48}, "height compression gives"),
        ({"high_bev_channels": 96}, "sum to 64 but high_bev_channels is 96"),
        ({"bev_upsample_strides": [1, 1]}, "come back to stride 1"),
        ({"tasks": [["car"], ["truck"]]}, "concatenated must equal class_names"),
        ({"nms_radii": [1.0]}, "nms_radii has 1 values"),
        ({"code_weights": [1.0] * 9}, "code_weights needs 10"),
        ({"min_overlap": 1.5}, "min_overlap must be"),
        ({"point_cloud_range": [0, 0, 0, -1, 1, 1]}, "max > min"),
    ],
)
def test_config_validation_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(BEVDetectorConfig, "bev_lidar_nuscenes_tiny", **overrides)


def test_camera_config_validation_errors():
    with pytest.raises(ValueError, match="depth_bins"):
        tiny_config(BEVDetectorConfig, "bev_camera_nuscenes_tiny", depth_bins=[5.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="not a multiple of step"):
        tiny_config(BEVDetectorConfig, "bev_camera_nuscenes_tiny", depth_bins=[2.0, 50.0, 5.0])
    with pytest.raises(ValueError, match="tasks` must be given"):
        BEVDetectorConfig(class_names=["car", "bus"])


def test_camera_default_backbone_is_resnet50():
    config = BEVDetectorConfig(modalities=["camera"])
    assert config.image_backbone_config.model_type == "resnet"
    assert config.image_backbone_config.out_features == ["stage3", "stage4"]
    assert BEVDetectorConfig(modalities=["lidar"]).image_backbone_config is None

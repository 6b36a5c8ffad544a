"""The *_small quality presets (0.8 m BEV cells) and their supervised recipes on the generated trainval."""

from __future__ import annotations

import pytest
import torch
from bev_detector_helpers import make_contract_batch
from testing_utils import HUB_CONFIGS, REPO_ROOT, load_script
from transformers import AutoConfig

from hf_crossdistill.distill._arguments import has_accelerator
from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection

SMALL_PRESETS = {
    "lidar": "bev_lidar_pillar_nuscenes_small",
    "camera": "bev_camera_nuscenes_small",
    "fusion": "bev_fusion_pillar_nuscenes_small",
    "camera_depth": "bev_camera_depth_nuscenes_small",  # + LiDAR depth supervision at training time
}
MODALITIES = {"lidar": ["lidar"], "camera": ["camera"], "fusion": ["lidar", "camera"], "camera_depth": ["camera"]}
CAMERA_KEYS = ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar")


def _config(modality: str) -> BEVDetectorConfig:
    config = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{SMALL_PRESETS[modality]}.json")
    assert isinstance(config, BEVDetectorConfig)
    return config


def _inputs(batch: dict, modality: str) -> dict:
    keys = {"bev_aug_matrix", "gt_boxes", "gt_labels", "gt_mask"}
    if modality != "camera":
        keys.add("points")
    if modality != "lidar":
        keys.update(CAMERA_KEYS)
    return {k: v for k, v in batch.items() if k in keys}


def test_small_presets_share_one_finer_grid():
    configs = {m: _config(m) for m in SMALL_PRESETS}
    tiny = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / "bev_lidar_pillar_nuscenes_tiny.json")
    for modality, config in configs.items():
        assert sorted(config.modalities) == sorted(MODALITIES[modality])
        assert config.lidar_encoder == "pillar"  # the dense encoder: no plain-torch sparse convs on CPU
        assert config.bev_shape == (128, 128) and config.bev_cell_size == pytest.approx(0.8)
        assert config.bev_cell_size == pytest.approx(tiny.bev_cell_size / 2)
        # Same grid and channels everywhere, so any small detector can distil any other.
        assert (config.low_bev_channels, config.high_bev_channels) == (
            configs["lidar"].low_bev_channels,
            configs["lidar"].high_bev_channels,
        )
        assert list(config.point_cloud_range) == list(configs["lidar"].point_cloud_range)


@pytest.mark.parametrize("modality", list(SMALL_PRESETS))
def test_small_preset_builds_and_trains_one_step(modality):
    torch.manual_seed(0)
    config = _config(modality)
    model = BEVDetectorForObjectDetection(config).train()
    batch = make_contract_batch(num_points=2000, image_hw=tuple(config.image_size))
    out = model(**_inputs(batch, modality))
    h, w = config.bev_shape
    assert out.low_level_bev.shape == (2, config.low_bev_channels, h, w)
    assert out.high_level_bev.shape == (2, config.high_bev_channels, h, w)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def _load_script():
    return load_script(REPO_ROOT / "scripts" / "distill.py", "distill_script_small")


@pytest.mark.parametrize("modality", list(SMALL_PRESETS))
def test_small_recipe_parses_and_points_at_the_trainval(modality, tmp_path):
    script = _load_script()
    recipe = HUB_CONFIGS / "recipes" / f"bev_{modality}_supervised_small.yaml"
    script_args, training_args = script.parse_arguments(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--max_steps", "3"]
    )
    assert training_args.output_dir == str(tmp_path) and training_args.max_steps == 3  # CLI wins
    assert training_args.teacher_model_name_or_path is None and not training_args.distills
    assert script_args.student_config == SMALL_PRESETS[modality]
    assert (script_args.version, script_args.train_split, script_args.eval_split) == ("v1.0-trainval", "train", "val")
    assert script_args.official_eval
    config = script.resolve_student_config(script_args.student_config)
    assert sorted(config.modalities) == sorted(MODALITIES[modality])
    assert config.bev_shape == (128, 128)
    assert (config.depth_loss_weight > 0) == (modality == "camera_depth")


def test_fusion_from_lidar_recipe_starts_from_what_the_lidar_recipe_writes(tmp_path):
    script = _load_script()
    lidar_args, lidar_training = script.parse_arguments(
        ["--config", str(HUB_CONFIGS / "recipes" / "bev_lidar_supervised_small.yaml")]
    )
    fusion_args, fusion_training = script.parse_arguments(
        ["--config", str(HUB_CONFIGS / "recipes" / "bev_fusion_from_lidar_small.yaml"), "--output_dir", str(tmp_path)]
    )
    assert fusion_args.student_init == lidar_training.output_dir and not fusion_args.student_init_strict
    assert fusion_args.student_config == SMALL_PRESETS["fusion"]
    lidar = script.resolve_student_config(lidar_args.student_config)
    fusion = script.resolve_student_config(fusion_args.student_config)
    # What load_matching_weights transfers must have the same shapes: same encoder, grid, backbone and head.
    torch.manual_seed(0)
    lidar_state = BEVDetectorForObjectDetection(lidar).state_dict()
    fusion_state = BEVDetectorForObjectDetection(fusion).state_dict()
    shared = [k for k in lidar_state if k in fusion_state]
    assert len(shared) == len(lidar_state)
    assert all(lidar_state[k].shape == fusion_state[k].shape for k in shared)


def test_bf16_recipe_trains_on_the_cpu_without_an_accelerator(tmp_path):
    """transformers refuses `bf16` without a GPU unless `use_cpu` is set; the script sets it for a bf16 recipe."""
    script = _load_script()
    recipe = HUB_CONFIGS / "recipes" / "bev_camera_depth_supervised_small.yaml"
    _, training_args = script.parse_arguments(["--config", str(recipe), "--output_dir", str(tmp_path)])
    assert training_args.bf16
    assert training_args.use_cpu == (not has_accelerator())


def test_strict_student_init_accepts_a_saved_copy_of_the_same_preset(tmp_path):
    """A `save_pretrained` folder records `architectures` / `dtype`; only architecture fields may differ."""
    script = _load_script()
    preset = script.resolve_student_config(SMALL_PRESETS["lidar"])
    BEVDetectorForObjectDetection(preset).save_pretrained(tmp_path)
    saved = AutoConfig.from_pretrained(tmp_path)
    assert saved.architectures == ["BEVDetectorForObjectDetection"]
    assert script.config_differences(saved, preset) == {}
    # A save_pretrained folder resolves to the same config as the preset's name (save_pretrained marked `preset`).
    fresh = script.resolve_student_config(SMALL_PRESETS["lidar"]).to_dict()
    assert script.resolve_student_config(str(tmp_path)).to_dict() == fresh
    wider = script.resolve_student_config(SMALL_PRESETS["lidar"])
    wider.high_bev_channels = 2 * preset.high_bev_channels
    assert script.config_differences(saved, wider) == {
        "high_bev_channels": (preset.high_bev_channels, wider.high_bev_channels)
    }

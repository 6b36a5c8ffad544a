"""Presets and recipes are package data, resolved by name from the package (and seen as hub_configs/ in a checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_crossdistill.presets import (
    MODELS_DIR,
    RECIPES_DIR,
    preset_names,
    preset_path,
    recipe_path,
    resolve_config,
    resolve_config_path,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_presets_live_in_the_package_and_the_checkout_shows_them_as_hub_configs():
    assert MODELS_DIR.is_relative_to(Path(__import__("hf_crossdistill").__file__).parent)
    assert {"bev_lidar_pillar_nuscenes_small", "deeplabv3plus_tiny_events", "bmr_generator_image_to_events"} <= set(
        preset_names()
    )
    assert (REPO_ROOT / "hub_configs" / "models").resolve() == MODELS_DIR
    assert (REPO_ROOT / "hub_configs" / "recipes").resolve() == RECIPES_DIR


def test_resolve_config_takes_a_preset_name_a_json_file_or_a_folder(tmp_path):
    from hf_crossdistill.models.bev_detector import BEVDetectorConfig
    from hf_crossdistill.models.deeplab import DeepLabV3PlusConfig

    by_name = resolve_config("bev_lidar_pillar_nuscenes_tiny")
    assert isinstance(by_name, BEVDetectorConfig) and by_name.modalities == ["lidar"]
    assert isinstance(resolve_config("deeplabv3plus_tiny_events", num_labels=4), DeepLabV3PlusConfig)
    assert resolve_config("deeplabv3plus_tiny_events", num_labels=4).num_labels == 4
    by_file = resolve_config(preset_path("bev_lidar_pillar_nuscenes_tiny"))
    assert by_file.to_dict() == by_name.to_dict()
    by_name.save_pretrained(tmp_path / "saved")
    assert resolve_config(tmp_path / "saved").bev_shape == by_name.bev_shape
    assert resolve_config_path(tmp_path / "saved") == tmp_path / "saved" / "config.json"


def test_unknown_presets_recipes_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no model preset 'nope' \(presets: \[.*bev_"):
        preset_path("nope")
    with pytest.raises(FileNotFoundError, match="student_config 'nope': no such file, folder or preset"):
        resolve_config("nope", what="student_config")
    with pytest.raises(FileNotFoundError, match="without config.json"):
        resolve_config(tmp_path)
    (tmp_path / "bad.json").write_text('{"model_type": "not_a_model"}')
    with pytest.raises(ValueError, match="not a model config this package knows"):
        resolve_config(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no recipe"):
        recipe_path("../setup")


def test_recipes_resolve_by_name_including_the_study_folders():
    assert recipe_path("bev_lidar_supervised_small").name == "bev_lidar_supervised_small.yaml"
    assert recipe_path("study/camera_alone.yaml").parent.name == "study"
    assert recipe_path("quickstart/distilled").is_file()

"""The UniDistill recipes parse through scripts/distill.py and carry the paper's λ per path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO_ROOT / "hub_configs" / "recipes").glob("unidistill_*.yaml"))
PAPER = {
    "lidar_camera_to_lidar": (10.0, 1.0, 10.0),
    "lidar_camera_to_camera": (10.0, 5.0, 10.0),
    "camera_to_lidar": (10.0, 5.0, 1.0),
    "lidar_to_camera": (100.0, 40.0, 10.0),
}


def load_script():
    spec = importlib.util.spec_from_file_location("distill_script", REPO_ROOT / "scripts" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_all_four_paths_have_tiny_and_paper_recipes():
    names = {p.stem for p in RECIPES}
    for path in PAPER:
        assert f"unidistill_{path}" in names and f"unidistill_{path}_tiny" in names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_with_cli_overrides(recipe, tmp_path):
    script = load_script()
    script_args, training_args = script.parse_arguments(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--max_steps", "7"]
    )
    assert training_args.output_dir == str(tmp_path) and training_args.max_steps == 7  # CLI wins
    path = recipe.stem.removeprefix("unidistill_").removesuffix("_tiny")
    if path in PAPER:
        assert training_args.loss_weights == PAPER[path]
    assert training_args.use_adaptive_layers == (path == "camera_to_lidar")  # as in the paper
    preset = REPO_ROOT / "hub_configs" / "models" / f"{script_args.student_config}.json"
    if not preset.exists():
        pytest.skip(f"student preset {preset.name} is not in hub_configs/models yet")
    config = script.resolve_student_config(script_args.student_config)
    assert config.model_type == "bev_detector"


def test_recipe_errors_are_clear(tmp_path):
    script = load_script()
    bad = tmp_path / "bad.yaml"
    bad.write_text("student_config: x\nnot_an_argument: 1\n")
    with pytest.raises(ValueError, match="not_an_argument"):
        script.parse_arguments(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="no such recipe"):
        script.parse_arguments(["--config", str(tmp_path / "missing.yaml")])

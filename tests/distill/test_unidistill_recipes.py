"""The UniDistill recipes parse through scripts/distill.py and carry the paper's λ per path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from testing_utils import load_script as load_module

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO_ROOT / "hub_configs" / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("unidistill_*.yaml"))
PAPER = {
    "lidar_camera_to_lidar": (10.0, 1.0, 10.0),
    "lidar_camera_to_camera": (10.0, 5.0, 10.0),
    "camera_to_lidar": (10.0, 5.0, 1.0),
    "lidar_to_camera": (100.0, 40.0, 10.0),
}


def load_script():
    return load_module(REPO_ROOT / "scripts" / "distill.py", "distill_script")


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
    size = next((s for s in ("_tiny", "_small") if recipe.stem.endswith(s)), "")
    path = recipe.stem.removeprefix("unidistill_").removesuffix(size)
    if path in PAPER:
        assert training_args.loss_weights == PAPER[path]
    assert training_args.use_adaptive_layers == (path == "camera_to_lidar")  # as in the paper
    config = script.resolve_student_config(script_args.student_config)  # the preset exists
    assert config.model_type == "bev_detector"
    assert training_args.report_to == ["tensorboard"]
    teacher = Path(training_args.teacher_model_name_or_path).name
    assert teacher.startswith("bev_") and teacher.endswith("_supervised" + size)
    # The teacher is what the matching supervised recipe writes.
    assert (RECIPES_DIR / f"{teacher}.yaml").is_file()


SUPERVISED = sorted(RECIPES_DIR.glob("bev_*_supervised*.yaml"))


def test_supervised_recipes_exist_for_every_modality():
    names = {p.stem for p in SUPERVISED}
    for modality in ("lidar", "camera", "fusion"):
        assert {f"bev_{modality}_supervised", f"bev_{modality}_supervised_tiny"} <= names


@pytest.mark.parametrize("recipe", SUPERVISED, ids=lambda p: p.stem)
def test_supervised_recipes_name_no_teacher_and_evaluate_officially(recipe):
    script = load_script()
    script_args, training_args = script.parse_arguments(["--config", str(recipe)])
    assert training_args.teacher_model_name_or_path is None and not training_args.distills
    assert script_args.eval_split is not None and script_args.official_eval
    assert training_args.report_to == ["tensorboard"]
    assert Path(training_args.output_dir).name == recipe.stem
    config = script.resolve_student_config(script_args.student_config)
    modality = recipe.stem.split("_")[1]
    expected = {"lidar": ["lidar"], "camera": ["camera"], "fusion": ["lidar", "camera"]}[modality]
    assert sorted(config.modalities) == sorted(expected)
    assert ("_tiny" in recipe.stem) == ("_tiny" in script_args.student_config)
    # paper-size recipes: multi-GPU, batch 1 per GPU; _tiny / _small recipes are CPU recipes
    assert script_args.sync_batchnorm == (not any(size in recipe.stem for size in ("_tiny", "_small")))


def test_loader_options_follow_the_camera_model_whichever_it_is():
    from test_unidistill_trainer import tiny_config

    from hf_crossdistill.data.nuscenes import loader_options

    lidar, camera = tiny_config("lidar"), tiny_config("camera")
    # C→L: the LiDAR student's own image_size is irrelevant; the camera teacher's is used.
    lidar.image_size = [256, 704]
    assert loader_options(lidar, camera)["image_size"] == (176, 64)
    assert loader_options(camera, lidar)["image_size"] == (176, 64)
    only_lidar = loader_options(lidar)
    assert only_lidar["cameras"] == () and "image_size" not in only_lidar
    assert loader_options(camera)["num_sweeps"] == 0  # no LiDAR model: no sweeps to load
    other = tiny_config("camera")
    other.image_size = [128, 352]
    with pytest.raises(ValueError, match="different image sizes"):
        loader_options(camera, other)
    with pytest.raises(ValueError, match="at least one"):
        loader_options()
    with pytest.raises(TypeError, match="not a BEV detector config"):
        loader_options(object())


def test_sync_batchnorm_converts_only_multi_process_cuda_worlds():
    import torch
    from test_unidistill_trainer import tiny_config
    from transformers import TrainingArguments

    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

    script = load_script()
    model = BEVDetectorForObjectDetection(tiny_config("lidar"))
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    assert script.maybe_sync_batchnorm(model, args, True) is model  # CPU, world of 1: left alone
    assert script.maybe_sync_batchnorm(model, args, False) is model

    class FakeCudaWorld:
        world_size = 2
        device = torch.device("cuda", 0)

    converted = script.maybe_sync_batchnorm(model, FakeCudaWorld(), True)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())


@pytest.mark.parametrize("name", ["multi_gpu", "multi_node"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(REPO_ROOT / "hub_configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == "MULTI_GPU" and not config.use_cpu
    assert config.num_processes > 1
    if name == "multi_node":
        assert config.num_machines > 1 and config.main_process_ip and config.main_process_port


def test_recipe_errors_are_clear(tmp_path):
    script = load_script()
    bad = tmp_path / "bad.yaml"
    bad.write_text("student_config: x\nnot_an_argument: 1\n")
    with pytest.raises(ValueError, match="not_an_argument"):
        script.parse_arguments(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="no such recipe"):
        script.parse_arguments(["--config", str(tmp_path / "missing.yaml")])


PLAN_RECIPES = sorted((RECIPES_DIR / "study").glob("*.yaml")) + sorted((RECIPES_DIR / "quickstart").glob("*.yaml"))
PLAN_RECIPES = [p for p in PLAN_RECIPES if p.stem not in ("unidistill_paths", "plan")]


@pytest.mark.parametrize("recipe", PLAN_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_study_and_quickstart_recipes_parse_and_use_the_dev_protocol(recipe, tmp_path):
    script = load_script()
    script_args, training_args = script.parse_arguments(["--config", str(recipe), "--output_dir", str(tmp_path)])
    config = script.resolve_student_config(script_args.student_config)
    assert config.model_type == "bev_detector"
    # Trained on train_detect: the dev split (train_track) and val stay out of training.
    assert script_args.train_split == "train_detect" and script_args.eval_split == "val"
    if training_args.distills:
        teacher = REPO_ROOT / training_args.teacher_model_name_or_path
        assert teacher.parent.name == "pretrained" and teacher.name.startswith("study_")
        assert script_args.num_sweeps == 1  # as the teachers were trained


def test_config_takes_a_shipped_recipe_by_name(tmp_path):
    script = load_script()
    by_name, by_path = (
        script.parse_arguments(["--config", spec, "--output_dir", str(tmp_path)])
        for spec in ("study/camera_alone", str(RECIPES_DIR / "study" / "camera_alone.yaml"))
    )
    assert by_name[0] == by_path[0] and by_name[1].max_steps == by_path[1].max_steps
    with pytest.raises(FileNotFoundError, match=r"no recipe 'nope' \(recipes: .*bev_lidar_supervised_small"):
        script.load_recipe("nope")
    with pytest.raises(FileNotFoundError, match="no such recipe file"):
        script.load_recipe(str(tmp_path / "missing.json"))

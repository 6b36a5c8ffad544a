"""Every EvDistill recipe parses into valid arguments, names existing presets and matching channel counts."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import yaml
from testing_utils import HUB_CONFIGS
from transformers import AutoConfig, TrainingArguments

import hf_crossdistill.models.deeplab  # noqa: F401  (registers DeepLabV3PlusConfig)
from hf_crossdistill.data.events import datasets as event_datasets
from hf_crossdistill.distill.evdistill_config import EvDistillConfig
from hf_crossdistill.distill.evdistill_runner import EvDistillScriptArguments, parse_evdistill_arguments
from hf_crossdistill.presets import resolve_config

RECIPES = sorted((HUB_CONFIGS / "recipes").glob("evdistill_*.yaml"))
SCRIPT_KEYS = {f.name for f in dataclasses.fields(EvDistillScriptArguments)}


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"evdistill_ddd17_tiny", "evdistill_ddd17", "evdistill_ncaltech_tiny", "evdistill_ncaltech"} <= names
    assert {"evdistill_ddd17_pseudo_labels_tiny", "evdistill_ddd17_events_aps_kd_tiny"} <= names
    assert {"evdistill_teacher_ddd17_tiny", "evdistill_teacher_ddd17", "evdistill_teacher_ncaltech"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_with_the_runner(path, tmp_path):
    recipe = yaml.safe_load(path.read_text())
    script_args, training_args = parse_evdistill_arguments(recipe, ["--output_dir", str(tmp_path)])
    assert script_args.method == recipe["method"] and script_args.task == recipe["task"]
    assert isinstance(training_args, EvDistillConfig) == (recipe["method"] == "evdistill")
    assert script_args.event_root is not None or recipe["method"] == "supervised"
    # Relative data paths only: recipes never hold machine-specific absolute paths.
    for key in ("event_root", "source_root", "teacher_model_name_or_path", "aps_student_config", "output_dir"):
        assert not str(recipe.get(key, "")).startswith("/"), f"{path.name}: {key} is an absolute path"


STUDENTS = [p.stem for p in RECIPES if yaml.safe_load(p.read_text())["method"] == "evdistill"]


@pytest.mark.parametrize("name", STUDENTS)
def test_students_name_the_output_of_a_teacher_recipe(name):
    """Teacher first: the student's teacher_model_name_or_path is a teacher recipe's output_dir."""
    recipe = yaml.safe_load((HUB_CONFIGS / "recipes" / f"{name}.yaml").read_text())
    teachers = {
        yaml.safe_load(p.read_text())["output_dir"] for p in RECIPES if p.stem.startswith("evdistill_teacher_")
    }
    assert recipe["teacher_model_name_or_path"] in teachers


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid(path, tmp_path):
    recipe = yaml.safe_load(path.read_text())
    assert recipe["method"] in ("evdistill", "supervised") and recipe["task"] in ("segmentation", "recognition")
    args_cls = EvDistillConfig if recipe["method"] == "evdistill" else TrainingArguments
    fields = {k: v for k, v in recipe.items() if k not in SCRIPT_KEYS}
    unknown = set(fields) - _fields(args_cls)
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    args = args_cls(**{**fields, "output_dir": str(tmp_path)})
    student = AutoConfig.from_pretrained(HUB_CONFIGS / "models" / f"{recipe['student_config']}.json")
    if recipe["method"] == "evdistill":
        event = recipe["event_dataset"]
        builder = (
            event_datasets.event_segmentation_dataset
            if recipe["task"] == "segmentation"
            else event_datasets.event_recognition_dataset
        )
        assert set(event) <= set(inspect.signature(builder).parameters), f"{path.name}: bad event_dataset keys"
        channels = event_datasets.representation_channels(
            event["representation"], **event.get("representation_kwargs", {})
        )
        assert student.num_channels == channels, f"{path.name}: student takes {student.num_channels} channels"
        if args.aps_student_config is not None:
            aps = resolve_config(args.aps_student_config)
            assert aps.num_labels == student.num_labels and aps.num_channels == 1
    if "source_dataset" in recipe:
        params = set(inspect.signature(event_datasets.labeled_image_dataset).parameters)
        assert set(recipe["source_dataset"]) <= params, f"{path.name}: bad source_dataset keys"
        expected_kind = "segmentation" if recipe["task"] == "segmentation" else "classification"
        assert recipe["source_dataset"]["kind"] == expected_kind


def test_bf16_recipe_trains_on_the_cpu_without_an_accelerator(tmp_path):
    """The same recipe rule as scripts/distill.py: a bf16 recipe without a GPU runs CPU autocast."""
    from hf_crossdistill.distill._arguments import has_accelerator

    recipe = yaml.safe_load((HUB_CONFIGS / "recipes" / "evdistill_ncaltech_tiny.yaml").read_text())
    _, training_args = parse_evdistill_arguments({**recipe, "bf16": True}, ["--output_dir", str(tmp_path)])
    assert training_args.bf16 and training_args.use_cpu == (not has_accelerator())

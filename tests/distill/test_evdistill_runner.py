"""EvDistill runner: recipe parsing, evaluation over a split, and (slow) teacher → student end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from testing_utils import HUB_CONFIGS, load_script
from transformers import AutoConfig, AutoModel, TrainingArguments

from hf_crossdistill.distill.evdistill_config import EvDistillConfig
from hf_crossdistill.distill.evdistill_runner import (
    evaluate_event_model,
    is_evdistill_recipe,
    parse_evdistill_arguments,
    resolve_model_config,
    run_evdistill,
)
from hf_crossdistill.distill.evdistill_trainer import EvDistillPairs
from hf_crossdistill.evaluation import confusion_matrix, segmentation_metrics

RECIPES = HUB_CONFIGS / "recipes"
REPO_ROOT = HUB_CONFIGS.parent


def _recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def test_is_evdistill_recipe():
    assert is_evdistill_recipe(_recipe("evdistill_ddd17_tiny"))
    assert is_evdistill_recipe(_recipe("evdistill_teacher_ncaltech_tiny"))
    assert not is_evdistill_recipe(yaml.safe_load((RECIPES / "unidistill_lidar_to_camera_tiny.yaml").read_text()))
    assert not is_evdistill_recipe(["method", "evdistill"])


def test_parse_overrides_null_dicts_and_method(tmp_path):
    recipe = _recipe("evdistill_ddd17_tiny")
    script, args = parse_evdistill_arguments(
        recipe, ["--output_dir", str(tmp_path), "--aps_student_config", "null", "--lambda_md", "0", "--max_steps", "7"]
    )
    assert isinstance(args, EvDistillConfig) and args.aps_student_config is None
    assert args.lambda_md == 0.0 and args.max_steps == 7 and args.lambda_ag == 1.0
    assert json.loads(script.event_dataset)["output_size"] == [64, 128]
    # A dict of overrides keeps its types (None, nested mappings).
    script, args = parse_evdistill_arguments(
        recipe, {"output_dir": str(tmp_path), "use_bmr": False, "event_dataset": {"layout": "dsec"}}
    )
    assert args.use_bmr is False and json.loads(script.event_dataset) == {"layout": "dsec"}
    # The teacher recipe parses into plain TrainingArguments, with the collator choosing the batch keys.
    script, args = parse_evdistill_arguments(_recipe("evdistill_teacher_ddd17_tiny"), {"output_dir": str(tmp_path)})
    assert type(args) is TrainingArguments and not args.remove_unused_columns and script.method == "supervised"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"lambda_typo": 1.0}, "unknown keys"),
        ({"method": "unidistill"}, "method must be one of"),
        ({"task": "detection"}, "task must be one of"),
        ({"max_steps": -1}, "max_steps > 0"),
        ({"event_dataset": "[1, 2]"}, None),
    ],
)
def test_parse_rejects_bad_recipes(tmp_path, change, match):
    recipe = {**_recipe("evdistill_ddd17_tiny"), "output_dir": str(tmp_path), **change}
    if match is None:  # a JSON list where a mapping belongs fails when the data set is built
        script, _ = parse_evdistill_arguments(recipe)
        from hf_crossdistill.distill.evdistill_runner import _json_object

        with pytest.raises(ValueError, match="event_dataset: expected a mapping"):
            _json_object(script.event_dataset, "event_dataset")
        return
    with pytest.raises(ValueError, match=match):
        parse_evdistill_arguments(recipe)
    with pytest.raises(TypeError, match="cli_overrides"):
        parse_evdistill_arguments(_recipe("evdistill_ddd17_tiny"), 42)


def test_resolve_model_config_presets_and_classes(tmp_path):
    config = resolve_model_config("deeplabv3plus_tiny_events")
    assert config.model_type == "deeplabv3plus" and config.num_labels == 6 and config.num_channels == 2
    rec = resolve_model_config("resnet_tiny_events_ncaltech", class_names=["a", "b", "c"])
    assert rec.num_labels == 3 and rec.id2label[2] == "c"
    assert resolve_model_config("hub_configs/models/deeplabv3plus_tiny_aps.json").num_channels == 1
    with pytest.raises(FileNotFoundError, match="no such file, folder or preset"):
        resolve_model_config("no_such_preset")


def test_pairs_without_source_data_for_the_baselines():
    events = [{"events": np.ones((2, 4, 6), np.float32), "image": np.zeros((1, 4, 6), np.float32)}] * 3
    examples = list(EvDistillPairs(events, None))
    assert len(examples) == 3 and set(examples[0]) == {"event_pixel_values", "aps_pixel_values"}
    with pytest.raises(ValueError, match="event_dataset is required"):
        EvDistillPairs(None, None)


def test_evaluate_matches_one_confusion_matrix_over_the_split():
    """mIoU from the runner equals the metric of ONE confusion matrix over all windows (not a mean per window)."""
    torch.manual_seed(0)
    model = AutoModel.from_config(
        AutoConfig.from_pretrained(HUB_CONFIGS / "models" / "deeplabv3plus_tiny_events.json")
    )
    g = torch.Generator().manual_seed(1)
    split = []
    for _ in range(5):  # 5 windows, batch 2: the last batch is partial
        labels = torch.randint(0, 6, (32, 48), generator=g)
        labels[:4] = 255  # ignored rows
        split.append({"events": torch.rand(2, 32, 48, generator=g).numpy(), "labels": labels.numpy()})
    metrics = evaluate_event_model(model, split, task="segmentation", batch_size=2)
    model.eval()
    with torch.no_grad():
        logits = model(pixel_values=torch.stack([torch.from_numpy(e["events"]) for e in split])).logits
    expected = segmentation_metrics(
        confusion_matrix(logits, torch.stack([torch.from_numpy(e["labels"]) for e in split]), 6)
    )
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-12)
    assert metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-12)
    assert len(metrics["per_class_iou"]) == 6 and "iou_vehicle" in metrics
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate_event_model(model, split, task="detection")
    with pytest.raises(KeyError, match="lacks one of"):
        evaluate_event_model(model, [{"events": split[0]["events"]}], task="segmentation")


def _load_distill_script():
    return load_script(REPO_ROOT / "scripts" / "distill.py", "distill_script")


@pytest.mark.slow
def test_teacher_then_student_end_to_end(tmp_path, tiny_ddd17_root, tiny_source_images_root):
    """scripts/distill.py dispatches both recipes to the runner: T first, then full EvDistill S_ev from it."""
    common = ["--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true",
              "--event_root", str(tiny_ddd17_root), "--source_root", str(tiny_source_images_root),
              "--per_device_eval_batch_size", "8", "--use_cpu", "true"]  # fmt: skip
    distill = _load_distill_script()
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    teacher_recipe = str(RECIPES / "evdistill_teacher_ddd17_tiny.yaml")
    assert distill.main(["--config", teacher_recipe, "--output_dir", str(teacher_dir), *common]) == 0
    teacher_metrics = json.loads((teacher_dir / "evdistill_metrics.json").read_text())
    assert teacher_metrics["method"] == "supervised" and 0.0 <= teacher_metrics["eval_source"]["mean_iou"] <= 1.0
    assert (teacher_dir / "model.safetensors").is_file()

    metrics = run_evdistill(
        _recipe("evdistill_ddd17_tiny"),
        [*common, "--output_dir", str(student_dir), "--teacher_model_name_or_path", str(teacher_dir),
         "--generator_base_channels", "4", "--generator_residual_blocks", "1"],
    )  # fmt: skip
    assert metrics["mode"] == "evdistill" and metrics["world_size"] == 1 and metrics["max_steps"] == 2
    assert np.isfinite(metrics["train_loss"])
    ev = metrics["eval"]
    assert set(ev) >= {"mean_iou", "pixel_accuracy", "per_class_iou", "iou_flat"} and len(ev["per_class_iou"]) == 6
    assert 0.0 <= ev["mean_iou"] <= 1.0 and 0.0 <= ev["pixel_accuracy"] <= 1.0
    assert json.loads((student_dir / "evdistill_metrics.json").read_text())["eval"] == ev
    # Overlay panels (event frame | prediction | ground truth) of the first test windows.
    assert len(ev["overlays"]) == 4
    panel = np.asarray(Image.open(ev["overlays"][0]))
    assert panel.ndim == 3 and panel.shape[0] == 64 and panel.shape[1] > 3 * 128
    # The output folder is S_ev alone: no BMR / S_aps / h files, and it loads as the preset's architecture.
    assert not (student_dir / "evdistill_extras").exists()
    saved = AutoModel.from_pretrained(str(student_dir))
    fresh = AutoModel.from_config(
        AutoConfig.from_pretrained(HUB_CONFIGS / "models" / "deeplabv3plus_tiny_events.json")
    )
    assert type(saved) is type(fresh)
    assert {k: v.shape for k, v in saved.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    assert metrics["num_parameters"] == sum(p.numel() for p in fresh.parameters())


@pytest.mark.slow
def test_recognition_end_to_end(tmp_path, tiny_ncaltech_root, tiny_recognition_source_root):
    common = {"max_steps": 2, "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True, "use_cpu": True,
              "event_root": str(tiny_ncaltech_root), "source_root": str(tiny_recognition_source_root)}  # fmt: skip
    teacher = run_evdistill(_recipe("evdistill_teacher_ncaltech_tiny"), {**common, "output_dir": str(tmp_path / "t")})
    assert 0.0 <= teacher["eval_source"]["accuracy"] <= 1.0
    metrics = run_evdistill(
        _recipe("evdistill_ncaltech_tiny"),
        {**common, "output_dir": str(tmp_path / "s"), "teacher_model_name_or_path": str(tmp_path / "t"),
         "generator_base_channels": 4, "generator_residual_blocks": 1},
    )  # fmt: skip
    # The tiny world has 3 classes: the 10-class preset is resized to the data set's classes.
    assert len(metrics["eval"]["per_class_accuracy"]) == 3 and 0.0 <= metrics["eval"]["accuracy"] <= 1.0
    assert AutoConfig.from_pretrained(str(tmp_path / "s")).num_labels == 3

"""(slow) The MVSEC-like recipes end to end on the tiny MVSEC fixture: T → full EvDistill S_ev and the pseudo-label
baseline, trained without labels, scored on the generator's sidecar labels."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from testing_utils import HUB_CONFIGS

from hf_crossdistill.distill.evdistill_runner import parse_evdistill_arguments, run_evdistill

RECIPES = HUB_CONFIGS / "recipes"


def _recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def test_mvsec_recipes_use_the_mvsec_layout(tmp_path):
    for name in ("evdistill_mvsec_tiny", "evdistill_mvsec", "evdistill_mvsec_pseudo_labels_tiny"):
        script, args = parse_evdistill_arguments(_recipe(name), {"output_dir": str(tmp_path)})
        assert '"layout": "mvsec"' in script.event_dataset and script.task == "segmentation"
    teacher = _recipe("evdistill_teacher_ddd17_tiny")["output_dir"]
    assert _recipe("evdistill_mvsec_tiny")["teacher_model_name_or_path"] == teacher


@pytest.mark.slow
def test_mvsec_teacher_then_students_end_to_end(tmp_path, tiny_mvsec_root, tiny_source_images_root):
    common = {"max_steps": 2, "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True,
              "source_root": str(tiny_source_images_root), "per_device_eval_batch_size": 8, "use_cpu": True,
              "num_overlays": 1}  # fmt: skip
    teacher = run_evdistill(
        _recipe("evdistill_teacher_ddd17_tiny"),
        {**common, "output_dir": str(tmp_path / "t"), "event_root": str(tiny_mvsec_root),
         "event_dataset": {"layout": "mvsec", "representation": "normalized_count", "output_size": [64, 96]}},
    )  # fmt: skip
    # T scored on the MVSEC APS frames (image_raw) against the sidecar labels: the pseudo-label quality.
    assert 0.0 <= teacher["eval_aps"]["mean_iou"] <= 1.0 and len(teacher["eval_aps"]["per_class_iou"]) == 6
    for name, extra in (
        ("evdistill_mvsec_tiny", {"generator_base_channels": 4, "generator_residual_blocks": 1}),
        ("evdistill_mvsec_pseudo_labels_tiny", {}),
    ):
        out = tmp_path / name
        metrics = run_evdistill(
            _recipe(name),
            {**common, **extra, "output_dir": str(out), "event_root": str(tiny_mvsec_root),
             "teacher_model_name_or_path": str(tmp_path / "t")},
        )  # fmt: skip
        assert metrics["max_steps"] == 2 and np.isfinite(metrics["train_loss"])
        ev = metrics["eval"]
        assert 0.0 <= ev["mean_iou"] <= 1.0 and 0.0 <= ev["pixel_accuracy"] <= 1.0
        assert len(ev["overlays"]) == 1 and (out / "model.safetensors").is_file()
        assert not (out / "evdistill_extras").exists()

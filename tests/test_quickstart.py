"""The main job (scripts/quickstart.py) end to end with tiny step counts on the tiny synthetic dataroot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testing_utils import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_quickstart():
    return load_script(REPO_ROOT / "scripts" / "quickstart.py", "quickstart_script")


def test_quickstart_arguments_are_validated():
    quickstart = load_quickstart()
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--teacher-steps", "0"])
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--num-scenes", "11"])
    args = quickstart.parse_args([])
    assert args.teacher_steps >= args.student_steps >= 1


@pytest.mark.slow
def test_quickstart_trains_distils_evaluates_and_writes_a_hub_folder(tmp_path, tiny_nuscenes_root):
    from safetensors.torch import load_file
    from transformers import AutoModelForObjectDetection

    import hf_crossdistill  # noqa: F401 - registers the BEV detector with the Auto classes

    quickstart = load_quickstart()
    out = tmp_path / "quickstart"
    argv = ["--data-dir", str(tiny_nuscenes_root), "--out-dir", str(out), "--teacher-steps", "2"]
    assert quickstart.main([*argv, "--student-steps", "2", "--batch-size", "1", "--no-progress"]) == 0

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"teacher", "distilled", "no_kd"}
    for run, metrics in results.items():
        assert metrics["eval_nuscenes_samples"] == 4, run  # every mini_val key frame of the tiny dataroot
        assert 0.0 <= metrics["eval_mAP"] <= 1.0 and 0.0 <= metrics["eval_NDS"] <= 1.0, run
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == 4 and "mAP" in table and "UniDistill L→C" in table

    # The distilled run really distilled (every term logged) from the teacher this job trained.
    summary = json.loads((out / "distilled" / "distill_summary.json").read_text())
    assert summary["distills"] is True
    logged = [entry for entry in summary["log_history"] if "loss" in entry]
    assert logged and all(k in logged[-1] for k in ("loss_feature", "loss_relation", "loss_response"))
    assert json.loads((out / "teacher" / "config.json").read_text())["modalities"] == ["lidar"]
    assert list((out / "teacher" / "runs").rglob("events.out.tfevents.*")), "no TensorBoard log"

    assert (out / "bev.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hub = out / "hub_student"
    card = (hub / "README.md").read_text()
    assert "model-index" in card and "unidistill" in card.lower()
    student = AutoModelForObjectDetection.from_pretrained(hub)
    assert callable(student.post_process)
    assert student.config.modalities == ["camera"]
    assert set(load_file(str(hub / "model.safetensors"))) == set(student.state_dict())

"""scripts/distill.py under a real 2-process CPU world (gloo) vs one process over the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_unidistill_trainer import tiny_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTILL_TERMS = ("loss_feature", "loss_relation", "loss_response")


def write_recipe(tmp_path: Path, dataroot: Path, batch_size: int) -> Path:
    student_config = tmp_path / "student_config.json"
    tiny_config("camera").to_json_file(str(student_config))
    teacher_dir = tmp_path / "teacher"
    if not teacher_dir.exists():
        torch.manual_seed(1)
        BEVDetectorForObjectDetection(tiny_config("lidar")).save_pretrained(teacher_dir)
    recipe = {
        "student_config": str(student_config),
        "teacher_model_name_or_path": str(teacher_dir),
        "lambda_feature": 100.0,
        "lambda_relation": 40.0,
        "lambda_response": 10.0,
        "dataroot": str(dataroot),
        "version": "v1.0-mini",
        "train_split": "mini_train",
        "eval_split": "mini_val",
        "num_sweeps": 1,
        "augment": False,
        "max_steps": 2,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "logging_steps": 1,
        "save_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 100,
        "eval_on_start": True,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
    }
    path = tmp_path / f"recipe_{batch_size}.json"
    path.write_text(json.dumps(recipe))
    return path


def run(command: list[str], env_extra: dict[str, str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_cpu_processes_match_one_process_over_the_same_global_batch(tmp_path, tiny_nuscenes_root):
    accelerate = Path(sys.executable).with_name("accelerate")
    two = tmp_path / "two"
    run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            "0",
            "scripts/distill.py",
            "--config",
            str(write_recipe(tmp_path, tiny_nuscenes_root, 1)),
            "--output_dir",
            str(two),
        ],
        {"ACCELERATE_USE_CPU": "1"},
    )
    one = tmp_path / "one"
    run(
        [
            sys.executable,
            "scripts/distill.py",
            "--config",
            str(write_recipe(tmp_path, tiny_nuscenes_root, 2)),
            "--output_dir",
            str(one),
            "--use_cpu",
            "true",
        ],
        {},
    )
    summary_two = json.loads((two / "distill_summary.json").read_text())
    summary_one = json.loads((one / "distill_summary.json").read_text())
    assert summary_two["world_size"] == 2 and summary_one["world_size"] == 1

    train_logs = [e for e in summary_two["log_history"] if "loss" in e]
    assert len(train_logs) == 2
    for entry in train_logs:
        for key in ("loss_det", *DISTILL_TERMS):
            assert key in entry, f"{key} not logged: {entry}"

    # The student checkpoint is the student only: its keys, no teacher, no extras on this path.
    saved = json.loads((two / "config.json").read_text())
    assert saved["modalities"] == ["camera"]
    from safetensors.torch import load_file

    keys = set(load_file(str(two / "model.safetensors")))
    assert keys == set(BEVDetectorForObjectDetection(tiny_config("camera")).state_dict())

    # The official nuScenes evaluation saw every mini_val key frame exactly once, whichever rank decoded it.
    for summary in (summary_two, summary_one):
        assert summary["eval"]["eval_nuscenes_samples"] == 4
        assert 0.0 <= summary["eval"]["eval_mAP"] <= 1.0 and 0.0 <= summary["eval"]["eval_NDS"] <= 1.0
    assert json.loads((two / "eval_results.json").read_text())["eval_mAP"] == summary_two["eval"]["eval_mAP"]

    # Before any update (eval_on_start), the distillation terms over the same global batches agree.
    def first_eval(summary):
        return next(e for e in summary["log_history"] if "eval_loss" in e and e["step"] == 0)

    eval_two, eval_one = first_eval(summary_two), first_eval(summary_one)
    for key in DISTILL_TERMS:
        assert eval_one[f"eval_{key}"] > 0, key
        assert eval_two[f"eval_{key}"] == pytest.approx(eval_one[f"eval_{key}"], rel=1e-5, abs=1e-6), key

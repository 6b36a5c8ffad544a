"""The EvDistill recipe through `accelerate launch scripts/distill.py` on 2 CPU processes (gloo, DDP), evaluation
included: the test-split confusion matrix is summed over both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testing_utils import HUB_CONFIGS

from hf_crossdistill.distill.evdistill_runner import run_evdistill

REPO_ROOT = HUB_CONFIGS.parent


@pytest.mark.slow
@pytest.mark.multiprocess
def test_evdistill_recipe_on_two_cpu_processes(tmp_path, tiny_ddd17_root, tiny_source_images_root):
    data = ["--event_root", str(tiny_ddd17_root), "--source_root", str(tiny_source_images_root)]
    common = ["--max_steps", "2", "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1", *data]
    teacher = tmp_path / "teacher"
    recipe = yaml.safe_load((HUB_CONFIGS / "recipes" / "evdistill_teacher_ddd17_tiny.yaml").read_text())
    single = run_evdistill(recipe, [*common, "--output_dir", str(teacher), "--use_cpu", "true"])
    assert single["world_size"] == 1

    out = tmp_path / "student"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
        str(REPO_ROOT / "scripts" / "distill.py"), "--config",
        str(HUB_CONFIGS / "recipes" / "evdistill_ddd17_tiny.yaml"), *common, "--output_dir", str(out),
        "--teacher_model_name_or_path", str(teacher), "--generator_base_channels", "4",
        "--generator_residual_blocks", "1", "--per_device_train_batch_size", "2", "--num_overlays", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "marked ready twice" not in result.stderr
    metrics = json.loads((out / "evdistill_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["mode"] == "evdistill"
    assert 0.0 <= metrics["eval"]["mean_iou"] <= 1.0 and len(metrics["eval"]["per_class_iou"]) == 6
    assert (out / "model.safetensors").is_file() and not (out / "evdistill_extras").exists()
    # Every labelled test pixel is counted once over the two ranks: the same split scored by one process agrees.
    from transformers import AutoModel

    from hf_crossdistill.data.events import event_segmentation_dataset
    from hf_crossdistill.distill.evdistill_runner import evaluate_event_model

    test = event_segmentation_dataset(
        tiny_ddd17_root, split="test", representation="normalized_count", window_ms=50, output_size=(64, 128)
    )
    alone = evaluate_event_model(AutoModel.from_pretrained(str(out)), test, task="segmentation")
    assert alone["mean_iou"] == pytest.approx(metrics["eval"]["mean_iou"], abs=1e-9)
    assert alone["pixel_accuracy"] == pytest.approx(metrics["eval"]["pixel_accuracy"], abs=1e-9)

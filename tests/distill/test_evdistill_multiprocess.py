"""EvDistill under a real 2-process CPU world (gloo, DDP): every module runs inside the wrapper's forward."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch.utils.data import Dataset
    from transformers import AutoConfig, AutoModel
    from hf_crossdistill.distill.evdistill_config import EvDistillConfig
    from hf_crossdistill.distill.evdistill_trainer import EvDistillTrainer

    models, out = sys.argv[1], sys.argv[2]

    class Batches(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.items = [
                {
                    "event_pixel_values": torch.rand(2, 32, 48, generator=g),
                    "aps_pixel_values": torch.randn(1, 32, 48, generator=g),
                    "source_pixel_values": torch.randn(3, 32, 48, generator=g),
                    "source_labels": torch.randint(0, 6, (32, 48), generator=g),
                }
                for _ in range(8)
            ]
        def __len__(self):
            return len(self.items)
        def __getitem__(self, i):
            return self.items[i]

    def build(name):
        torch.manual_seed(0)
        return AutoModel.from_config(AutoConfig.from_pretrained(f"{models}/deeplabv3plus_tiny_{name}.json"))

    args = EvDistillConfig(
        output_dir=out, max_steps=2, per_device_train_batch_size=2, logging_steps=1, save_steps=2,
        report_to=[], disable_tqdm=True, seed=0, generator_base_channels=4, generator_residual_blocks=1,
        discriminator_base_channels=4, discriminator_layers=2, modality_hidden_channels=8,
        aps_student_config=f"{models}/deeplabv3plus_tiny_aps.json",
    )
    trainer = EvDistillTrainer(build("events"), args, teacher=build("image"), train_dataset=Batches())
    trainer.train()
    if trainer.is_world_process_zero():
        summary = {"world_size": trainer.args.world_size, "log_history": trainer.state.log_history}
        with open(f"{out}/summary.json", "w") as f:
            json.dump(summary, f)
    """
)


def launch_two_processes(source: str, tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    """`accelerate launch` of a worker script in a 2-process CPU world (gloo); asserts that it succeeded."""
    worker = tmp_path / "worker.py"
    worker.write_text(source)
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
        str(worker), str(REPO_ROOT / "hub_configs" / "models"), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.mark.slow
@pytest.mark.multiprocess
def test_evdistill_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    result = launch_two_processes(WORKER, tmp_path, out)
    assert "marked ready twice" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    logs = [e for e in summary["log_history"] if "loss" in e]
    assert len(logs) == 2
    for term in ("ce_event", "ce_aps", "bmr_dsc", "bmr_adversarial", "bmr_discriminator", "da_match", "ag", "md"):
        assert all(f"loss_{term}" in e for e in logs), term
    # The checkpoint is the event student alone plus the training-only extras.
    checkpoint = out / "checkpoint-2"
    assert json.loads((checkpoint / "config.json").read_text())["num_channels"] == 2
    assert (checkpoint / "evdistill_extras" / "g_t2s" / "model.safetensors").is_file()


ONE_RANK_INF = textwrap.dedent(
    """
    class OneRankInfLoss(EvDistillTrainer):
        # Rank 1's loss is inf at step 0 while its gradients stay finite: only its loss is non-finite.
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs)
            if self.accelerator.process_index == 1 and self.state.global_step == 0:
                loss = loss + float("inf")
            return loss

    trainer = OneRankInfLoss("""
).lstrip("\n")
RECORD = textwrap.dedent(
    """
    before = {k: v.clone() for k, v in trainer.wrapper.event_student.state_dict().items()}
    trainer.train()
    after = trainer.wrapper.event_student.state_dict()
    unchanged = all(torch.equal(before[k], after[k]) for k in before if "running_" not in k and "batches" not in k)
    with open(f"{out}/rank{trainer.accelerator.process_index}.json", "w") as f:
        json.dump({"unchanged": unchanged, "skipped": trainer._nonfinite_total}, f)"""
).lstrip("\n")
NONFINITE_WORKER = (
    WORKER.replace("trainer = EvDistillTrainer(", ONE_RANK_INF)
    .replace("max_steps=2", "max_steps=1")
    .replace("trainer.train()", RECORD)
)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_nonfinite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    out = tmp_path / "run"
    launch_two_processes(NONFINITE_WORKER, tmp_path, out)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"unchanged": True, "skipped": 1}] * 2  # the same decision on both ranks

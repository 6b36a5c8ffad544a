"""EvDistill at inference: the saved S_ev checkpoint vs the same S_ev trained alone (BMR adds nothing at test time).

For the tiny preset (input 64 x 128) and the paper-size preset (DeepLabV3+ ResNet-101, input 256 x 512; skipped
with `--quick`), two event students are trained for one step and written with `save_pretrained`:

- `evdistill`: through `EvDistillTrainer` with every training-only module (S_aps, G_T→S, G_S→T, both PatchGAN
  discriminators, the modality classifier h), saved by the trainer;
- `alone`: the same preset trained with its own cross-entropy loss (no teacher, no BMR).

Both folders are loaded back with `AutoModel.from_pretrained` and compared: parameter count, state-dict keys and
shapes, and the median CPU latency of one forward pass (batch 1). The ratio evdistill / alone should be 1.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks._timing import median_seconds

SIZES = {
    "tiny": ("deeplabv3plus_tiny", (64, 128)),
    "paper": ("deeplabv3plus_resnet101", (256, 512)),
}


class _RandomBatches(torch.utils.data.Dataset):
    """One EvDistill batch of random tensors: training only needs to run, not to learn."""

    def __init__(self, size: tuple[int, int], n: int = 2) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "event_pixel_values": torch.rand(2, *size, generator=g),
                "aps_pixel_values": torch.rand(1, *size, generator=g),
                "source_pixel_values": torch.rand(3, *size, generator=g),
                "source_labels": torch.randint(0, 6, size, generator=g),
            }
            for _ in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _preset(prefix: str, role: str):
    from hf_crossdistill.presets import resolve_config

    return resolve_config(f"{prefix}_{role}")


def save_evdistill_student(prefix: str, train_size: tuple[int, int], out_dir: Path) -> Path:
    """Train S_ev one step with every EvDistill module and let `EvDistillTrainer` save it; returns the folder."""
    from transformers import AutoModel

    from hf_crossdistill.distill.evdistill_config import EvDistillConfig
    from hf_crossdistill.distill.evdistill_trainer import EvDistillTrainer

    args = EvDistillConfig(
        output_dir=str(out_dir), max_steps=1, per_device_train_batch_size=1, save_strategy="no", report_to=[],
        disable_tqdm=True, use_cpu=True, generator_base_channels=4, generator_residual_blocks=1,
        discriminator_base_channels=4, discriminator_layers=2, modality_hidden_channels=8,
        aps_student_config=f"{prefix}_aps", seed=0,
    )  # fmt: skip
    torch.manual_seed(0)
    student, teacher = (
        AutoModel.from_config(_preset(prefix, "events")),
        AutoModel.from_config(_preset(prefix, "image")),
    )
    trainer = EvDistillTrainer(student, args, teacher=teacher, train_dataset=_RandomBatches(train_size))
    trainer.train()
    trainer.save_model(str(out_dir))
    return out_dir


def save_student_alone(prefix: str, train_size: tuple[int, int], out_dir: Path) -> Path:
    """Train the same S_ev preset one step on its own cross-entropy loss and save it."""
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(_preset(prefix, "events")).train()
    batch = _RandomBatches(train_size, n=1).items[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = model(pixel_values=batch["event_pixel_values"][None], labels=batch["source_labels"][None]).loss
    loss.backward()
    optimizer.step()
    model.save_pretrained(out_dir)
    return out_dir


def _signature(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def compare(evdistill_dir: Path, alone_dir: Path, input_size: tuple[int, int], repeats: int) -> dict:
    """Parameter counts, architecture equality and forward latency of the two saved students."""
    from transformers import AutoModel

    models = {name: AutoModel.from_pretrained(str(d)).eval() for name, d in (("evdistill", evdistill_dir),
                                                                              ("alone", alone_dir))}  # fmt: skip
    x = torch.rand(1, models["alone"].config.num_channels, *input_size)
    # Interleaved rounds (A, B, A, B, ...): on a shared machine the load drifts, and timing one model after the
    # other would charge that drift to whichever ran second.
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(pixel_values=x)  # warm-up
        for round_ in range(repeats):
            order = list(models.items()) if round_ % 2 == 0 else list(models.items())[::-1]  # ABBA: no order bias
            for name, model in order:
                times[name].append(median_seconds(lambda m=model: m(pixel_values=x), repeats=1, warmup=0))
    figures = {}
    for name, model in models.items():
        folder = evdistill_dir if name == "evdistill" else alone_dir
        figures[name] = {
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "latency_ms": round(1000 * statistics.median(times[name]), 2),
            "latency_min_ms": round(1000 * min(times[name]), 2),  # least disturbed by other jobs on a shared CPU
            "files": sorted(p.name for p in Path(folder).iterdir()),
        }
    figures["same_architecture"] = _signature(models["evdistill"]) == _signature(models["alone"])
    figures["parameter_ratio"] = figures["evdistill"]["parameters"] / figures["alone"]["parameters"]
    figures["latency_ratio"] = round(figures["evdistill"]["latency_ms"] / figures["alone"]["latency_ms"], 3)
    figures["latency_min_ratio"] = round(
        figures["evdistill"]["latency_min_ms"] / figures["alone"]["latency_min_ms"], 3
    )
    return figures


def evdistill_inference(args) -> dict:
    """Saved EvDistill S_ev vs S_ev trained alone: parameters, architecture, CPU latency (tiny + paper size)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sizes = ["tiny"] if args.quick else ["tiny", "paper"]
    results = {}
    for size in sizes:
        prefix, input_size = SIZES[size]
        train_size = (64, 128)  # the architecture does not depend on the training input size
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            ev = save_evdistill_student(prefix, train_size, tmp / "evdistill")
            alone = save_student_alone(prefix, train_size, tmp / "alone")
            figures = compare(ev, alone, input_size, max(1, args.repeats))
        figures["input_size"] = list(input_size)
        results[size] = figures
        print(
            f"{size:5s} {input_size[0]}x{input_size[1]}: params evdistill {figures['evdistill']['parameters']:,} / "
            f"alone {figures['alone']['parameters']:,} (same architecture: {figures['same_architecture']}); "
            f"latency {figures['evdistill']['latency_ms']} ms / {figures['alone']['latency_ms']} ms "
            f"(median ratio {figures['latency_ratio']}, min {figures['evdistill']['latency_min_ms']} / "
            f"{figures['alone']['latency_min_ms']} ms, ratio {figures['latency_min_ratio']})"
        )
    return results


ENTRIES = {"evdistill_inference": evdistill_inference}

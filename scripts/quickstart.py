#!/usr/bin/env python
"""The main job: UniDistill L→C end to end on the synthetic nuScenes v1.0-mini, on a laptop CPU.

    bash scripts/quickstart.sh                       # the whole job (< 25 min on 2 CPU cores)
    python scripts/quickstart.py --out-dir outputs/quickstart --teacher-steps 300 --student-steps 250

1. generates the synthetic dataset into `data_cache/` when it is missing;
2. trains the tiny LiDAR teacher (recipe `bev_lidar_supervised_tiny.yaml`, no teacher);
3. distils the tiny camera student from it (recipe `unidistill_lidar_to_camera_tiny.yaml`, paper λ 100/40/10);
4. trains the same camera student without distillation on the same budget (recipe `bev_camera_supervised_tiny.yaml`);
5. scores the three with the official nuScenes metrics on mini_val (each run's final `evaluate`);
6. writes `results.md` (table), `bev.png` (one validation sample: ground truth and each model's boxes) and a
   Hub-ready folder `hub_student/` (save_pretrained + README model card with the metrics).

Every training run goes through `scripts/distill.py` (the same code as `accelerate launch`), with progress bars and
TensorBoard logs in each run's `runs/` folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "hub_configs" / "recipes"
RUNS = {
    "teacher": ("bev_lidar_supervised_tiny.yaml", "LiDAR teacher (supervised)"),
    "distilled": ("unidistill_lidar_to_camera_tiny.yaml", "camera student, UniDistill L→C"),
    "no_kd": ("bev_camera_supervised_tiny.yaml", "camera student, no KD (same budget)"),
}
TABLE_METRICS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def _distill_script():
    """scripts/distill.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "hf_crossdistill_distill_script", REPO_ROOT / "scripts" / "distill.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # HfArgumentParser's dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data_cache" / "nuscenes_mini")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "outputs" / "quickstart")
    parser.add_argument("--num-scenes", type=int, default=10, help="scenes to generate (v1.0-mini: at most 10)")
    parser.add_argument("--scene-duration", type=float, default=8.0, help="seconds per generated scene")
    parser.add_argument("--teacher-steps", type=int, default=400, help="training steps of the LiDAR teacher")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="reuse this trained LiDAR teacher (a save_pretrained folder, e.g. outputs/bev_lidar_supervised_tiny) "
        "instead of training one; it is still evaluated",
    )
    parser.add_argument("--student-steps", type=int, default=250, help="training steps of each camera student")
    parser.add_argument("--batch-size", type=int, default=2, help="per-device training batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (logs stay)")
    args = parser.parse_args(argv)
    for name in ("num_scenes", "teacher_steps", "student_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 2 <= args.num_scenes <= 10:
        parser.error(f"--num-scenes must be in [2, 10] for v1.0-mini, got {args.num_scenes}")
    if args.teacher is not None and not (args.teacher / "config.json").is_file():
        parser.error(f"--teacher {args.teacher} is not a save_pretrained folder (no config.json)")
    return args


def ensure_dataset(data_dir: Path, num_scenes: int, scene_duration: float, seed: int) -> Path:
    """The synthetic v1.0-mini dataroot at `data_dir`, generated when it is not there yet."""
    if (data_dir / "v1.0-mini" / "sample.json").is_file():
        print(f"[quickstart] dataset: {data_dir} (exists)")
        return data_dir
    from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes

    print(f"[quickstart] generating the synthetic nuScenes v1.0-mini into {data_dir} ({num_scenes} scenes)")
    start = time.perf_counter()
    make_synthetic_nuscenes(
        data_dir,
        version="v1.0-mini",
        num_scenes=num_scenes,
        seed=seed,
        scene_duration_s=scene_duration,
        progress=lambda line: print(f"[quickstart]   {line}", flush=True),
    )
    print(f"[quickstart] dataset ready in {time.perf_counter() - start:.0f} s")
    return data_dir


def train(
    script, run: str, args: argparse.Namespace, *, max_steps: int, teacher: Path | None = None
) -> dict[str, float]:
    """One `scripts/distill.py` run of a quickstart recipe; returns its final official eval metrics."""
    recipe, description = RUNS[run]
    out = args.out_dir / run
    argv = [
        "--config",
        str(RECIPES / recipe),
        "--dataroot",
        str(args.data_dir),
        "--output_dir",
        str(out),
        "--max_steps",
        str(max_steps),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--seed",
        str(args.seed),
        "--disable_tqdm",
        str(bool(args.no_progress)).lower(),
        "--logging_steps",
        str(max(1, min(10, max_steps // 5))),
        "--warmup_steps",
        str(min(20, max_steps // 10)),
    ]
    if teacher is not None:
        argv += ["--teacher_model_name_or_path", str(teacher)]
    print(f"[quickstart] training {description}: {max_steps} steps → {out}", flush=True)
    start = time.perf_counter()
    script.main(argv)
    metrics = json.loads((out / "eval_results.json").read_text())
    metrics["train_minutes"] = (time.perf_counter() - start) / 60
    print(f"[quickstart] {description}: mAP {metrics['eval_mAP']:.4f}, NDS {metrics['eval_NDS']:.4f}", flush=True)
    return metrics


def evaluate_folder(script, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """Official metrics of an already trained detector folder, through the same evaluation as the training runs."""
    from hf_crossdistill.distill import NuScenesEvaluation, UniDistillConfig, UniDistillTrainer, load_pretrained_strict
    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

    model = load_pretrained_strict(BEVDetectorForObjectDetection, folder)
    script_args, _ = script.parse_arguments(
        ["--config", str(RECIPES / RUNS["teacher"][0]), "--dataroot", str(args.data_dir)]
    )
    dataset = script.build_dataset(script_args, [model.config], script_args.eval_split, augment=False, seed=args.seed)
    out = args.out_dir / "teacher_eval"
    training_args = UniDistillConfig(
        output_dir=str(out), per_device_eval_batch_size=4, report_to="none", disable_tqdm=bool(args.no_progress)
    )
    evaluation = NuScenesEvaluation(
        dataroot=str(args.data_dir), version=script_args.version, eval_set=script_args.eval_split
    )
    trainer = UniDistillTrainer(model=model, args=training_args, eval_dataset=dataset, nuscenes_evaluation=evaluation)
    start = time.perf_counter()
    metrics = trainer.evaluate()
    metrics["train_minutes"] = (time.perf_counter() - start) / 60  # evaluation only: the teacher was reused
    print(f"[quickstart] reused teacher {folder}: mAP {metrics['eval_mAP']:.4f}, NDS {metrics['eval_NDS']:.4f}")
    return metrics


def results_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of the official metrics of each run."""
    header = "| model | " + " | ".join(TABLE_METRICS) + " | train + eval (min) |"
    lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for run, metrics in results.items():
        values = " | ".join(f"{metrics[f'eval_{name}']:.4f}" for name in TABLE_METRICS)
        lines.append(f"| {RUNS[run][1]} | {values} | {metrics['train_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def first_validation_sample(data_dir: Path, configs: list) -> dict[str, Any]:
    """The first mini_val key frame, collated as a batch of one, with what every model needs."""
    from hf_crossdistill.data.nuscenes import collate_bev_batch, loader_options, nuscenes_detection_dataset

    kwargs = loader_options(*configs)
    kwargs["num_sweeps"] = 1
    dataset = nuscenes_detection_dataset(
        data_dir, "v1.0-mini", "mini_val", augment=False, point_cloud_range=configs[0].point_cloud_range, **kwargs
    )
    return collate_bev_batch([next(iter(dataset))])


def plot_predictions(models: dict[str, Any], batch: dict[str, Any], path: Path):
    """One row of BEV plots (points, ground truth in green, predictions in red), one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from hf_crossdistill.visualization import plot_bev

    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and not k.startswith("gt_")}
    inputs["batch_size"] = 1
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 5), squeeze=False)
    points = batch["points"][:, 1:3]
    for ax, (title, model) in zip(axes[0], models.items()):
        model.eval()
        with torch.no_grad():
            detection = model.post_process(model(**inputs))[0]
        plot_bev(
            points,
            batch["gt_boxes"][0][batch["gt_mask"][0]],
            detection["boxes"],
            pred_scores=detection["scores"],
            score_threshold=0.3,
            bev_range=model.config.bev_range,
            title=title,
            ax=ax,
        )
    fig.suptitle(f"sample {batch['sample_token'][0][:8]}: ground truth (green), detections with score ≥ 0.3 (red)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8
    plt.close(fig)
    return image


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out_dir = args.out_dir.resolve()
    args.data_dir = args.data_dir.resolve()
    start = time.perf_counter()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ensure_dataset(args.data_dir, args.num_scenes, args.scene_duration, args.seed)

    script = _distill_script()
    if args.teacher is None:
        results = {"teacher": train(script, "teacher", args, max_steps=args.teacher_steps)}
        teacher_dir = args.out_dir / "teacher"
    else:
        teacher_dir = args.teacher.resolve()
        results = {"teacher": evaluate_folder(script, teacher_dir, args)}
    results["distilled"] = train(script, "distilled", args, max_steps=args.student_steps, teacher=teacher_dir)
    results["no_kd"] = train(script, "no_kd", args, max_steps=args.student_steps)

    table = results_table(results)
    teacher_note = f"{args.teacher_steps} steps" if args.teacher is None else f"reused from {args.teacher}"
    total_min = (time.perf_counter() - start) / 60
    (args.out_dir / "results.md").write_text(
        "# UniDistill quickstart (synthetic nuScenes v1.0-mini, official metrics on mini_val)\n\n"
        + table
        + f"\nTeacher: {teacher_note}; students {args.student_steps} steps each, batch {args.batch_size}; "
        f"whole job {total_min:.1f} min.\n"
    )
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(table)

    from hf_crossdistill.distill import load_pretrained_strict
    from hf_crossdistill.hub import save_for_hub
    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

    models = {RUNS[run][1]: load_pretrained_strict(BEVDetectorForObjectDetection, args.out_dir / run) for run in RUNS}
    batch = first_validation_sample(args.data_dir, [m.config for m in models.values()])
    image = plot_predictions(models, batch, args.out_dir / "bev.png")

    student = models[RUNS["distilled"][1]]
    metrics = {name: results["distilled"][f"eval_{name}"] for name in TABLE_METRICS}
    save_for_hub(
        student,
        args.out_dir / "hub_student",
        card_kwargs={
            "model_name": "bev-camera-tiny-unidistill-l2c",
            "method": "unidistill",
            "teacher": "tiny LiDAR BEV detector trained by this quickstart (bev_lidar_supervised_tiny.yaml)",
            "datasets": "synthetic-nuscenes-v1.0-mini",
            "metrics": metrics,
            "eval_split": "mini_val",
            "recipe": RECIPES / RUNS["distilled"][0],
            "description": "Tiny camera-only BEV detector distilled from a LiDAR teacher with UniDistill (L→C) on a "
            "synthetic nuScenes-format dataset, as a pipeline demonstration; not a model for real driving data.",
        },
        images={"bev": image},
    )
    print(
        f"[quickstart] done in {(time.perf_counter() - start) / 60:.1f} min: {args.out_dir / 'results.md'}, "
        f"{args.out_dir / 'bev.png'}, {args.out_dir / 'hub_student'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""The main job: a cross-modal UniDistill path that pays, three seeds each way, on a laptop CPU.

    bash scripts/quickstart.sh                      # data (~2 min once), 6 training runs (~20 min), summary
    python scripts/quickstart.py --retrain-teacher  # also retrain the teacher (LiDAR, then fusion; ~1 h)

1. generates the synthetic nuScenes dataroot (`v1.0-trainval` layout, `train_detect` / `val` scenes) when missing;
2. takes the committed trained fusion (LiDAR + camera) teacher, `hub_configs/pretrained/study_fusion` (made by the
   study's teacher recipes; `--retrain-teacher` rebuilds it into the output folder);
3. trains the small LiDAR student distilled from it (UniDistill L+C→L, `hub_configs/recipes/quickstart/
   distilled.yaml`) and alone (`no_kd.yaml`, same steps and batch), seeds 0, 1, 2, two runs side by side with one
   compute thread each (finished runs are reused: run it again and only the summary is rebuilt);
4. scores everything with the official nuScenes metrics on `val`, prints mean ± std per arm and whether the
   distilled mean NDS beats the no-KD mean by more than the larger std;
5. writes `results.md`, `results.json`, `bev.png` (teacher | distilled | no KD on one val key frame, boxes at the
   evaluation's score threshold) and Hub-ready folders `hub/{teacher,distilled,no_kd}`.

Why L+C→L: on two CPU cores a camera student needs far more than the job's 20 minutes to detect anything (the
study's camera students: docs/RESULTS.md), while the LiDAR student learns in minutes and still has room under the
fusion teacher. The study (`scripts/unidistill_study.py`) measures all four paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from hf_crossdistill.experiments import aggregate_unidistill_paths, load_study_plan, run_study, train_teachers

PLAN = Path("hub_configs/recipes/quickstart/plan.yaml")
ARMS = {"distilled": "UniDistill L+C→L (distilled)", "no_kd": "no KD (same budget)"}
TABLE_METRICS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, default=PLAN, help="the quickstart's plan (arms and teacher)")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/quickstart"))
    parser.add_argument("--data-dir", type=Path, default=None, help="dataroot (default: the plan's; made if missing)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one compute thread each)")
    parser.add_argument("--retrain-teacher", action="store_true", help="train the teacher instead of the committed")
    parser.add_argument("--teacher", type=Path, default=None, help="use this teacher folder instead of the plan's")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless the distilled mean NDS beats no KD by > the larger std"
    )
    parser.add_argument(
        "--train-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="passed to every training run (e.g. --train-args --max_steps 4 for a smoke run); last option",
    )
    args = parser.parse_args(argv)
    if not args.seeds or any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct ints >= 0, got {args.seeds}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.teacher is not None and not (args.teacher / "config.json").is_file():
        parser.error(f"--teacher {args.teacher} is not a save_pretrained folder (no config.json)")
    return args


def ensure_dataset(plan) -> Path:
    """The plan's dataroot, generated with the plan's `data.generate` options when it is not there yet."""
    data = plan.data
    root = Path(data["dataroot"])
    if (root / data["version"] / "sample.json").is_file():
        print(f"[quickstart] dataset: {root} (exists)")
        return root
    from hf_crossdistill.data.synthetic import make_synthetic_nuscenes

    print(f"[quickstart] generating {root}: {data['command']}", flush=True)
    start = time.perf_counter()
    make_synthetic_nuscenes(
        root,
        version=data["version"],
        progress=lambda line: print(f"[quickstart]   {line}", flush=True),
        **data["generate"],
    )
    print(f"[quickstart] dataset ready in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def summarize(table: dict[str, Any], teacher_metrics: dict[str, float], teacher_label: str) -> dict[str, Any]:
    """Mean ± std per arm and the gain criterion of the main job."""
    (path,) = table["paths"]
    entry = table["paths"][path]
    arms = {"distilled": entry["distilled"], "no_kd": entry["student_alone"]}
    summary: dict[str, Any] = {"path": path, "teacher": teacher_metrics, "teacher_label": teacher_label, "arms": {}}
    for name, arm in arms.items():
        keys = ("seeds", "mAP", "NDS", "mAP_mean", "mAP_std", "NDS_mean", "NDS_std")
        summary["arms"][name] = {key: arm[key] for key in keys}
    distilled, alone = summary["arms"]["distilled"], summary["arms"]["no_kd"]
    gain = distilled["NDS_mean"] - alone["NDS_mean"]
    summary["NDS_gain"] = gain
    summary["larger_std"] = max(distilled["NDS_std"], alone["NDS_std"])
    summary["gain_beats_larger_std"] = gain > summary["larger_std"]
    summary["distilled_detects"] = distilled["mAP_mean"] >= 0.10
    return summary


def report(summary: dict[str, Any], minutes: dict[str, float]) -> str:
    lines = [
        f"# UniDistill quickstart: {summary['path']} (official nuScenes metrics on val)",
        "",
        "| model | seeds | mAP (mean ± std) | NDS (mean ± std) | per seed NDS |",
        "|---|---|---|---|---|",
        f"| teacher ({summary['teacher_label']}) | – | {summary['teacher']['mAP']:.4f} | "
        f"{summary['teacher']['NDS']:.4f} | |",
    ]
    for name, label in ARMS.items():
        arm = summary["arms"][name]
        per_seed = " / ".join(f"{v:.4f}" for v in arm["NDS"])
        lines.append(
            f"| {label} | {', '.join(map(str, arm['seeds']))} | {arm['mAP_mean']:.4f} ± {arm['mAP_std']:.4f} | "
            f"{arm['NDS_mean']:.4f} ± {arm['NDS_std']:.4f} | {per_seed} |"
        )
    verdict = "yes" if summary["gain_beats_larger_std"] else "NO"
    lines += [
        "",
        f"Distilled − no KD: {summary['NDS_gain']:+.4f} NDS (larger std {summary['larger_std']:.4f}): gain beats the "
        f"larger std: **{verdict}**; distilled mean mAP ≥ 0.10: "
        f"**{'yes' if summary['distilled_detects'] else 'NO'}**.",
        f"Training time: {minutes['training']:.1f} min for {minutes['runs']} runs, {minutes['jobs']} at a time; "
        f"whole job {minutes['total']:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def first_val_batch(dataroot: Path, version: str, configs: list) -> dict[str, Any]:
    """The first val key frame, collated as a batch of one, with what every model needs."""
    from hf_crossdistill.data.nuscenes import collate_bev_batch, loader_options, nuscenes_detection_dataset

    options = {**loader_options(*configs), "num_sweeps": 1}
    dataset = nuscenes_detection_dataset(
        dataroot, version, "val", augment=False, point_cloud_range=configs[0].point_cloud_range, **options
    )
    return collate_bev_batch([next(iter(dataset))])


def plot_models(models: dict[str, Any], batch: dict[str, Any], path: Path):
    """teacher | distilled | no KD on the same key frame, boxes at each model's evaluation score threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from hf_crossdistill.visualization import plot_bev

    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and not k.startswith("gt_")}
    inputs["batch_size"] = 1
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 5), squeeze=False)
    for ax, (title, (model, metrics)) in zip(axes[0], models.items()):
        model.eval()
        with torch.no_grad():
            detection = model.post_process(model(**inputs))[0]  # at config.score_threshold, as evaluated
        plot_bev(
            batch["points"][:, 1:3],
            batch["gt_boxes"][0][batch["gt_mask"][0]],
            detection["boxes"],
            pred_scores=detection["scores"],
            score_threshold=float(model.config.score_threshold),
            bev_range=model.config.bev_range,
            title=f"{title}\nval mAP {metrics['mAP']:.3f} · NDS {metrics['NDS']:.3f}",
            ax=ax,
        )
    fig.suptitle(
        f"val key frame {batch['sample_token'][0][:8]}: ground truth (green), detections (red) at the "
        "evaluation's score threshold"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8
    plt.close(fig)
    return image


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    plan = load_study_plan(args.plan, Path.cwd())
    if args.data_dir is not None:
        plan = dataclasses.replace(plan, data={**plan.data, "dataroot": str(args.data_dir)})
    args.train_args = ["--dataroot", plan.data["dataroot"], *args.train_args]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    dataroot = ensure_dataset(plan)
    version = plan.data["version"]

    if args.teacher is not None:
        teacher_folder, teacher_label = args.teacher, f"fusion, {args.teacher}"
    elif args.retrain_teacher:
        # The teacher recipes name the study's dataroot and split; the quickstart trains them on its own data.
        trained = train_teachers(
            plan,
            root=Path.cwd(),
            out_root=args.out_dir / "runs",
            results_root=args.out_dir / "results",
            install=False,
            extra_args=["--train_split", "train_detect", *args.train_args],
        )
        teacher_folder, teacher_label = trained["fusion"], "fusion, retrained by this job"
    else:
        teacher_folder, teacher_label = Path(plan.teachers["fusion"]["folder"]), "fusion, committed"
    if not (teacher_folder / "model.safetensors").is_file():
        print(f"[quickstart] no trained teacher in {teacher_folder}: pass --retrain-teacher", file=sys.stderr)
        return 2
    if args.teacher is not None or args.retrain_teacher:
        teachers = {**plan.teachers, "fusion": {**plan.teachers["fusion"], "folder": str(teacher_folder.resolve())}}
        plan = dataclasses.replace(plan, teachers=teachers)

    results_root = args.out_dir / "results"
    train_start = time.perf_counter()
    runs = run_study(
        plan,
        list(ARMS),
        seeds=args.seeds,
        jobs=args.jobs,
        out_root=args.out_dir / "runs",
        results_root=results_root,
        root=Path.cwd(),
        extra_args=args.train_args,
    )
    train_minutes = (time.perf_counter() - train_start) / 60

    from hf_crossdistill.evaluation import evaluate_detector

    teacher_metrics = evaluate_detector(teacher_folder, dataroot, version, "val", num_sweeps=1)
    table = aggregate_unidistill_paths(
        plan, results_root, machine="this machine", seeds=args.seeds, root=Path.cwd(), extra_args=args.train_args
    )
    summary = summarize(table, {k: teacher_metrics[k] for k in TABLE_METRICS}, teacher_label)
    minutes = {
        "training": train_minutes,
        "runs": len(runs),
        "jobs": args.jobs,
        "total": (time.perf_counter() - start) / 60,
    }
    summary["minutes"] = minutes
    summary["runs"] = [{k: r[k] for k in ("arm", "seed", "mAP", "NDS", "wall_s", "command")} for r in runs]
    text = report(summary, minutes)
    (args.out_dir / "results.md").write_text(text)
    (args.out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    print(text)

    from hf_crossdistill.distill import load_pretrained_strict
    from hf_crossdistill.hub import save_for_hub
    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

    # The seed-0 runs (the first seed given) are the Hub folders and the picture.
    seed = args.seeds[0]
    folders = {
        "teacher": teacher_folder,
        **{name: args.out_dir / "runs" / "val" / name / f"seed{seed}" for name in ARMS},
    }
    metrics = {"teacher": summary["teacher"]}
    for name in ARMS:
        result = json.loads((results_root / "val" / name / f"seed{seed}.json").read_text())
        metrics[name] = {k: result["metrics"][f"eval_{k}"] for k in TABLE_METRICS}
    models = {name: load_pretrained_strict(BEVDetectorForObjectDetection, folder) for name, folder in folders.items()}
    labels = {"teacher": "fusion teacher (L+C)", **ARMS}
    batch = first_val_batch(dataroot, version, [m.config for m in models.values()])
    image = plot_models({labels[n]: (models[n], metrics[n]) for n in models}, batch, args.out_dir / "bev.png")
    recipes = {"teacher": plan.teachers["fusion"]["recipe"], **{n: str(plan.arms[n].recipe) for n in ARMS}}
    for name, model in models.items():
        save_for_hub(
            model,
            args.out_dir / "hub" / name,
            card_kwargs={
                "model_name": f"bev-small-quickstart-{name.replace('_', '-')}",
                "method": "unidistill" if name == "distilled" else None,
                "teacher": "the fusion teacher of this quickstart (hub/teacher)" if name == "distilled" else None,
                "datasets": "synthetic-nuscenes",
                "metrics": metrics[name],
                "eval_split": "val",
                "recipe": recipes[name],
                "description": f"{labels[name]} of the hf_crossdistill quickstart, trained on a synthetic "
                "nuScenes-format dataset (a pipeline demonstration, not a model for real driving data).",
            },
            images={"bev": image},
        )
    print(
        f"[quickstart] done in {(time.perf_counter() - start) / 60:.1f} min: {args.out_dir}/results.md, bev.png, hub/"
    )
    passed = summary["gain_beats_larger_std"] and summary["distilled_detects"]
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    raise SystemExit(main())

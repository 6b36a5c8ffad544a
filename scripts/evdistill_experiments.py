#!/usr/bin/env python
"""EvDistill on the synthetic event benchmark: methods vs baselines, the Table-6 ablation and recognition.

    python scripts/evdistill_experiments.py --out outputs/evdistill_experiments            # ~25 min on 2 CPU cores
    python scripts/evdistill_experiments.py --out /tmp/evd --quick                         # smoke run, ~2 min

What runs (every run is `run_evdistill` on a recipe of hub_configs/recipes/ with overrides, in this process):

1. data: a DDD17-like world (events + APS frames + labels, 3 train / 1 test recordings) and an unpaired, labelled
   source-image set in another style; an N-Caltech-like set (events only) and its source images
   (`hf_crossdistill.data.synthetic`, written in the real formats). Skipped when the folders exist.
2. teachers, first: T_seg (DeepLabV3+ on the source images), T_rec (ResNet on the recognition source images).
   One teacher per task, shared by every seed, so that the seeds measure the students' variance.
3. per seed, segmentation S_ev variants (the Table-6 names of the paper → our switches):
   - `pseudo_labels`   baseline: CE on argmax T(x_aps) (no source data, no BMR)
   - `events_aps_kd`   baseline "KD with only events and APS frames": eq. 5, 6 and 7 between T(x_aps) and S_ev
   - `PI`              pixel-wise KD: BMR (eq. 1, 2, cycle) + DSC (eq. 3) + CE of S_ev on G_S→T(x_s); no S_aps
   - `PI+AG`           + affinity graph (eq. 7)
   - `PI+AG+DA`        + distribution adaptation (paper "DM": eq. 5, 6); still no S_aps
   - `PI+AG+DA+MD`     + S_aps with eq. 4 and mutual distillation (paper "ML", eq. 8) = full EvDistill
   - `w/o BMR`         full EvDistill without the generators / discriminators (`use_bmr=False`)
4. per seed, recognition: EvDistill S_ev (events only, no S_aps) → top-1 on the N-Caltech-like test split.

Results: `<out>/results.json` (every run's metrics) and `<out>/results.md` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "hub_configs" / "recipes"

# Data sizes: chosen so that the whole set of runs fits about 40 minutes of 2 shared CPU cores.
DATA = {
    "ddd17": {"num_recordings": 4, "duration_s": 2.4, "sensor_size": (104, 138), "render_fps": 100.0},
    "source_images": {"num_images": 160, "image_size": (64, 128)},
    "ncaltech": {
        "num_classes": 5, "samples_per_class": 40, "sensor_size": (60, 80), "saccade_ms": 30.0,
        "render_fps": 500.0, "amplitude_px": 3.0,
    },
    "recognition_source": {"num_classes": 5, "samples_per_class": 60, "image_size": (60, 80)},
}  # fmt: skip
QUICK_DATA = {
    "ddd17": {"num_recordings": 2, "duration_s": 0.4, "sensor_size": (104, 138), "render_fps": 100.0},
    "source_images": {"num_images": 8, "image_size": (64, 128)},
    "ncaltech": {
        "num_classes": 3, "samples_per_class": 4, "sensor_size": (60, 80), "saccade_ms": 30.0,
        "render_fps": 500.0, "amplitude_px": 3.0,
    },
    "recognition_source": {"num_classes": 3, "samples_per_class": 4, "image_size": (60, 80)},
}  # fmt: skip

# Segmentation variants: recipe + overrides. The ablation rows are overrides of the full recipe.
NO_APS = {"aps_student_config": None}
SEGMENTATION_VARIANTS = {
    "pseudo_labels": ("evdistill_ddd17_pseudo_labels_tiny", {}),
    "events_aps_kd": ("evdistill_ddd17_events_aps_kd_tiny", {}),
    "PI": ("evdistill_ddd17_tiny", {"lambda_ag": 0.0, "lambda_da": 0.0, "lambda_md": 0.0, **NO_APS}),
    "PI+AG": ("evdistill_ddd17_tiny", {"lambda_da": 0.0, "lambda_md": 0.0, **NO_APS}),
    "PI+AG+DA": ("evdistill_ddd17_tiny", {"lambda_md": 0.0, **NO_APS}),
    "PI+AG+DA+MD": ("evdistill_ddd17_tiny", {}),
    "w/o BMR": ("evdistill_ddd17_tiny", {"use_bmr": False}),
}
FULL = "PI+AG+DA+MD"
REUSE_FINISHED_RUNS = True  # set by --rerun


def _recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def make_data(root: Path, quick: bool, seed: int) -> dict[str, Path]:
    from hf_crossdistill.data.synthetic.event_worlds import (
        make_recognition_source_images,
        make_source_images,
        make_synthetic_ddd17,
        make_synthetic_ncaltech,
    )

    makers = {
        "ddd17": make_synthetic_ddd17,
        "source_images": make_source_images,
        "ncaltech": make_synthetic_ncaltech,
        "recognition_source": make_recognition_source_images,
    }
    sizes = QUICK_DATA if quick else DATA
    paths = {}
    # The source sets get another seed than the event sets they are unpaired with.
    offsets = {"ddd17": 0, "source_images": 1, "ncaltech": 0, "recognition_source": 1}
    for kind, maker in makers.items():
        paths[kind] = root / kind
        if not paths[kind].is_dir():
            start = time.perf_counter()
            maker(paths[kind], seed=seed + offsets[kind], **sizes[kind])
            print(f"[data] {kind}: {time.perf_counter() - start:.1f} s", flush=True)
    return paths


def _common(args: argparse.Namespace, out_dir: Path, seed: int, steps: int) -> dict:
    return {
        "output_dir": str(out_dir),
        "max_steps": steps,
        "seed": seed,
        "save_strategy": "no",
        "logging_steps": max(1, steps // 5),
        "disable_tqdm": True,
        "per_device_eval_batch_size": 16,
        "dataloader_num_workers": 0,
        "use_cpu": True,
        "num_overlays": 2 if seed == 0 else 0,
    }


def _size(args: argparse.Namespace) -> list[int]:
    return [int(v) for v in args.size.lower().split("x")]


def _with_size(recipe: dict, size: list[int]) -> dict:
    recipe = dict(recipe)
    for key in ("event_dataset", "source_dataset"):
        if key in recipe:
            recipe[key] = {**recipe[key], "output_size": size}
    return recipe


def _finished(out_dir: Path, steps: int) -> dict | None:
    """The metrics of an earlier run in `out_dir` with the same step count (runs are deterministic by seed)."""
    from hf_crossdistill.distill.evdistill_runner import METRICS_FILE

    path = out_dir / METRICS_FILE
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("max_steps") == steps and "wall_s" in metrics else None


def _run(name: str, recipe: dict, overrides: dict, log: list[dict]) -> dict:
    from hf_crossdistill.distill.evdistill_runner import METRICS_FILE, run_evdistill

    out_dir = Path(overrides["output_dir"])
    metrics = _finished(out_dir, overrides["max_steps"]) if REUSE_FINISHED_RUNS else None
    if metrics is None:
        start = time.perf_counter()
        metrics = run_evdistill(recipe, overrides)
        metrics["name"], metrics["wall_s"] = name, round(time.perf_counter() - start, 1)
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    score = metrics.get("eval", metrics.get("eval_aps", metrics.get("eval_source", {})))
    key = "mean_iou" if "mean_iou" in score else "accuracy"
    print(f"[run] {name}: {key}={score.get(key)} ({metrics['wall_s']} s)", flush=True)
    log.append(metrics)
    return metrics


def run_all(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    data = make_data(out / "data", args.quick, args.data_seed)
    size = _size(args)
    log: list[dict] = []
    seg_root = {"event_root": str(data["ddd17"]), "source_root": str(data["source_images"])}
    rec_root = {"event_root": str(data["ncaltech"]), "source_root": str(data["recognition_source"])}
    # Teachers first: every student recipe reads them.
    t_seg, t_rec = out / "teacher_ddd17", out / "teacher_ncaltech"
    teacher_seed = args.seeds[0]
    _run(
        "teacher_ddd17",
        _with_size(_recipe("evdistill_teacher_ddd17_tiny"), size),
        {**_common(args, t_seg, teacher_seed, args.teacher_steps), **seg_root,
         "event_dataset": {"layout": "ddd17_ess", "representation": "normalized_count", "window_ms": 50,
                           "output_size": size}},
        log,
    )  # fmt: skip
    _run(
        "teacher_ncaltech",
        _recipe("evdistill_teacher_ncaltech_tiny"),
        {**_common(args, t_rec, teacher_seed, args.recognition_teacher_steps), **rec_root},
        log,
    )
    for seed in args.seeds:
        for variant, (recipe_name, overrides) in SEGMENTATION_VARIANTS.items():
            if args.only and variant not in args.only:
                continue
            run_dir = out / f"seg_{variant.replace('/', '_').replace('+', '_').replace(' ', '')}_seed{seed}"
            _run(
                f"{variant} seed {seed}",
                _with_size(_recipe(recipe_name), size),
                {**_common(args, run_dir, seed, args.steps), **seg_root, **overrides,
                 "teacher_model_name_or_path": str(t_seg)},
                log,
            )  # fmt: skip
            log[-1]["variant"] = variant
        _run(
            f"recognition seed {seed}",
            _recipe("evdistill_ncaltech_tiny"),
            {**_common(args, out / f"rec_evdistill_seed{seed}", seed, args.recognition_steps), **rec_root,
             "teacher_model_name_or_path": str(t_rec)},
            log,
        )  # fmt: skip
        log[-1]["variant"] = "recognition"
        (out / "results.json").write_text(json.dumps(log, indent=2))
    return log


def _mean_std(values: list[float]) -> str:
    values = [100.0 * v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(log: list[dict], args: argparse.Namespace) -> str:
    """The results as markdown tables (mean ± sample std over seeds, in %)."""
    by_variant: dict[str, list[dict]] = {}
    for entry in log:
        if "variant" in entry:
            by_variant.setdefault(entry["variant"], []).append(entry)
    teachers = {e["name"]: e for e in log if e["name"].startswith("teacher")}
    lines = [
        f"Seeds {args.seeds}; segmentation: {args.steps} steps per student (batch 4), {args.teacher_steps} for T, "
        f"inputs {args.size}; recognition: {args.recognition_steps} steps per student, "
        f"{args.recognition_teacher_steps} for T, inputs 64x80; data {'QUICK' if args.quick else 'default'} sizes "
        "(scripts/evdistill_experiments.py).",
        "",
        "| S_ev trained with | mIoU (%) | pixel acc. (%) | s / run |",
        "|---|---|---|---|",
    ]
    order = ["pseudo_labels", "events_aps_kd", "PI", "PI+AG", "PI+AG+DA", FULL, "w/o BMR"]
    labels = {
        "pseudo_labels": "pseudo labels argmax T(x_aps) (baseline)",
        "events_aps_kd": "KD with only events and APS frames (baseline)",
        "PI": "PI: BMR + DSC + CE on G_S→T(x_s)",
        "PI+AG": "PI + AG",
        "PI+AG+DA": "PI + AG + DA (paper: DM)",
        FULL: "PI + AG + DA + MD = **full EvDistill** (paper: + ML, S_aps)",
        "w/o BMR": "full EvDistill w/o BMR",
    }
    for variant in order:
        runs = by_variant.get(variant, [])
        if not runs:
            continue
        miou = _mean_std([r["eval"]["mean_iou"] for r in runs])
        acc = _mean_std([r["eval"]["pixel_accuracy"] for r in runs])
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(f"| {labels[variant]} | {miou} | {acc} | {wall:.0f} |")
    t = teachers.get("teacher_ddd17")
    if t is not None:
        lines += [
            "",
            f"Teacher T (DeepLabV3+ on source images): mIoU {_mean_std([t['eval_source']['mean_iou']])} on held-out "
            f"source images, {_mean_std([t['eval_aps']['mean_iou']])} on the APS frames of the event test split "
            "(the pseudo-label quality).",
        ]
    rec = by_variant.get("recognition", [])
    if rec:
        tr = teachers.get("teacher_ncaltech")
        lines += [
            "",
            "| Recognition (N-Caltech-like, events only, no S_aps) | top-1 (%) |",
            "|---|---|",
            f"| EvDistill S_ev (no event labels) | {_mean_std([r['eval']['accuracy'] for r in rec])} |",
        ]
        if tr is not None and "eval_source" in tr:
            lines.append(f"| teacher T on held-out source images | {_mean_std([tr['eval_source']['accuracy']])} |")
        num_classes = len(rec[0]["eval"]["per_class_accuracy"])
        lines.append(f"| chance | {100.0 / num_classes:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/evdistill_experiments", help="output folder (data, runs, tables)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=120, help="training steps per student run")
    parser.add_argument("--teacher-steps", type=int, default=600, help="training steps per teacher")
    parser.add_argument("--recognition-steps", type=int, default=300, help="steps per recognition student")
    parser.add_argument("--recognition-teacher-steps", type=int, default=1000, help="steps of T_rec")
    parser.add_argument("--size", default="48x96", help="HxW network input size for segmentation")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="segmentation variants to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny data and 3 steps: a smoke run of the pipeline")
    parser.add_argument("--rerun", action="store_true", help="retrain runs already finished with the same steps")
    args = parser.parse_args(argv)
    global REUSE_FINISHED_RUNS
    REUSE_FINISHED_RUNS = not args.rerun
    if args.quick:
        args.steps, args.teacher_steps, args.seeds = 3, 3, args.seeds[:1]
        args.recognition_steps = args.recognition_teacher_steps = 3
    if args.only:
        unknown = set(args.only) - set(SEGMENTATION_VARIANTS)
        if unknown:
            parser.error(f"--only: unknown variants {sorted(unknown)}; choose from {list(SEGMENTATION_VARIANTS)}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    log = run_all(args)
    table = markdown(log, args)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(log, indent=2))
    (out / "results.md").write_text(table)
    print(table)
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

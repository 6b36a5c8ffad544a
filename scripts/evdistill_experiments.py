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
4. per seed, recognition: EvDistill S_ev (events only, no S_aps) → top-1 on the N-Caltech-like test split, for
   `evdistill_ncaltech_tiny` as it is and for the earlier recipes as overrides of it (`RECOGNITION_VARIANTS`:
   before the event-camera priors, `BEFORE_EDGE_PRIOR`; the previous recipe, `PREVIOUS_RECOGNITION`), plus the
   reference S_ev trained WITH the event labels.
5. per seed, MVSEC-like segmentation (MVSEC ``*_data.hdf5`` files at 346 x 260, scored on the generator's sidecar
   labels): full EvDistill (`evdistill_mvsec_tiny`) vs the pseudo-label baseline, with the DDD17-like teacher.

`--only` picks what runs: segmentation variant names, or the groups `segmentation`, `recognition`, `mvsec`
(e.g. ``--only recognition mvsec``). Finished runs (same recipe and overrides) are reused unless `--rerun`.

Results: `<out>/results.json` (every run's metrics) and `<out>/results.md` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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
    "mvsec": {"num_recordings": 4, "duration_s": 2.4, "sensor_size": (260, 346), "render_fps": 100.0},
}  # fmt: skip
QUICK_DATA = {
    "ddd17": {"num_recordings": 2, "duration_s": 0.4, "sensor_size": (104, 138), "render_fps": 100.0},
    "source_images": {"num_images": 8, "image_size": (64, 128)},
    "ncaltech": {
        "num_classes": 3, "samples_per_class": 4, "sensor_size": (60, 80), "saccade_ms": 30.0,
        "render_fps": 500.0, "amplitude_px": 3.0,
    },
    "recognition_source": {"num_classes": 3, "samples_per_class": 4, "image_size": (60, 80)},
    "mvsec": {"num_recordings": 2, "duration_s": 0.24, "sensor_size": (260, 346), "render_fps": 100.0},
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
MVSEC_VARIANTS = {
    "mvsec_pseudo_labels": "evdistill_mvsec_pseudo_labels_tiny",
    "mvsec_evdistill": "evdistill_mvsec_tiny",
}
GROUPS = ("segmentation", "recognition", "mvsec")
# The recognition recipe before the study in docs/RESULTS.md (every translation term from step 0, eq. 3 training
# G_T→S, cycle 10, 8-channel 2-layer PatchGAN and generators), at the same step count.
PREVIOUS_RECOGNITION = {
    "bmr_warmup_steps": 0, "dsc_trains_generator": True, "lambda_bmr_cycle": 10.0, "generator_base_channels": 8,
    "discriminator_base_channels": 8, "discriminator_layers": 2,
}  # fmt: skip
# The recognition recipe before the event-camera priors (no edge prior in G_S→T, no event augmentation, student CE
# training G_S→T): the figures of docs/RESULTS.md before them.
BEFORE_EDGE_PRIOR = {
    "generator_events_edge_prior": "none", "event_pixel_dropout": 0.0, "event_max_shift": 0,
    "detach_translated_source": False,
}  # fmt: skip
# Recognition rows (every one on evdistill_ncaltech_tiny): variant -> (run folder prefix, overrides, table label).
RECOGNITION_VARIANTS = {
    "recognition": ("rec_evdistill_edge_prior", {}, "EvDistill S_ev (no event labels)"),
    "recognition_edge_prior_only": (
        "rec_edge_prior_only", {"detach_translated_source": False, "event_pixel_dropout": 0.0, "event_max_shift": 0},
        "EvDistill S_ev, edge prior only (CE trains G_S→T, no event augmentation)",
    ),
    "recognition_no_edge_prior": (
        "rec_evdistill", BEFORE_EDGE_PRIOR,
        "EvDistill S_ev, recipe before the event priors (no edge prior, no event augmentation, CE trains G_S→T)",
    ),
    "recognition_previous_recipe": (
        "rec_previous_recipe", {**PREVIOUS_RECOGNITION, **BEFORE_EDGE_PRIOR},
        "EvDistill S_ev, previous recipe (no warm-up, eq. 3 trains G_T→S, cycle 10, small PatchGAN)",
    ),
}  # fmt: skip
REUSE_FINISHED_RUNS = True  # set by --rerun


def _recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def make_data(root: Path, quick: bool, seed: int, kinds: tuple[str, ...] | None = None) -> dict[str, Path]:
    from hf_crossdistill.data.synthetic.event_worlds import (
        make_recognition_source_images,
        make_source_images,
        make_synthetic_ddd17,
        make_synthetic_mvsec,
        make_synthetic_ncaltech,
    )

    makers = {
        "ddd17": make_synthetic_ddd17,
        "source_images": make_source_images,
        "ncaltech": make_synthetic_ncaltech,
        "recognition_source": make_recognition_source_images,
        "mvsec": make_synthetic_mvsec,
    }
    sizes = QUICK_DATA if quick else DATA
    paths = {}
    # The source sets get another seed than the event sets they are unpaired with.
    offsets = {"ddd17": 0, "source_images": 1, "ncaltech": 0, "recognition_source": 1, "mvsec": 0}
    for kind, maker in makers.items():
        paths[kind] = root / kind
        if kinds is not None and kind not in kinds:
            continue
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


def run_fingerprint(*parts: Any) -> str:
    """SHA-256 of the JSON of everything that defines a run (recipe, overrides, ...), key order ignored."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _finished(out_dir: Path, fingerprint: str) -> dict | None:
    """The metrics of an earlier run in `out_dir` made from the same recipe and overrides (runs are deterministic
    by seed); a run from another recipe version, or one that recorded no fingerprint, is not reused."""
    from hf_crossdistill.distill.evdistill_runner import METRICS_FILE

    path = out_dir / METRICS_FILE
    if not REUSE_FINISHED_RUNS or not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("fingerprint") == fingerprint and "wall_s" in metrics else None


def _run(name: str, recipe: dict, overrides: dict, log: list[dict]) -> dict:
    from hf_crossdistill.distill.evdistill_runner import METRICS_FILE, run_evdistill

    out_dir = Path(overrides["output_dir"])
    fingerprint = run_fingerprint(recipe, overrides)
    metrics = _finished(out_dir, fingerprint)
    if metrics is None:
        start = time.perf_counter()
        metrics = run_evdistill(recipe, overrides)
        metrics["name"], metrics["wall_s"] = name, round(time.perf_counter() - start, 1)
        metrics["fingerprint"] = fingerprint
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    score = metrics.get("eval", metrics.get("eval_aps", metrics.get("eval_source", {})))
    key = "mean_iou" if "mean_iou" in score else "accuracy"
    print(f"[run] {name}: {key}={score.get(key)} ({metrics['wall_s']} s)", flush=True)
    log.append(metrics)
    return metrics


def _wanted(args: argparse.Namespace, group: str, variant: str | None = None) -> bool:
    """`--only` selects groups (`segmentation`, `recognition`, `mvsec`) or single segmentation variants."""
    if not args.only:
        return True
    return group in args.only or (variant is not None and variant in args.only)


def run_all(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    kinds = {"source_images"}
    if any(_wanted(args, "segmentation", v) for v in SEGMENTATION_VARIANTS):
        kinds.add("ddd17")
    if _wanted(args, "recognition"):
        kinds |= {"ncaltech", "recognition_source"}
    if _wanted(args, "mvsec"):
        kinds.add("mvsec")
    kinds.add("ddd17")  # the segmentation teacher's run scores T on its APS frames
    data = make_data(out / "data", args.quick, args.data_seed, tuple(kinds))
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
    if _wanted(args, "recognition"):
        _run(
            "teacher_ncaltech",
            _recipe("evdistill_teacher_ncaltech_tiny"),
            {**_common(args, t_rec, teacher_seed, args.recognition_teacher_steps), **rec_root},
            log,
        )
    mvsec_root = {"event_root": str(data["mvsec"]), "source_root": str(data["source_images"])}
    if _wanted(args, "mvsec"):
        log.append(teacher_on_mvsec_aps(t_seg, data["mvsec"]))
    for seed in args.seeds:
        for variant, (recipe_name, overrides) in SEGMENTATION_VARIANTS.items():
            if not _wanted(args, "segmentation", variant):
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
        if _wanted(args, "recognition"):
            for variant, (prefix, overrides, _) in RECOGNITION_VARIANTS.items():
                _run(
                    f"{variant.replace('_', ' ')} seed {seed}",
                    _recipe("evdistill_ncaltech_tiny"),
                    {**_common(args, out / f"{prefix}_seed{seed}", seed, args.recognition_steps), **rec_root,
                     **overrides, "teacher_model_name_or_path": str(t_rec)},
                    log,
                )  # fmt: skip
                log[-1]["variant"] = variant
            supervised_event_reference(
                data["ncaltech"], out / f"rec_supervised_reference_seed{seed}", seed, args.recognition_steps, log
            )
        for variant, recipe_name in MVSEC_VARIANTS.items():
            if not _wanted(args, "mvsec"):
                break
            _run(
                f"{variant} seed {seed}",
                _recipe(recipe_name),
                {**_common(args, out / f"{variant}_seed{seed}", seed, args.steps), **mvsec_root,
                 "teacher_model_name_or_path": str(t_seg)},
                log,
            )  # fmt: skip
            log[-1]["variant"] = variant
        (out / "results.json").write_text(json.dumps(log, indent=2))
    return log


def teacher_on_mvsec_aps(teacher_dir: Path, mvsec_root: Path) -> dict:
    """T scored on the APS frames (``image_raw``) of the MVSEC-like test drive: the quality of the pseudo labels."""
    from hf_crossdistill.data.events import event_segmentation_dataset
    from hf_crossdistill.distill.evdistill_runner import evaluate_event_model
    from hf_crossdistill.distill.evdistill_trainer import load_teacher

    kwargs = {k: v for k, v in _recipe("evdistill_mvsec_tiny")["event_dataset"].items() if k != "split"}
    test = event_segmentation_dataset(mvsec_root, split="test", with_images=True, **kwargs)
    score = evaluate_event_model(load_teacher(teacher_dir), test, task="segmentation", input_key="image")
    print(f"[run] teacher on MVSEC APS frames: mean_iou={score['mean_iou']}", flush=True)
    return {"name": "mvsec_aps_teacher_score", "eval_aps_mvsec": score}


def supervised_event_reference(data_root: Path, out_dir: Path, seed: int, steps: int, log: list[dict]) -> dict:
    """NOT a method: S_ev (the recognition recipe's network and input) trained WITH the event labels, the same
    batch size, learning rate and schedule: how far event labels take this network in the same budget."""
    import numpy as np
    import torch

    from hf_crossdistill.data.events import event_recognition_dataset
    from hf_crossdistill.distill.evdistill_runner import (
        METRICS_FILE,
        _build_model,
        _recognition_classes,
        evaluate_event_model,
        resolve_model_config,
    )

    recipe = _recipe("evdistill_ncaltech_tiny")
    fingerprint = run_fingerprint("supervised_event_reference", recipe, str(data_root), seed, steps)
    metrics = _finished(out_dir, fingerprint)
    if metrics is None:
        start = time.perf_counter()
        kwargs = {k: v for k, v in recipe["event_dataset"].items() if k != "split"}
        train = list(event_recognition_dataset(data_root, split="train", **kwargs))
        x = torch.from_numpy(np.stack([e["events"] for e in train]))  # (N, C, H, W)
        y = torch.tensor([e["label"] for e in train])
        config = resolve_model_config(recipe["student_config"], class_names=_recognition_classes(data_root))
        model = _build_model(config, None, seed).train()
        lr, batch = float(recipe["learning_rate"]), int(recipe["per_device_train_batch_size"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / steps)  # linear, as Trainer
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=generator)
            loss = model(pixel_values=x[idx], labels=y[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        test = event_recognition_dataset(data_root, split="test", **kwargs)
        metrics = {"name": f"supervised event reference seed {seed}", "max_steps": steps, "seed": seed,
                   "eval": evaluate_event_model(model, test, task="recognition", batch_size=16),
                   "wall_s": round(time.perf_counter() - start, 1), "fingerprint": fingerprint}  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    metrics["variant"] = "recognition_supervised_reference"
    print(f"[run] {metrics['name']}: accuracy={metrics['eval']['accuracy']}", flush=True)
    log.append(metrics)
    return metrics


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
    ]
    order = ["pseudo_labels", "events_aps_kd", "PI", "PI+AG", "PI+AG+DA", FULL, "w/o BMR"]
    if any(by_variant.get(v) for v in order):
        lines += ["", "| S_ev trained with | mIoU (%) | pixel acc. (%) | s / run |", "|---|---|---|---|"]
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
        ]
        for variant, (_, _, label) in RECOGNITION_VARIANTS.items():
            runs = by_variant.get(variant, [])
            if runs:
                lines.append(f"| {label} | {_mean_std([r['eval']['accuracy'] for r in runs])} |")
        ref = by_variant.get("recognition_supervised_reference", [])
        if ref:
            lines.append(
                "| reference, not a method: S_ev supervised WITH the event labels, same network and budget | "
                f"{_mean_std([r['eval']['accuracy'] for r in ref])} |"
            )
        if tr is not None and "eval_source" in tr:
            lines.append(f"| teacher T on held-out source images | {_mean_std([tr['eval_source']['accuracy']])} |")
        num_classes = len(rec[0]["eval"]["per_class_accuracy"])
        lines.append(f"| chance | {100.0 / num_classes:.2f} |")
    mvsec = {v: by_variant.get(v, []) for v in MVSEC_VARIANTS}
    if any(mvsec.values()):
        lines += [
            "",
            "| MVSEC-like segmentation, S_ev on events (sidecar labels) | mIoU (%) | pixel acc. (%) | s / run |",
            "|---|---|---|---|",
        ]
        names = {
            "mvsec_pseudo_labels": "pseudo labels argmax T(x_aps) (baseline)",
            "mvsec_evdistill": "full EvDistill",
        }
        t_mvsec = next((e for e in log if "eval_aps_mvsec" in e), None)
        if t_mvsec is not None:
            score = t_mvsec["eval_aps_mvsec"]
            lines.append(
                f"| teacher T on the APS frames (pseudo-label quality) | {_mean_std([score['mean_iou']])} | "
                f"{_mean_std([score['pixel_accuracy']])} | |"
            )
        for variant, runs in mvsec.items():
            if runs:
                miou = _mean_std([r["eval"]["mean_iou"] for r in runs])
                acc = _mean_std([r["eval"]["pixel_accuracy"] for r in runs])
                wall = statistics.mean(r["wall_s"] for r in runs)
                lines.append(f"| {names[variant]} | {miou} | {acc} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/evdistill_experiments", help="output folder (data, runs, tables)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=120, help="training steps per student run")
    parser.add_argument("--teacher-steps", type=int, default=600, help="training steps per teacher")
    parser.add_argument("--recognition-steps", type=int, default=450, help="steps per recognition student")
    parser.add_argument("--recognition-teacher-steps", type=int, default=1000, help="steps of T_rec")
    parser.add_argument("--size", default="48x96", help="HxW network input size for segmentation")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--only", nargs="*", help=f"groups {list(GROUPS)} or segmentation variants to run (default: everything)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny data and 3 steps: a smoke run of the pipeline")
    parser.add_argument("--rerun", action="store_true", help="retrain finished runs (same recipe and overrides) too")
    args = parser.parse_args(argv)
    global REUSE_FINISHED_RUNS
    REUSE_FINISHED_RUNS = not args.rerun
    if args.quick:
        args.steps, args.teacher_steps, args.seeds = 3, 3, args.seeds[:1]
        args.recognition_steps = args.recognition_teacher_steps = 3
    if args.only:
        unknown = set(args.only) - set(SEGMENTATION_VARIANTS) - set(GROUPS)
        if unknown:
            parser.error(
                f"--only: unknown {sorted(unknown)}; choose from {list(GROUPS)} or {list(SEGMENTATION_VARIANTS)}"
            )
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

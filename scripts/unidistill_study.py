#!/usr/bin/env python
"""The UniDistill four-path study: teachers, students alone and distilled, seeds; resumable.

    python scripts/unidistill_study.py --train-teachers                       # committed teachers, if missing
    python scripts/unidistill_study.py --split dev --arms lidar_to_camera_paper lidar_to_camera_balanced
    python scripts/unidistill_study.py                                        # every arm on val, 2 at a time
    python scripts/unidistill_study.py --aggregate                            # docs/results/unidistill_paths.json

The plan (`--plan`, default `hub_configs/recipes/study/unidistill_paths.yaml`) lists the arms as recipe files;
each finished (arm, seed) leaves `<results>/<split>/<arm>/seed<s>.json` and is reused while its recipe is
unchanged; a killed run resumes from its newest complete checkpoint. Runs use one compute thread each and `nice`
(`--jobs 2` runs two side by side, which uses 2 cores best). The data must exist (the plan's `data.command`).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

from hf_crossdistill.experiments import (
    aggregate_unidistill_paths,
    dataroot_fingerprint,
    load_study_plan,
    run_study,
    train_teachers,
)


def write_plots(plan, table: dict, results: Path, folder: Path) -> None:
    """Per-path bars (NDS and mAP, mean ± std) and, per path, each term's curve for seed 0 of every arm."""
    from hf_crossdistill.visualization import plot_study_paths, plot_term_curves

    if table["paths"]:
        for metric in ("NDS", "mAP"):
            plot_study_paths(table, metric=metric, save_path=folder / f"unidistill_paths_{metric}.png")
    for path in sorted({arm.path for arm in plan.arms.values() if arm.path is not None}):
        arms = [a for a in plan.arms.values() if a.path == path]
        arms += [plan.arms[a.alone] for a in arms if a.alone is not None][:1]
        curves = {}
        for arm in arms:
            file = results / "val" / arm.name / "seed0.json"
            if file.is_file():
                curves[arm.name] = json.loads(file.read_text())["curve"]
        if curves:
            name = path.replace("+", "").replace("->", "_to_")
            plot_term_curves(curves, save_path=folder / f"unidistill_terms_{name}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, default=Path("hub_configs/recipes/study/unidistill_paths.yaml"))
    parser.add_argument("--arms", nargs="*", help="arms to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, help="only these seeds of each arm")
    parser.add_argument("--split", choices=["val", "dev"], default="val")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--out", type=Path, default=Path("outputs/study"), help="training output folders")
    parser.add_argument("--results", type=Path, default=Path("docs/results/unidistill_study"))
    parser.add_argument("--train-teachers", action="store_true", help="train teachers whose folder is missing")
    parser.add_argument("--aggregate", action="store_true", help="write docs/results/unidistill_paths.json")
    parser.add_argument("--table", type=Path, default=Path("docs/results/unidistill_paths.json"))
    parser.add_argument("--machine", default=f"{platform.machine()} CPU, 2 cores, torch (one thread per run)")
    args = parser.parse_args(argv)

    root = Path.cwd()
    plan = load_study_plan(args.plan, root)
    if args.train_teachers:
        train_teachers(plan, root=root, out_root=args.out, results_root=args.results, install=True)
    if args.aggregate:
        data_hash = dataroot_fingerprint(plan.data["dataroot"], plan.data["version"])
        table = aggregate_unidistill_paths(plan, args.results, machine=args.machine, data_hash=data_hash, root=root)
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(json.dumps(table, indent=1) + "\n")
        print(f"[study] wrote {args.table} ({sorted(table['paths'])})")
        write_plots(plan, table, args.results, args.table.parent)
        return 0
    if args.arms is not None or not args.train_teachers:
        try:
            run_study(
                plan,
                args.arms or None,
                split=args.split,
                seeds=args.seeds,
                jobs=args.jobs,
                out_root=args.out,
                results_root=args.results,
                root=root,
            )
        except (RuntimeError, subprocess.SubprocessError) as err:
            print(err, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

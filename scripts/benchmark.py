#!/usr/bin/env python
"""Benchmarks, reported as ratios against a baseline run in the same process.

    python scripts/benchmark.py --list
    python scripts/benchmark.py voxel_grid distill_step --json results.json

Each area keeps its entries in `scripts/benchmarks/<area>.py` as `ENTRIES = {name: function}`; a function
takes the parsed arguments and returns a dict of figures (it prints its own table too). The modules are
listed here explicitly, so nothing registers itself by import side effect.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

AREAS = ("events", "event_sim", "nuscenes_generator", "nuscenes_data", "bev_detector", "distill", "evdistill")


def collect_entries() -> dict:
    entries = {}
    for area in AREAS:
        try:
            module = importlib.import_module(f"benchmarks.{area}")
        except ModuleNotFoundError as err:
            if err.name == f"benchmarks.{area}":
                continue  # that area has no benchmarks yet
            raise
        for name, fn in module.ENTRIES.items():
            if name in entries:
                raise RuntimeError(f"benchmark {name!r} is defined twice (benchmarks.{area})")
            entries[name] = fn
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, default=None, help="write all figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument("--device", default="cpu", help="torch device for the benchmarks that use one")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (the median is reported)")
    args = parser.parse_args(argv)

    entries = collect_entries()
    if args.list:
        for name, fn in sorted(entries.items()):
            doc = (fn.__doc__ or "").strip().splitlines()
            print(f"{name:28s} {doc[0] if doc else ''}")
        return 0
    unknown = [n for n in args.names if n not in entries]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(entries)}")

    import torch

    results = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
        }
    }
    for name in args.names or sorted(entries):
        print(f"\n== {name}")
        results[name] = entries[name](args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Score LIDAR_TOP-frame detections, or a trained detector, with the official nuScenes detection evaluation.

    python scripts/evaluate.py predictions.json --dataroot data/nuscenes --version v1.0-mini --eval-set mini_val \
        --output-dir outputs/eval
    python scripts/evaluate.py --model outputs/bev_lidar_supervised_small --dataroot data/nuscenes --eval-set val

With `--model` (a `save_pretrained` folder of a BEV detector) the detector runs on the split first, through the
same evaluation as the end of training (`hf_crossdistill.evaluation.evaluate_detector`).

`predictions.json` maps each sample token to {"boxes": [[x, y, z, l, w, h, yaw, vx, vy], ...], "scores": [...],
"labels": [...]} (labels index hf_crossdistill.data.nuscenes.NUSCENES_CLASSES), boxes in the key frame's
LIDAR_TOP frame. Samples of the split that are missing count as having no detections.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="?", help="JSON file: sample_token → {boxes, scores, labels}")
    parser.add_argument("--model", type=Path, default=None, help="a BEV detector's save_pretrained folder instead")
    parser.add_argument("--num-sweeps", type=int, default=None, help="with --model: LiDAR sweeps (default: config)")
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes dataroot")
    parser.add_argument("--version", default="v1.0-trainval", help="nuScenes version (default: v1.0-trainval)")
    parser.add_argument("--eval-set", default="val", help="devkit split to evaluate (default: val)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where submission + metrics JSON go")
    args = parser.parse_args(argv)

    if (args.predictions is None) == (args.model is None):
        parser.error("give either a predictions file or --model")
    if args.model is not None:
        if not (args.model / "config.json").is_file():
            parser.error(f"--model {args.model} is not a save_pretrained folder (no config.json)")
        from hf_crossdistill.evaluation import evaluate_detector

        metrics = evaluate_detector(
            args.model,
            args.dataroot,
            args.version,
            args.eval_set,
            num_sweeps=args.num_sweeps,
            output_dir=args.output_dir,
        )
        _print_metrics(metrics, args.output_dir)
        return 0
    if not args.predictions.is_file():
        parser.error(f"predictions file {args.predictions} does not exist")
    try:
        predictions = json.loads(args.predictions.read_text())
    except json.JSONDecodeError as err:
        parser.error(f"predictions file {args.predictions} is not valid JSON: {err}")
    if not isinstance(predictions, dict):
        parser.error(f"predictions file {args.predictions} must hold a JSON object sample_token → prediction")

    from hf_crossdistill.evaluation import evaluate_nuscenes

    metrics = evaluate_nuscenes(predictions, args.dataroot, args.version, args.eval_set, output_dir=args.output_dir)
    _print_metrics(metrics, args.output_dir)
    return 0


def _print_metrics(metrics: dict[str, float], output_dir: Path | None) -> None:
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:{width}s} {value:.4f}")
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())

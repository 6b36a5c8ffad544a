#!/usr/bin/env python
"""Generate a synthetic nuScenes dataroot (v1.0-mini or v1.0-trainval layout) from a simulated world.

    python scripts/make_synthetic_nuscenes.py data/nuscenes-synthetic
    python scripts/make_synthetic_nuscenes.py data/nus-tv --version v1.0-trainval --num-scenes 100 --num-workers 4

The result loads with `nuscenes.nuscenes.NuScenes(version, dataroot)` and is scored by the devkit's
`DetectionEval` with the standard split names (mini_train / mini_val, train / val).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes  # noqa: E402


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--image-size must look like 320x180 (W x H), got {text!r}") from err
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="dataroot to create")
    parser.add_argument("--version", default="v1.0-mini", choices=["v1.0-mini", "v1.0-trainval"])
    parser.add_argument("--num-scenes", type=int, default=10, help="at most 10 for v1.0-mini (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=_image_size, default=(320, 180), help="camera images W x H")
    parser.add_argument("--scene-duration", type=float, default=8.0, help="seconds per scene (2 key frames/s)")
    parser.add_argument("--sweeps-per-keyframe", type=int, default=9, help="LiDAR sweeps between key frames")
    parser.add_argument("--lidar-azimuth-resolution", type=float, default=0.4, help="degrees")
    parser.add_argument("--lidar-range-noise", type=float, default=0.015, help="metres (std)")
    parser.add_argument("--lidar-dropout", type=float, default=0.05, help="probability a return is lost")
    parser.add_argument("--object-density", type=float, default=1.0)
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel scene processes (default: one per CPU core; the output is identical for any value)",
    )
    parser.add_argument(
        "--num-val-scenes", type=int, default=None, help="v1.0-trainval: scenes of split val (default: one in five)"
    )
    parser.add_argument(
        "--num-dev-scenes",
        type=int,
        default=0,
        help="v1.0-trainval: scenes of split train_track, a dev split held out of training (train_detect)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing out_dir")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        root = make_synthetic_nuscenes(
            args.out_dir,
            version=args.version,
            num_scenes=args.num_scenes,
            seed=args.seed,
            image_size=args.image_size,
            scene_duration_s=args.scene_duration,
            sweeps_per_keyframe=args.sweeps_per_keyframe,
            lidar_azimuth_resolution_deg=args.lidar_azimuth_resolution,
            lidar_range_noise_m=args.lidar_range_noise,
            lidar_dropout=args.lidar_dropout,
            object_density=args.object_density,
            jpeg_quality=args.jpeg_quality,
            overwrite=args.overwrite,
            num_workers=args.num_workers,
            num_val_scenes=args.num_val_scenes,
            num_dev_scenes=args.num_dev_scenes,
            progress=print,
        )
    except (ValueError, FileExistsError) as err:
        parser.error(str(err))
    print(f"wrote {root} ({args.version}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

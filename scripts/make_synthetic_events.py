#!/usr/bin/env python
"""Generate the synthetic event-camera datasets in the real on-disk layouts.

    python scripts/make_synthetic_events.py ddd17 data/synthetic_ddd17 --num-recordings 4 --duration-s 4
    python scripts/make_synthetic_events.py dsec data/synthetic_dsec
    python scripts/make_synthetic_events.py mvsec data/synthetic_mvsec   # + synthetic_labels/ (not in MVSEC)
    python scripts/make_synthetic_events.py source-images data/synthetic_source --num-images 200
    python scripts/make_synthetic_events.py ncaltech data/synthetic_ncaltech --num-classes 10
    python scripts/make_synthetic_events.py recognition-source data/synthetic_ncaltech_source
    python scripts/make_synthetic_events.py all data/synthetic_events --tiny   # every kind, seconds

Every kind is deterministic by --seed and written atomically (nothing appears at OUT_DIR unless it completes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hf_crossdistill.data.synthetic.event_worlds import (
    make_recognition_source_images,
    make_source_images,
    make_synthetic_ddd17,
    make_synthetic_dsec,
    make_synthetic_mvsec,
    make_synthetic_ncaltech,
)

# Sizes for smoke runs: each kind builds in about a second.
TINY = {
    "ddd17": {"num_recordings": 2, "duration_s": 0.4, "sensor_size": (104, 138), "render_fps": 100.0},
    "dsec": {"num_recordings": 2, "duration_s": 0.3, "sensor_size": (96, 128), "render_fps": 100.0},
    "mvsec": {"num_recordings": 2, "duration_s": 0.24, "sensor_size": (260, 346), "render_fps": 100.0},
    "source-images": {"num_images": 8, "image_size": (64, 128)},
    "ncaltech": {"num_classes": 3, "samples_per_class": 4, "sensor_size": (60, 80), "saccade_ms": 30.0,
                 "render_fps": 500.0, "amplitude_px": 3.0},
    "recognition-source": {"num_classes": 3, "samples_per_class": 4, "image_size": (60, 80)},
}  # fmt: skip
MAKERS = {
    "ddd17": make_synthetic_ddd17,
    "dsec": make_synthetic_dsec,
    "mvsec": make_synthetic_mvsec,
    "source-images": make_source_images,
    "ncaltech": make_synthetic_ncaltech,
    "recognition-source": make_recognition_source_images,
}


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 260x346, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=[*MAKERS, "all"], help="which dataset to generate")
    parser.add_argument("out_dir", type=Path, help="dataset root to create (for 'all': a parent folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    g = parser.add_argument_group("driving (ddd17, dsec, mvsec)")
    g.add_argument("--num-recordings", type=int)
    g.add_argument("--duration-s", type=float)
    g.add_argument(
        "--sensor-size", type=_size, help="HxW (ddd17/mvsec default 260x346, dsec 480x640, ncaltech 180x240)"
    )
    g.add_argument("--render-fps", type=float, help="rate of the frames the simulator interpolates between")
    g.add_argument("--contrast-threshold", type=float)
    g.add_argument("--noise-rate-hz", type=float, help="background activity per pixel")
    g = parser.add_argument_group("images (source-images, recognition-source)")
    g.add_argument("--num-images", type=int)
    g.add_argument("--image-size", type=_size, help="HxW")
    g = parser.add_argument_group("recognition (ncaltech, recognition-source)")
    g.add_argument("--num-classes", type=int)
    g.add_argument("--samples-per-class", type=int)
    return parser


_OPTIONS = {
    "ddd17": ("num_recordings", "duration_s", "sensor_size", "render_fps", "contrast_threshold", "noise_rate_hz"),
    "dsec": ("num_recordings", "duration_s", "sensor_size", "render_fps", "contrast_threshold", "noise_rate_hz"),
    "mvsec": ("num_recordings", "duration_s", "sensor_size", "render_fps", "contrast_threshold", "noise_rate_hz"),
    "source-images": ("num_images", "image_size"),
    "ncaltech": ("num_classes", "samples_per_class", "sensor_size", "render_fps", "contrast_threshold",
                 "noise_rate_hz"),
    "recognition-source": ("num_classes", "samples_per_class", "image_size"),
}  # fmt: skip


def kwargs_for(kind: str, args: argparse.Namespace) -> dict:
    kwargs = dict(TINY[kind]) if args.tiny else {}
    for name in _OPTIONS[kind]:
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    return {**kwargs, "seed": args.seed, "overwrite": args.overwrite}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kinds = list(MAKERS) if args.kind == "all" else [args.kind]
    for kind in kinds:
        out = args.out_dir / kind.replace("-", "_") if args.kind == "all" else args.out_dir
        start = time.perf_counter()
        try:
            MAKERS[kind](out, **kwargs_for(kind, args))
        except (FileExistsError, ValueError) as err:
            parser.error(f"{kind}: {err}")
        print(f"{kind}: wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

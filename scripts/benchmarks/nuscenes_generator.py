"""Synthetic nuScenes generator throughput: key-frame samples/s of whole datasets and LiDAR rays/s."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._timing import median_seconds
from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes
from hf_crossdistill.data.synthetic.nuscenes_sensors import LidarSpec, cast_lidar, to_frame
from hf_crossdistill.data.synthetic.nuscenes_tables import LIDAR_TRANSLATION, LIDAR_YAW
from hf_crossdistill.data.synthetic.nuscenes_world import build_scene_world

# The fixture-sized dataset (tests/fixtures_nuscenes.py) and the library defaults (2 of the 10 mini scenes).
TINY = {"num_scenes": 2, "image_size": (176, 64), "scene_duration_s": 2.0, "lidar_azimuth_resolution_deg": 0.8}
DEFAULT = {"num_scenes": 2}


def _dataset_rate(settings: dict, repeats: int) -> tuple[float, int]:
    """(seconds per dataset, key-frame samples per dataset)."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-nuscenes-"))
    try:
        counter = iter(range(10**6))
        seconds = median_seconds(
            lambda: make_synthetic_nuscenes(scratch / f"root{next(counter)}", **settings), repeats=repeats, warmup=0
        )
        samples = settings["num_scenes"] * int(round(settings.get("scene_duration_s", 8.0) * 2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return seconds, samples


def _lidar_rays_per_second(resolution_deg: float, repeats: int) -> float:
    world = build_scene_world(np.random.default_rng(0), 8.0)
    ego_t, ego_yaw = world.ego_pose(1.0)
    prims = to_frame(to_frame(world.primitives(1.0), ego_t, ego_yaw), LIDAR_TRANSLATION, LIDAR_YAW)
    spec = LidarSpec(height=float(LIDAR_TRANSLATION[2]), azimuth_resolution_deg=resolution_deg)
    dirs = spec.ray_directions()
    rng = np.random.default_rng(0)
    seconds = median_seconds(
        lambda: cast_lidar(prims, spec, lambda p: np.full(len(p), 10.0), rng, dirs), repeats=repeats
    )
    return len(dirs) / seconds


def bench_nuscenes_generator(args) -> dict:
    """Generated key-frame samples/s (tiny fixture settings vs defaults) and LiDAR rays/s."""
    repeats = 1 if args.quick else max(1, min(args.repeats, 3))
    tiny_s, tiny_n = _dataset_rate(TINY, repeats)
    figures = {"tiny_samples_per_s": tiny_n / tiny_s, "tiny_dataset_s": tiny_s}
    if not args.quick:
        default_s, default_n = _dataset_rate(DEFAULT, 1)
        figures.update(
            default_samples_per_s=default_n / default_s,
            default_mini_10_scenes_estimate_s=default_s * 5,
            default_vs_tiny_cost_per_sample=(default_s / default_n) / (tiny_s / tiny_n),
        )
    coarse = _lidar_rays_per_second(0.8, repeats * 3)
    fine = _lidar_rays_per_second(0.4, repeats * 3)
    figures.update(lidar_rays_per_s_0p8deg=coarse, lidar_rays_per_s_0p4deg=fine, lidar_fine_vs_coarse=fine / coarse)
    for name, value in figures.items():
        print(f"  {name:40s} {value:12.2f}")
    return figures


ENTRIES = {"nuscenes_generator": bench_nuscenes_generator}

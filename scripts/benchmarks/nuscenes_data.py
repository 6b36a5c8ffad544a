"""nuScenes loader throughput (samples/s) on a synthetic dataroot, against the devkit's own per-sample path."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks._timing import median_seconds


def _devkit_lidar_sample(nusc, token: str, num_sweeps: int):
    """The plain devkit route to the same LiDAR data: from_file_multisweep + get_sample_data boxes + velocities."""
    from nuscenes.utils.data_classes import LidarPointCloud

    sample = nusc.get("sample", token)
    cloud, times = LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP", num_sweeps + 1)
    _, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
    velocities = [nusc.box_velocity(box.token) for box in boxes]
    return cloud, times, boxes, velocities


def nuscenes_loader(args) -> dict:
    """Loader samples/s: LiDAR only and LiDAR + 6 cameras, 0 / 10 sweeps, with / without augmentation."""
    import numpy as np

    from hf_crossdistill.data.nuscenes import (
        NuScenesLoaderOptions,
        load_detection_sample,
        load_nuscenes,
        split_sample_tokens,
    )
    from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes

    image_size = (176, 64) if args.quick else (704, 256)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_nuscenes(
            Path(tmp) / "nuscenes",
            num_scenes=2,
            image_size=(352, 128) if args.quick else (1600, 900),
            scene_duration_s=1.0 if args.quick else 2.0,
            lidar_azimuth_resolution_deg=0.8 if args.quick else 0.2,
        )
        nusc = load_nuscenes(root, "v1.0-mini")
        tokens = split_sample_tokens(nusc, "mini_train")

        def run(fn):
            seconds = median_seconds(lambda: [fn(t) for t in tokens], repeats=args.repeats, warmup=1)
            return len(tokens) / seconds

        results = {"samples": len(tokens), "network_image_size": list(image_size)}
        for sweeps in (0, 10):
            results[f"devkit_lidar_{sweeps}sweeps"] = run(lambda t, s=sweeps: _devkit_lidar_sample(nusc, t, s))
            for cameras in ((), None):
                for augment in (False, True):
                    options = NuScenesLoaderOptions(
                        num_sweeps=sweeps,
                        cameras=() if cameras == () else NuScenesLoaderOptions().cameras,
                        image_size=image_size,
                        augment=augment,
                    )
                    modality = "lidar" if cameras == () else "lidar_cams"
                    name = f"ours_{modality}_{sweeps}sweeps_{'aug' if augment else 'noaug'}"
                    rng = np.random.default_rng(0)
                    results[name] = run(lambda t, o=options, r=rng: load_detection_sample(nusc, t, o, r))
            results[f"speedup_lidar_{sweeps}sweeps_vs_devkit"] = (
                results[f"ours_lidar_{sweeps}sweeps_noaug"] / results[f"devkit_lidar_{sweeps}sweeps"]
            )
    print(f"{'configuration':40s} samples/s")
    for key, value in results.items():
        if key.startswith(("ours", "devkit")):
            print(f"{key:40s} {value:8.1f}")
    for key, value in results.items():
        if key.startswith("speedup"):
            print(f"{key:40s} {value:8.2f}x")
    return results


ENTRIES = {"nuscenes_loader": nuscenes_loader}

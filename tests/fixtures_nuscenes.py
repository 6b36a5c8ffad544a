"""Session fixtures: tiny synthetic nuScenes dataroots (owned by the nuScenes generator).

`tiny_nuscenes_root` is a `v1.0-mini` dataroot with two scenes (one of the devkit's mini_train scenes, one
of its mini_val scenes), 4 key frames each with 9 LiDAR sweeps between key frames, 6 cameras at
TINY_NUSCENES_IMAGE_SIZE, every detection class annotated with LiDAR points in both splits. Built once per
test session in a few seconds; treat it as read-only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_NUSCENES_VERSION = "v1.0-mini"
TINY_NUSCENES_SPLITS = ("mini_train", "mini_val")
TINY_NUSCENES_IMAGE_SIZE = (176, 64)  # (W, H)
TINY_NUSCENES_KEYFRAMES_PER_SCENE = 4
TINY_NUSCENES_SWEEPS_PER_KEYFRAME = 9
TINY_NUSCENES_KWARGS = {
    "version": TINY_NUSCENES_VERSION,
    "num_scenes": 2,
    "seed": 0,
    "image_size": TINY_NUSCENES_IMAGE_SIZE,
    "scene_duration_s": TINY_NUSCENES_KEYFRAMES_PER_SCENE / 2,
    "sweeps_per_keyframe": TINY_NUSCENES_SWEEPS_PER_KEYFRAME,
    "lidar_azimuth_resolution_deg": 0.8,
}


@pytest.fixture(scope="session")
def tiny_nuscenes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny synthetic nuScenes dataroot (load it with `NuScenes(TINY_NUSCENES_VERSION, root)`)."""
    from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes

    return make_synthetic_nuscenes(tmp_path_factory.mktemp("nuscenes") / "tiny", **TINY_NUSCENES_KWARGS)


@pytest.fixture(scope="session")
def tiny_nuscenes_version() -> str:
    return TINY_NUSCENES_VERSION

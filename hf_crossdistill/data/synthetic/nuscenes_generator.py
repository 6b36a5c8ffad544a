"""Synthetic nuScenes datasets in the exact v1.0 on-disk format, generated from a simulated driving world.

`make_synthetic_nuscenes` writes a dataroot with `v1.0-mini/` (or `v1.0-trainval/`) tables, `samples/`,
`sweeps/` and `maps/` that `nuscenes.nuscenes.NuScenes` loads and `DetectionEval` scores, with the scene
names of the devkit's splits so the standard split logic applies unchanged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from .nuscenes_sensors import (
    LidarSpec,
    cast_lidar,
    render_camera,
    to_frame,
    visible_fraction,
)
from .nuscenes_tables import (
    CAMERA_CHANNELS,
    LIDAR_TRANSLATION,
    LIDAR_YAW,
    calibrated_sensor_records,
    camera_specs,
    make_token,
    static_tables,
    write_map_mask,
    write_table,
    yaw_quaternion,
)
from .nuscenes_world import GROUND_MATERIAL_ARRAYS, SceneWorld, build_scene_world

SUPPORTED_VERSIONS = ("v1.0-mini", "v1.0-trainval")
KEYFRAME_INTERVAL_US = 500_000  # key frames at 2 Hz
ANNOTATION_RANGE_M = 60.0  # objects within this xy distance of the ego are annotated
VISIBILITY_BINS = (0.4, 0.6, 0.8)  # upper edges of visibility tokens "1", "2", "3"
MAP_RESOLUTION = 0.1  # metres per pixel of the map masks (the devkit's default)


def split_scene_names(
    version: str, num_scenes: int, *, num_val_scenes: int | None = None, num_dev_scenes: int = 0
) -> list[tuple[str, str]]:
    """(scene name, split) for `num_scenes` scenes, interleaving the splits so that each is non-empty.

    `v1.0-mini` draws from the devkit's `mini_train` / `mini_val` lists (10 scenes at most); `v1.0-trainval`
    from `train` / `val`, taking one val scene for every four train scenes.

    With `num_val_scenes` and / or `num_dev_scenes` (v1.0-trainval only) the split sizes are set instead:
    `num_val_scenes` scenes from `val`, `num_dev_scenes` from the devkit's `train_track` and the rest from
    `train_detect`. `train_detect` and `train_track` partition `train`, so a model trained on `train_detect`
    can be tuned on `train_track` (a dev split held out of training) and scored once on `val`, all with the
    devkit's own split names. The default (both unset) keeps the original selection, scene for scene.
    """
    from nuscenes.utils import splits

    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if num_val_scenes is not None or num_dev_scenes:
        return _sized_split_scene_names(version, num_scenes, num_val_scenes, num_dev_scenes)
    if version == "v1.0-mini":
        train, val, pattern = list(splits.mini_train), list(splits.mini_val), "tvtttttttv"
    else:
        train, val, pattern = list(splits.train), list(splits.val), "tvttt"
    if num_scenes > len(train) + len(val):
        raise ValueError(
            f"num_scenes={num_scenes} exceeds the {len(train) + len(val)} scenes of the devkit's {version} splits"
        )
    out, it_train, it_val = [], iter(train), iter(val)
    i = 0
    while len(out) < num_scenes:
        want_val = pattern[i % len(pattern)] == "v"
        name = next(it_val, None) if want_val else next(it_train, None)
        if name is None:  # one list ran out: take the other
            name = next(it_train, None) if want_val else next(it_val, None)
            want_val = not want_val
        out.append(
            (
                name,
                ("mini_val" if want_val else "mini_train")
                if version == "v1.0-mini"
                else ("val" if want_val else "train"),
            )
        )
        i += 1
    return out


def _sized_split_scene_names(
    version: str, num_scenes: int, num_val: int | None, num_dev: int
) -> list[tuple[str, str]]:
    """Scenes with set split sizes: `num_val` from val, `num_dev` from train_track, the rest from train_detect."""
    from nuscenes.utils import splits

    if version != "v1.0-trainval":
        raise ValueError(f"num_val_scenes / num_dev_scenes need version 'v1.0-trainval', got {version!r}")
    if num_val is None:
        num_val = max(1, num_scenes // 5)
    for name, value in (("num_val_scenes", num_val), ("num_dev_scenes", num_dev)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    num_train = num_scenes - num_val - num_dev
    if num_val < 1 or num_train < 1:
        raise ValueError(
            f"num_scenes={num_scenes} leaves {num_train} training scene(s) after {num_val} val and {num_dev} dev "
            "scene(s); training and val need at least one each"
        )
    pools = {
        "train_detect": list(splits.train_detect),
        "train_track": list(splits.train_track),
        "val": list(splits.val),
    }
    want = {"train_detect": num_train, "train_track": num_dev, "val": num_val}
    for split, n in want.items():
        if n > len(pools[split]):
            raise ValueError(f"{n} scene(s) asked of split {split!r}, which has {len(pools[split])}")
    # Interleave so every split spreads over the scene indices (and so over the generator's worlds): at each
    # position take the split that is furthest behind its share.
    taken = dict.fromkeys(want, 0)
    out = []
    for i in range(num_scenes):
        split = max(want, key=lambda k: (want[k] * (i + 1) / num_scenes - taken[k], want[k]))
        out.append((pools[split][taken[split]], split))
        taken[split] += 1
    return out


def _validate(version, num_scenes, image_size, scene_duration_s, sweeps_per_keyframe, az_res, noise, dropout) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if not isinstance(num_scenes, int) or num_scenes < 2:
        raise ValueError(f"num_scenes must be an int >= 2 (so that both splits are non-empty), got {num_scenes!r}")
    if (
        not isinstance(image_size, tuple | list)
        or len(image_size) != 2
        or not all(isinstance(v, int) and v >= 16 for v in image_size)
    ):
        raise ValueError(f"image_size must be (W, H) with two ints >= 16, got {image_size!r}")
    if not scene_duration_s >= 1.0:
        raise ValueError(f"scene_duration_s must be >= 1.0 (two key frames), got {scene_duration_s!r}")
    if not isinstance(sweeps_per_keyframe, int) or not 0 <= sweeps_per_keyframe <= 49:
        raise ValueError(f"sweeps_per_keyframe must be an int in [0, 49], got {sweeps_per_keyframe!r}")
    if not 0.05 <= az_res <= 5.0:
        raise ValueError(f"lidar_azimuth_resolution_deg must be in [0.05, 5], got {az_res!r}")
    if not noise >= 0.0:
        raise ValueError(f"lidar_range_noise_m must be >= 0, got {noise!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lidar_dropout must be in [0, 1), got {dropout!r}")


def make_synthetic_nuscenes(
    out_dir: str | os.PathLike,
    *,
    version: str = "v1.0-mini",
    num_scenes: int = 10,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 180),
    scene_duration_s: float = 8.0,
    sweeps_per_keyframe: int = 9,
    lidar_azimuth_resolution_deg: float = 0.4,
    lidar_range_noise_m: float = 0.015,
    lidar_dropout: float = 0.05,
    object_density: float = 1.0,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    num_workers: int = 1,
    num_val_scenes: int | None = None,
    num_dev_scenes: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Generate a synthetic nuScenes dataroot that the real nuscenes-devkit loads.

    Args:
        out_dir: the dataroot to create. Written into a temporary sibling folder and renamed into place at
            the end, so an interrupted run never leaves a dataroot that looks complete.
        version: `"v1.0-mini"` (scene names from the devkit's mini_train / mini_val) or `"v1.0-trainval"`
            (from train / val).
        num_scenes: number of scenes (>= 2; at most 10 for v1.0-mini, 850 for v1.0-trainval).
        seed: everything (world, noise, tokens) is a deterministic function of the seed and the options.
        image_size: rendered camera images (W, H); intrinsics are the nuScenes ones scaled to this size.
        scene_duration_s: length of each scene; key frames every 0.5 s.
        sweeps_per_keyframe: non-key LiDAR sweeps between consecutive key frames (9 gives nuScenes' 20 Hz).
        lidar_azimuth_resolution_deg: azimuth step of the 32-beam LIDAR_TOP.
        lidar_range_noise_m: standard deviation of the Gaussian range noise.
        lidar_dropout: probability that a return is lost.
        object_density: scales the number of objects beyond the guaranteed ones of every class.
        jpeg_quality: JPEG quality of the camera images.
        overwrite: replace an existing `out_dir` (otherwise an existing non-empty folder is an error).
        num_workers: processes generating scenes in parallel; the output is identical for any value.
        num_val_scenes: v1.0-trainval only: scenes of the devkit's `val` split (default: one in five).
        num_dev_scenes: v1.0-trainval only: scenes of `train_track`, a dev split held out of training; with
            either option the training scenes come from `train_detect` (see `split_scene_names`).
        progress: optional callback receiving one line per finished scene.

    Returns:
        The dataroot path.
    """
    _validate(
        version,
        num_scenes,
        tuple(image_size),
        scene_duration_s,
        sweeps_per_keyframe,
        lidar_azimuth_resolution_deg,
        lidar_range_noise_m,
        lidar_dropout,
    )
    if not object_density > 0:
        raise ValueError(f"object_density must be > 0, got {object_density!r}")
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality!r}")
    scenes = split_scene_names(version, num_scenes, num_val_scenes=num_val_scenes, num_dev_scenes=num_dev_scenes)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"out_dir {out_dir} exists and is not empty (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _generate(
            tmp,
            version=version,
            scenes=scenes,
            seed=seed,
            image_size=tuple(int(v) for v in image_size),
            duration_s=float(scene_duration_s),
            sweeps=sweeps_per_keyframe,
            lidar=LidarSpec(
                height=float(LIDAR_TRANSLATION[2]),
                azimuth_resolution_deg=float(lidar_azimuth_resolution_deg),
                range_noise_m=float(lidar_range_noise_m),
                dropout=float(lidar_dropout),
            ),
            density=float(object_density),
            jpeg_quality=int(jpeg_quality),
            num_workers=int(num_workers),
            progress=progress,
        )
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(trash / "old")
            tmp.rename(out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _ground_material(world: SceneWorld, ego_t: np.ndarray, ego_yaw: float, pts_ego: np.ndarray) -> np.ndarray:
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    gx = ego_t[0] + c * pts_ego[:, 0] - s * pts_ego[:, 1]
    gy = ego_t[1] + s * pts_ego[:, 0] + c * pts_ego[:, 1]
    return world.ground_material(np.stack([gx, gy], axis=1)), gx, gy


def _ground_reflectivity(world: SceneWorld, ego_t: np.ndarray, ego_yaw: float, pts_sensor: np.ndarray) -> np.ndarray:
    mat, _, _ = _ground_material(world, ego_t, ego_yaw, _lidar_to_ego(pts_sensor))
    return GROUND_MATERIAL_ARRAYS["reflectivity"][mat]


def _lidar_to_ego(pts: np.ndarray) -> np.ndarray:
    c, s = np.cos(LIDAR_YAW), np.sin(LIDAR_YAW)
    x = c * pts[:, 0] - s * pts[:, 1] + LIDAR_TRANSLATION[0]
    y = s * pts[:, 0] + c * pts[:, 1] + LIDAR_TRANSLATION[1]
    return np.stack([x, y, pts[:, 2] + LIDAR_TRANSLATION[2]], axis=1)


def count_points_in_boxes(
    points: np.ndarray, centres: np.ndarray, wlh: np.ndarray, yaw: np.ndarray, eps: float = 2e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Points inside each z-aligned box, and the points lying within `eps` of some box's surface.

    Args:
        points: (N, 3); centres: (M, 3); wlh: (M, 3) as nuScenes stores sizes; yaw: (M,). One frame for all.

    Returns:
        `counts` (M,) over the non-ambiguous points and `ambiguous` (N,) bool — points so close to a face that
        the devkit's floating-point test could decide either way (the generator drops them, which makes the
        counts exact).
    """
    counts = np.zeros(len(centres), dtype=np.int64)
    ambiguous = np.zeros(len(points), dtype=bool)
    half = np.stack([wlh[:, 1], wlh[:, 0], wlh[:, 2]], axis=1) / 2  # (M, 3) along heading, across, up
    c, s = np.cos(yaw)[None], np.sin(yaw)[None]
    for start in range(0, len(points), 16384):
        p = points[start : start + 16384]
        dx, dy = p[:, 0:1] - centres[None, :, 0], p[:, 1:2] - centres[None, :, 1]  # (n, M)
        margins = (
            half[None, :, 0] - np.abs(c * dx + s * dy),
            half[None, :, 1] - np.abs(-s * dx + c * dy),
            half[None, :, 2] - np.abs(p[:, 2:3] - centres[None, :, 2]),
        )
        inside = (margins[0] > eps) & (margins[1] > eps) & (margins[2] > eps)
        near = (margins[0] > -eps) & (margins[1] > -eps) & (margins[2] > -eps) & ~inside
        amb = near.any(axis=1)
        counts += (inside & ~amb[:, None]).sum(axis=0)
        ambiguous[start : start + 16384] = amb
    return counts, ambiguous


def _visibility_token(frac: np.ndarray) -> list[str]:
    return [str(int(v) + 1) for v in np.searchsorted(np.array(VISIBILITY_BINS), frac, side="right")]


def _generate(
    root: Path,
    *,
    version: str,
    scenes: list[tuple[str, str]],
    seed: int,
    num_workers: int,
    progress,
    **options,
) -> None:
    table_dir = root / version
    table_dir.mkdir()
    for sub in ["samples/LIDAR_TOP", "sweeps/LIDAR_TOP", "maps"] + [f"samples/{c}" for c in CAMERA_CHANNELS]:
        (root / sub).mkdir(parents=True)
    tables = static_tables(seed)
    jobs = [(root, seed, i, name, options) for i, (name, _) in enumerate(scenes)]
    if num_workers > 1:
        # Scenes are independent (own RNG streams, own files); results are merged in scene order, so the
        # output does not depend on the number of workers.
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=get_context("spawn")) as pool:
            results = pool.map(_generate_scene_job, jobs)
            scene_tables = []
            for result in results:
                scene_tables.append(result)
                if progress is not None:
                    progress(result.pop("_summary"))
    else:
        scene_tables = []
        for job in jobs:
            scene_tables.append(_generate_scene_job(job))
            if progress is not None:
                progress(scene_tables[-1].pop("_summary"))
    for part in scene_tables:
        part.pop("_summary", None)
        for name, records in part.items():
            tables.setdefault(name, []).extend(records)
    for name, records in tables.items():
        write_table(table_dir, name, records)


def _generate_scene_job(job) -> dict[str, list]:
    root, seed, scene_index, scene_name, options = job
    return _generate_scene(root, seed, scene_index, scene_name, **options)


def _generate_scene(
    root: Path,
    seed: int,
    scene_index: int,
    scene_name: str,
    *,
    image_size: tuple[int, int],
    duration_s: float,
    sweeps: int,
    lidar: LidarSpec,
    density: float,
    jpeg_quality: int,
) -> dict[str, list]:
    """Simulate one scene, write its files under `root` and return its table records."""
    cameras = camera_specs(image_size)
    cam_rays = [cam.pixel_rays() for cam in cameras]
    lidar_rays = lidar.ray_directions()
    fixed = static_tables(seed)
    category_token = {c["name"]: c["token"] for c in fixed["category"]}
    attribute_token = {a["name"]: a["token"] for a in fixed["attribute"]}
    names = ("calibrated_sensor", "ego_pose", "log", "map", "scene", "sample", "sample_data", "instance")
    tables: dict[str, list] = {name: [] for name in (*names, "sample_annotation")}
    n_keys = int(round(duration_s * 2))
    sweep_dt_us = KEYFRAME_INTERVAL_US // (sweeps + 1)
    rng = np.random.default_rng([seed, scene_index])
    world = build_scene_world(rng, duration_s, density=density)
    _place_on_map(world, rng)
    log_token = make_token(seed, "log", scene_index)
    date = f"2018-08-{1 + scene_index % 28:02d}-{10 + scene_index % 10:02d}-{scene_index % 60:02d}-00"
    logfile = f"n015-{date}+0800"
    tables["log"].append(
        {
            "token": log_token,
            "logfile": logfile,
            "vehicle": "n015",
            "date_captured": date[:10],
            "location": "synthetic-straight-road",
        }
    )
    map_token = make_token(seed, "map", scene_index)
    map_file = f"maps/{map_token}.png"
    corners = world.road_to_global(
        np.array(
            [[world.s_range[0], -7.0], [world.s_range[1], -7.0], [world.s_range[1], 7.0], [world.s_range[0], 7.0]]
        )
    )
    write_map_mask(root / map_file, corners, world.map_extent, MAP_RESOLUTION)
    tables["map"].append(
        {"token": map_token, "log_tokens": [log_token], "category": "semantic_prior", "filename": map_file}
    )
    calib = calibrated_sensor_records(seed, scene_index, cameras)
    tables["calibrated_sensor"].extend(calib.values())
    t0_us = 1_533_000_000_000_000 + scene_index * 3_600_000_000 + int(rng.integers(0, 1_000_000))

    sample_tokens = [make_token(seed, "sample", scene_index, k) for k in range(n_keys)]
    scene_token = make_token(seed, "scene", scene_index)
    n_obj = len(world.objects)
    # Annotations: per object, the key frames where it is within range (made contiguous).
    ann_boxes = {}  # (obj, key) -> (centre, yaw, num_lidar_pts, visibility)
    lidar_chain, cam_chains = [], {c: [] for c in CAMERA_CHANNELS}
    scene_sd_start = len(tables["sample_data"])

    for k in range(n_keys):
        for j in range(sweeps + 1 if k < n_keys - 1 else 1):
            ts = t0_us + k * KEYFRAME_INTERVAL_US + j * sweep_dt_us
            time_s = (ts - t0_us) * 1e-6
            is_key = j == 0
            ego_t, ego_yaw = world.ego_pose(time_s)
            prims_ego = to_frame(world.primitives(time_s), ego_t, ego_yaw)
            prims_lidar = to_frame(prims_ego, LIDAR_TRANSLATION, LIDAR_YAW)
            noise_rng = np.random.default_rng([seed, scene_index, k, j, 7])

            reflectivity = partial(_ground_reflectivity, world, ego_t, ego_yaw)
            points, _ = cast_lidar(prims_lidar, lidar, reflectivity, noise_rng, lidar_rays)
            token = make_token(seed, "sample_data", scene_index, "LIDAR_TOP", k, j)
            if is_key:
                centres, yaws = world.object_boxes(time_s)
                boxes_l = to_frame(
                    to_frame({"centre": centres, "yaw": yaws}, ego_t, ego_yaw), LIDAR_TRANSLATION, LIDAR_YAW
                )
                wlh = np.array([o.size_wlh for o in world.objects]).reshape(-1, 3)
                counts, ambiguous = count_points_in_boxes(
                    points[:, :3].astype(np.float64), boxes_l["centre"], wlh, boxes_l["yaw"]
                )
                points = points[~ambiguous]
                depths = []
                for ch, cam, rays in zip(CAMERA_CHANNELS, cameras, cam_rays):
                    result = render_camera(prims_ego, cam, partial(_ground_colour, world, ego_t, ego_yaw), rays)
                    depths.append(result.depth)
                    cam_token = make_token(seed, "sample_data", scene_index, ch, k, 0)
                    filename = f"samples/{ch}/{logfile}__{ch}__{ts}.jpg"
                    Image.fromarray(result.image).save(root / filename, quality=jpeg_quality)
                    cam_chains[ch].append(cam_token)
                    _add_sample_data(
                        tables, cam_token, sample_tokens[k], calib[ch]["token"], ts, "jpg", True,
                        image_size, filename, ego_t, ego_yaw,
                    )  # fmt: skip
                boxes_e = to_frame({"centre": centres, "yaw": yaws}, ego_t, ego_yaw)
                fraction = visible_fraction(boxes_e["centre"], wlh, boxes_e["yaw"], cameras, depths)
                vis_tokens = _visibility_token(fraction)
                dist = np.hypot(centres[:, 0] - ego_t[0], centres[:, 1] - ego_t[1])
                for i in range(n_obj):
                    ann_boxes[(i, k)] = (centres[i], yaws[i], int(counts[i]), vis_tokens[i], dist[i])
                folder = "samples"
            else:
                folder = "sweeps"
            filename = f"{folder}/LIDAR_TOP/{logfile}__LIDAR_TOP__{ts}.pcd.bin"
            points.astype(np.float32).tofile(root / filename)
            lidar_chain.append(token)
            _add_sample_data(
                tables, token, sample_tokens[k], calib["LIDAR_TOP"]["token"], ts, "pcd", is_key,
                (0, 0), filename, ego_t, ego_yaw,
            )  # fmt: skip

    scene_records = tables["sample_data"][scene_sd_start:]
    for chain in [lidar_chain, *cam_chains.values()]:
        _link(scene_records, chain)
    for k in range(n_keys):
        tables["sample"].append(
            {
                "token": sample_tokens[k],
                "timestamp": t0_us + k * KEYFRAME_INTERVAL_US,
                "prev": sample_tokens[k - 1] if k > 0 else "",
                "next": sample_tokens[k + 1] if k < n_keys - 1 else "",
                "scene_token": scene_token,
            }
        )
    n_ann = _add_annotations(
        tables, world, ann_boxes, n_keys, sample_tokens, seed, scene_index, category_token, attribute_token
    )
    tables["scene"].append(
        {
            "token": scene_token,
            "log_token": log_token,
            "nbr_samples": n_keys,
            "first_sample_token": sample_tokens[0],
            "last_sample_token": sample_tokens[-1],
            "name": scene_name,
            "description": f"synthetic straight road, ego at {world.ego_speed:.1f} m/s, {n_obj} objects",
        }
    )
    tables["_summary"] = f"{scene_name}: {n_keys} samples, {len(lidar_chain)} LiDAR sweeps, {n_ann} annotations"
    return tables


def _place_on_map(world: SceneWorld, rng: np.random.Generator) -> None:
    """Put the scene's corridor at positive global coordinates and record the map extent it needs."""
    s0, s1 = world.s_range
    corners = np.array([[s0, -40.0], [s1, -40.0], [s1, 40.0], [s0, 40.0]])
    xy = world.road_to_global(corners)
    offset = rng.uniform(20.0, 80.0, size=2)
    world.origin = world.origin - xy.min(axis=0) + offset
    xy = world.road_to_global(corners)
    world.map_extent = (float(xy[:, 0].max() + 20.0), float(xy[:, 1].max() + 20.0))


def _ground_colour(world: SceneWorld, ego_t: np.ndarray, ego_yaw: float, pts_ego: np.ndarray) -> np.ndarray:
    mat, gx, gy = _ground_material(world, ego_t, ego_yaw, pts_ego)
    colour = GROUND_MATERIAL_ARRAYS["colour"][mat]
    # Deterministic fine texture so the ground is not a flat colour.
    grain = np.mod(np.sin(np.floor(gx * 4) * 12.9898 + np.floor(gy * 4) * 78.233) * 43758.5453, 1.0)
    return colour * (0.92 + 0.16 * grain)[:, None]


def _add_sample_data(tables, token, sample_token, calib_token, ts, fileformat, is_key, size, filename, ego_t, ego_yaw):
    # One ego pose per sample_data, sharing its token as in nuScenes.
    tables["ego_pose"].append(
        {
            "token": token,
            "timestamp": ts,
            "rotation": yaw_quaternion(ego_yaw),
            "translation": [float(ego_t[0]), float(ego_t[1]), 0.0],
        }
    )
    tables["sample_data"].append(
        {
            "token": token,
            "sample_token": sample_token,
            "ego_pose_token": token,
            "calibrated_sensor_token": calib_token,
            "timestamp": ts,
            "fileformat": fileformat,
            "is_key_frame": bool(is_key),
            "height": int(size[1]),
            "width": int(size[0]),
            "filename": filename,
            "prev": "",
            "next": "",
        }
    )


def _link(sample_data: list[dict], chain: list[str]) -> None:
    wanted = set(chain)
    index = {rec["token"]: rec for rec in sample_data if rec["token"] in wanted}
    for a, b in zip(chain[:-1], chain[1:]):
        index[a]["next"] = b
        index[b]["prev"] = a


def _add_annotations(
    tables, world, ann_boxes, n_keys, sample_tokens, seed, scene_index, category_token, attribute_token
) -> int:
    n_ann = 0
    for i, obj in enumerate(world.objects):
        in_range = [k for k in range(n_keys) if ann_boxes[(i, k)][4] <= ANNOTATION_RANGE_M]
        if not in_range:
            continue
        keys = list(range(in_range[0], in_range[-1] + 1))
        inst_token = make_token(seed, "instance", scene_index, i)
        tokens = [make_token(seed, "sample_annotation", scene_index, i, k) for k in keys]
        for n, k in enumerate(keys):
            centre, yaw, count, vis, _ = ann_boxes[(i, k)]
            tables["sample_annotation"].append(
                {
                    "token": tokens[n],
                    "sample_token": sample_tokens[k],
                    "instance_token": inst_token,
                    "visibility_token": vis,
                    "attribute_tokens": [attribute_token[obj.attribute]] if obj.attribute else [],
                    "translation": [float(v) for v in centre],
                    "size": [float(v) for v in obj.size_wlh],
                    "rotation": yaw_quaternion(float(yaw)),
                    "prev": tokens[n - 1] if n > 0 else "",
                    "next": tokens[n + 1] if n < len(keys) - 1 else "",
                    "num_lidar_pts": count,
                    "num_radar_pts": 0,
                }
            )
        tables["instance"].append(
            {
                "token": inst_token,
                "category_token": category_token[obj.category],
                "nbr_annotations": len(keys),
                "first_annotation_token": tokens[0],
                "last_annotation_token": tokens[-1],
            }
        )
        n_ann += len(keys)
    return n_ann


__all__ = ["count_points_in_boxes", "make_synthetic_nuscenes", "split_scene_names"]

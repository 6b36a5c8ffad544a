"""nuScenes detection data: devkit tables → tensors, BEV / image augmentation, streaming dataset, collator.

Everything is read through the real `nuscenes-devkit`, so the same code runs on the official v1.0-mini /
v1.0-trainval and on the synthetic dataroots of `hf_crossdistill.data.synthetic`.

Frames: points and boxes are given in the key frame's LIDAR_TOP sensor frame (x forward, y left, z up),
optionally moved by one 4×4 BEV augmentation matrix; boxes are `[x, y, z, l, w, h, yaw, vx, vy]` with z
the box centre, l along the heading and yaw counter-clockwise from +x.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

NUSCENES_CLASSES = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)

# The devkit's standard category → detection-class mapping (nuscenes.eval.detection.utils), which the
# official evaluation applies to the ground truth; categories not listed here are not detection targets.
CATEGORY_TO_CLASS = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

CAMERA_NAMES = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")

NUSCENES_TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)

# Which predefined devkit splits belong to which release.
VERSION_SPLITS = {
    "v1.0-mini": ("mini_train", "mini_val"),
    "v1.0-trainval": ("train", "val", "train_detect", "train_track"),
    "v1.0-test": ("test",),
}

DEFAULT_POINT_CLOUD_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)


class NuScenesDataError(RuntimeError):
    """A nuScenes dataroot is missing a file or holds a malformed one (the message names it)."""


# ---------------------------------------------------------------------------------------------------------------
# Splits and the devkit handle
# ---------------------------------------------------------------------------------------------------------------


def split_scene_names(version: str, split: str) -> list[str]:
    """Scene names of a predefined devkit split, after checking that the split belongs to `version`."""
    if version not in VERSION_SPLITS:
        raise ValueError(f"unknown nuScenes version {version!r}; expected one of {sorted(VERSION_SPLITS)}")
    if split not in VERSION_SPLITS[version]:
        raise ValueError(
            f"unknown split {split!r} for nuScenes version {version!r}; expected one of {VERSION_SPLITS[version]}"
        )
    from nuscenes.utils.splits import create_splits_scenes

    return list(create_splits_scenes(verbose=False)[split])


def _table_path(dataroot: str | os.PathLike, version: str, table: str) -> str:
    return os.path.join(os.fspath(dataroot), version, f"{table}.json")


def _check_dataroot(dataroot: str | os.PathLike, version: str) -> None:
    table_root = os.path.join(os.fspath(dataroot), version)
    if not os.path.isdir(table_root):
        raise NuScenesDataError(f"nuScenes table folder {table_root} does not exist (dataroot={dataroot!s})")
    for table in NUSCENES_TABLES:
        path = _table_path(dataroot, version, table)
        if not os.path.isfile(path):
            raise NuScenesDataError(f"nuScenes table {table!r} is missing: {path} (dataroot={dataroot!s})")


def dataroot_scene_names(dataroot: str | os.PathLike, version: str, split: str) -> list[str]:
    """Names of the scenes of `split` that the dataroot actually holds, in the order of its scene table.

    Only `scene.json` is read, so a dataset can be sharded by scene before any worker loads the full tables.
    """
    split_names = set(split_scene_names(version, split))
    _check_dataroot(dataroot, version)
    path = _table_path(dataroot, version, "scene")
    try:
        with open(path) as f:
            scenes = json.load(f)
        names = [scene["name"] for scene in scenes]
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise NuScenesDataError(f"nuScenes table 'scene' is malformed: {path}: {err}") from err
    return [name for name in names if name in split_names]


_NUSC_CACHE: dict[tuple[str, str], Any] = {}
_NUSC_LOCK = threading.Lock()


def load_nuscenes(dataroot: str | os.PathLike, version: str):
    """A `nuscenes.nuscenes.NuScenes` for (dataroot, version), built once per process and cached.

    Errors of the devkit (a missing or malformed table) are re-raised as `NuScenesDataError` naming the table
    file and the dataroot.
    """
    if version not in VERSION_SPLITS:
        raise ValueError(f"unknown nuScenes version {version!r}; expected one of {sorted(VERSION_SPLITS)}")
    key = (os.path.abspath(os.fspath(dataroot)), version)
    with _NUSC_LOCK:
        if key in _NUSC_CACHE:
            return _NUSC_CACHE[key]
        _check_dataroot(dataroot, version)
        from nuscenes.nuscenes import NuScenes

        try:
            nusc = NuScenes(version=version, dataroot=key[0], verbose=False)
        except json.JSONDecodeError as err:
            bad = _first_unparsable_table(dataroot, version)
            raise NuScenesDataError(f"nuScenes table {bad} is not valid JSON (dataroot={dataroot!s}): {err}") from err
        except Exception as err:  # the devkit signals a bad dataroot with bare asserts and KeyErrors
            raise NuScenesDataError(
                f"the nuScenes devkit could not load version {version!r} from dataroot {dataroot!s}: "
                f"{type(err).__name__}: {err}"
            ) from err
        _NUSC_CACHE[key] = nusc
        return nusc


def _first_unparsable_table(dataroot: str | os.PathLike, version: str) -> str:
    for table in NUSCENES_TABLES:
        path = _table_path(dataroot, version, table)
        try:
            with open(path) as f:
                json.load(f)
        except json.JSONDecodeError:
            return path
    return "(unknown)"


def split_sample_tokens(nusc, split: str) -> list[str]:
    """Key-frame sample tokens of a predefined split, scene by scene in temporal order."""
    names = set(split_scene_names(nusc.version, split))
    tokens = []
    for scene in nusc.scene:
        if scene["name"] in names:
            tokens.extend(_scene_sample_tokens(nusc, scene))
    return tokens


def _scene_sample_tokens(nusc, scene: Mapping[str, Any]) -> list[str]:
    tokens = []
    token = scene["first_sample_token"]
    while token:
        tokens.append(token)
        token = nusc.get("sample", token)["next"]
    return tokens


# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------


def quaternion_to_matrix(quaternions: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) stored as nuScenes does: [w, x, y, z]."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)  # (..., 3, 3)


def yaw_to_quaternion(yaw: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) [w, x, y, z] of rotations by `yaw` about +z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), zeros, zeros, np.sin(yaw / 2)], axis=-1)


def pose_matrix(translation: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """4×4 transform (float64) mapping child-frame points to the parent frame, from a nuScenes record."""
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(np.asarray(rotation, dtype=np.float64))
    matrix[:3, 3] = np.asarray(translation, dtype=np.float64)
    return matrix


def invert_pose(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4×4 transform (uses Rᵀ, exact for rotations)."""
    inverse = np.eye(4)
    inverse[:3, :3] = matrix[:3, :3].T
    inverse[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return inverse


def _record_pose(nusc, sample_data: Mapping[str, Any]) -> np.ndarray:
    """Sensor frame → global frame of a sample_data record (calibrated sensor, then its ego pose)."""
    cs = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sample_data["ego_pose_token"])
    return pose_matrix(pose["translation"], pose["rotation"]) @ pose_matrix(cs["translation"], cs["rotation"])


def transform_points(matrix: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply a 4×4 transform to (N, 3) points, in the points' precision (float32 sensor data stays float32)."""
    matrix = np.asarray(matrix, dtype=np.float32 if xyz.dtype == np.float32 else np.float64)
    return xyz @ matrix[:3, :3].T + matrix[:3, 3]


# ---------------------------------------------------------------------------------------------------------------
# LiDAR
# ---------------------------------------------------------------------------------------------------------------


def read_lidar_file(path: str | os.PathLike) -> np.ndarray:
    """Read a nuScenes `.pcd.bin` (float32 × 5: x, y, z, intensity, ring) as an (N, 5) float32 array."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NuScenesDataError(f"LiDAR file is missing: {path}")
    size = os.path.getsize(path)
    if size % (5 * 4) != 0:
        raise NuScenesDataError(
            f"LiDAR file {path} is truncated or malformed: {size} bytes is not a multiple of 5 float32 values "
            "(x, y, z, intensity, ring) per point"
        )
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


def load_lidar_sweeps(
    nusc,
    sample: Mapping[str, Any],
    num_sweeps: int,
    *,
    min_distance: float = 1.0,
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """Key-frame LIDAR_TOP points plus up to `num_sweeps` earlier sweeps, all in the key LIDAR_TOP frame.

    Each sweep goes sensor → its ego pose → global → key ego pose → key sensor (one 4×4 per sweep). Sweep
    points with |x| and |y| both below `min_distance` (the devkit's `remove_close` square) are dropped: they hit
    the ego vehicle itself and would otherwise smear along its past trajectory. `transform` (4×4, e.g. the BEV
    augmentation) is folded into each sweep's matrix, so every point is moved exactly once.

    Returns:
        (N, 5) float32 `[x, y, z, intensity, Δt]` with Δt = key time − sweep time in seconds (0 for the key frame).
    """
    if num_sweeps < 0:
        raise ValueError(f"num_sweeps must be ≥ 0, got {num_sweeps}")
    key_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    post = np.eye(4) if transform is None else np.asarray(transform, dtype=np.float64)
    key_from_global = post @ invert_pose(_record_pose(nusc, key_sd))
    key_time = key_sd["timestamp"]
    key_points = read_lidar_file(os.path.join(nusc.dataroot, key_sd["filename"]))
    clouds = [np.concatenate([key_points[:, :4], np.zeros((len(key_points), 1), np.float32)], axis=1)]
    if transform is not None:
        clouds[0][:, :3] = transform_points(post, key_points[:, :3])
    sd = key_sd
    for _ in range(num_sweeps):
        if not sd["prev"]:
            break
        sd = nusc.get("sample_data", sd["prev"])
        raw = read_lidar_file(os.path.join(nusc.dataroot, sd["filename"]))
        raw = raw[~((np.abs(raw[:, 0]) < min_distance) & (np.abs(raw[:, 1]) < min_distance))]
        key_from_sweep = key_from_global @ _record_pose(nusc, sd)
        sweep = np.empty((len(raw), 5), dtype=np.float32)
        sweep[:, :3] = transform_points(key_from_sweep, raw[:, :3])
        sweep[:, 3] = raw[:, 3]
        sweep[:, 4] = (key_time - sd["timestamp"]) * 1e-6
        clouds.append(sweep)
    return np.concatenate(clouds, axis=0)


# ---------------------------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------------------------


def load_sample_boxes(nusc, sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Ground-truth boxes of a key frame in its LIDAR_TOP frame.

    Returns a dict with `boxes` (M, 9) float32 `[x, y, z, l, w, h, yaw, vx, vy]` (nuScenes stores sizes as
    [w, l, h]; velocities are the devkit's `box_velocity` rotated into the sensor frame, NaN → 0),
    `labels` (M,) int64 into `NUSCENES_CLASSES`, `num_points` (M,) int64 (LiDAR + radar points) and
    `tokens` (M,) annotation tokens. Annotations whose category is not a detection class are dropped.
    """
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lidar_from_global = invert_pose(_record_pose(nusc, lidar_sd))
    records = [nusc.get("sample_annotation", token) for token in sample["anns"]]
    records = [r for r in records if r["category_name"] in CATEGORY_TO_CLASS]
    if not records:
        return {
            "boxes": np.zeros((0, 9), np.float32),
            "labels": np.zeros((0,), np.int64),
            "num_points": np.zeros((0,), np.int64),
            "tokens": np.zeros((0,), dtype=object),
        }
    centres = np.array([r["translation"] for r in records], dtype=np.float64)  # (M, 3)
    sizes = np.array([r["size"] for r in records], dtype=np.float64)  # (M, 3) as [w, l, h]
    rotations = quaternion_to_matrix(np.array([r["rotation"] for r in records]))  # (M, 3, 3)
    velocities = np.stack([nusc.box_velocity(r["token"]) for r in records])  # (M, 3) global frame
    velocities = np.nan_to_num(velocities, nan=0.0)

    rotation = lidar_from_global[:3, :3]
    centres = transform_points(lidar_from_global, centres)
    rotations = rotation[None] @ rotations  # (M, 3, 3) box → LIDAR_TOP
    yaw = np.arctan2(rotations[:, 1, 0], rotations[:, 0, 0])
    velocities = velocities @ rotation.T

    boxes = np.concatenate([centres, sizes[:, [1, 0, 2]], yaw[:, None], velocities[:, :2]], axis=1).astype(
        np.float32
    )  # (M, 9)
    class_index = {name: i for i, name in enumerate(NUSCENES_CLASSES)}
    labels = np.array([class_index[CATEGORY_TO_CLASS[r["category_name"]]] for r in records], dtype=np.int64)
    num_points = np.array([r["num_lidar_pts"] + r["num_radar_pts"] for r in records], dtype=np.int64)
    tokens = np.array([r["token"] for r in records], dtype=object)
    return {"boxes": boxes, "labels": labels, "num_points": num_points, "tokens": tokens}


def boxes_in_bev_range(boxes: np.ndarray, point_cloud_range: Sequence[float]) -> np.ndarray:
    """Boolean mask (M,) of boxes whose centre lies inside the x-y extent of `point_cloud_range`."""
    x_min, y_min, _, x_max, y_max, _ = point_cloud_range
    x, y = boxes[:, 0], boxes[:, 1]
    return (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max)


def points_in_range(points: np.ndarray, point_cloud_range: Sequence[float]) -> np.ndarray:
    """Boolean mask (N,) of points inside the 3-D `point_cloud_range` (x_min, y_min, z_min, x_max, y_max, z_max)."""
    mask = (points[:, 0] >= point_cloud_range[0]) & (points[:, 0] < point_cloud_range[3])
    mask &= (points[:, 1] >= point_cloud_range[1]) & (points[:, 1] < point_cloud_range[4])
    mask &= (points[:, 2] >= point_cloud_range[2]) & (points[:, 2] < point_cloud_range[5])
    return mask


# ---------------------------------------------------------------------------------------------------------------
# BEV augmentation
# ---------------------------------------------------------------------------------------------------------------


def bev_augmentation_matrix(
    rotation: float = 0.0, scale: float = 1.0, flip_x: bool = False, flip_y: bool = False
) -> np.ndarray:
    """4×4 BEV augmentation: rotate by `rotation` (rad, about +z), scale uniformly, then mirror.

    `flip_x` mirrors across the x axis (y → −y); `flip_y` mirrors across the y axis (x → −x).
    """
    c, s = math.cos(rotation), math.sin(rotation)
    rotate = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    flip = np.diag([-1.0 if flip_y else 1.0, -1.0 if flip_x else 1.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = flip @ (scale * rotate)
    return matrix.astype(np.float32)


def augment_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (N, ≥3) with x, y, z moved by a 4×4 BEV matrix; the other channels are kept."""
    out = points.copy()
    out[:, :3] = transform_points(matrix, points[:, :3])
    return out


def augment_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes (M, 9) moved by a 4×4 BEV matrix made of a z-rotation, a uniform scale and x/y mirrors.

    The centre is transformed as a point, sizes are multiplied by the scale, the heading vector and the
    velocity are transformed as directions (mirroring flips the heading's sense, which keeps the box shape).
    """
    linear = matrix[:3, :3].astype(np.float64)
    scale = float(np.cbrt(abs(np.linalg.det(linear))))
    out = boxes.astype(np.float64).copy()
    out[:, :3] = transform_points(matrix.astype(np.float64), out[:, :3])
    out[:, 3:6] *= scale
    heading = np.stack([np.cos(out[:, 6]), np.sin(out[:, 6])], axis=1) @ linear[:2, :2].T  # (M, 2)
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    out[:, 7:9] = out[:, 7:9] @ linear[:2, :2].T
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Cameras and image augmentation
# ---------------------------------------------------------------------------------------------------------------


def image_augmentation_matrix(
    scale: tuple[float, float], crop: tuple[float, float], flip: bool, rotation: float, output_size: tuple[int, int]
) -> np.ndarray:
    """3×3 affine mapping original pixel coordinates to the augmented image's.

    Order: resize by `scale` = (sx, sy), crop at the top-left corner `crop` = (x, y) of the resized image, mirror
    horizontally within the `output_size` = (W, H) image, then rotate by `rotation` (rad, counter-clockwise
    as seen on screen) about the output centre. Continuous coordinates: pixel i covers [i, i + 1).
    """
    width, height = output_size
    resize = np.diag([scale[0], scale[1], 1.0])
    shift = np.array([[1.0, 0.0, -crop[0]], [0.0, 1.0, -crop[1]], [0.0, 0.0, 1.0]])
    mirror = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    c, s = math.cos(rotation), math.sin(rotation)
    # Image rows grow downwards, so a visually counter-clockwise turn is R(−θ) in (u, v).
    centre = np.array([width / 2.0, height / 2.0])
    rotate = np.eye(3)
    rotate[:2, :2] = np.array([[c, s], [-s, c]])
    rotate[:2, 2] = centre - rotate[:2, :2] @ centre
    return (rotate @ mirror @ shift @ resize).astype(np.float64)


@dataclass(frozen=True)
class ImageAugmentation:
    """Random per-camera image augmentation (BEVDet-style): resize, bottom crop, horizontal flip, rotation.

    `resize_range` is relative to the test-time scale that fits the network input; rotation in degrees.
    """

    resize_range: tuple[float, float] = (0.88, 1.25)
    rotation_range: float = 5.4
    flip_probability: float = 0.5

    def sample(
        self, rng: np.random.Generator | None, original_size: tuple[int, int], output_size: tuple[int, int]
    ) -> np.ndarray:
        """The 3×3 matrix of one draw (`rng=None`: the deterministic test-time resize and bottom-centre crop)."""
        (orig_w, orig_h), (out_w, out_h) = original_size, output_size
        base = max(out_w / orig_w, out_h / orig_h)
        if rng is None:
            scale, flip, rotation = base, False, 0.0
        else:
            scale = base * float(rng.uniform(*self.resize_range))
            flip = bool(rng.random() < self.flip_probability)
            rotation = math.radians(float(rng.uniform(-self.rotation_range, self.rotation_range)))
        new_w, new_h = max(1, round(orig_w * scale)), max(1, round(orig_h * scale))
        # Keep the bottom of the image (the road); centre horizontally at test time, random at train time.
        crop_y = new_h - out_h
        crop_x = (new_w - out_w) / 2.0 if rng is None else float(rng.uniform(0, max(0, new_w - out_w)))
        crop_x = float(round(crop_x))
        return image_augmentation_matrix(
            (new_w / orig_w, new_h / orig_h), (crop_x, float(crop_y)), flip, rotation, output_size
        )


def warp_image(image, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Warp a PIL image by a 3×3 affine (original → output pixels) to `output_size`; returns (3, H, W) in [0, 1]."""
    from PIL import Image

    width, height = output_size
    orig_w, orig_h = image.size
    scale_x, scale_y = float(np.linalg.norm(matrix[:2, 0])), float(np.linalg.norm(matrix[:2, 1]))
    rest = matrix
    if min(scale_x, scale_y) < 0.999:
        # Shrink with PIL's antialiased resize first; bilinear sampling alone would alias.
        small = (max(1, round(orig_w * scale_x)), max(1, round(orig_h * scale_y)))
        image = image.resize(small, Image.BILINEAR)
        rest = matrix @ np.linalg.inv(np.diag([small[0] / orig_w, small[1] / orig_h, 1.0]))
    if np.allclose(rest, np.eye(3), atol=1e-9) and image.size == (width, height):
        warped = image
    else:
        inverse = np.linalg.inv(rest)
        warped = image.transform((width, height), Image.AFFINE, tuple(inverse[:2].ravel()), Image.BILINEAR)
    return (np.asarray(warped, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()  # (3, H, W)


def load_cameras(
    nusc,
    sample: Mapping[str, Any],
    cameras: Sequence[str],
    output_size: tuple[int, int] | None,
    augmentation: ImageAugmentation | None,
    rng: np.random.Generator | None,
) -> dict[str, np.ndarray]:
    """Images and calibration of the key frame's cameras.

    Returns `images` (N_cam, 3, H, W) float32 in [0, 1], `intrinsics` (N_cam, 3, 3) (original camera),
    `camera_to_lidar` (N_cam, 4, 4) camera → key LIDAR_TOP frame (through each camera's own ego pose) and
    `image_aug_matrix` (N_cam, 3, 3) original pixels → network-input pixels. `augmentation=None` means test-time
    processing (resize + bottom-centre crop to `output_size`, identity when `output_size` is None).
    """
    from PIL import Image, UnidentifiedImageError

    key_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lidar_from_global = invert_pose(_record_pose(nusc, key_sd))
    images, intrinsics, extrinsics, aug_matrices = [], [], [], []
    for camera in cameras:
        if camera not in sample["data"]:
            raise NuScenesDataError(
                f"sample {sample['token']} has no {camera} image (cameras: {sorted(sample['data'])})"
            )
        sd = nusc.get("sample_data", sample["data"][camera])
        path = os.path.join(nusc.dataroot, sd["filename"])
        if not os.path.isfile(path):
            raise NuScenesDataError(f"camera image is missing: {path} ({camera}, sample {sample['token']})")
        try:
            with Image.open(path) as handle:
                image = handle.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise NuScenesDataError(f"camera image {path} cannot be decoded: {err}") from err
        size = output_size or image.size
        if augmentation is None:
            matrix = ImageAugmentation().sample(None, image.size, size)
        else:
            matrix = augmentation.sample(rng, image.size, size)
        images.append(warp_image(image, matrix, size))
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        intrinsics.append(np.asarray(cs["camera_intrinsic"], dtype=np.float32))
        extrinsics.append((lidar_from_global @ _record_pose(nusc, sd)).astype(np.float32))
        aug_matrices.append(matrix.astype(np.float32))
    if len({im.shape for im in images}) > 1:
        raise NuScenesDataError(
            f"sample {sample['token']}: cameras have different image sizes {[im.shape for im in images]}; "
            "pass image_size=(W, H) to resize them to one network input"
        )
    return {
        "images": np.stack(images),
        "intrinsics": np.stack(intrinsics),
        "camera_to_lidar": np.stack(extrinsics),
        "image_aug_matrix": np.stack(aug_matrices),
    }


# ---------------------------------------------------------------------------------------------------------------
# Samples and the streaming dataset
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NuScenesLoaderOptions:
    """Everything that decides what one loaded sample looks like (see `nuscenes_detection_dataset`)."""

    num_sweeps: int = 10
    cameras: tuple[str, ...] = CAMERA_NAMES
    image_size: tuple[int, int] | None = None
    augment: bool = False
    point_cloud_range: tuple[float, ...] | None = DEFAULT_POINT_CLOUD_RANGE
    filter_empty_boxes: bool = True
    min_sweep_distance: float = 1.0
    bev_rotation_range: float = 22.5
    bev_scale_range: tuple[float, float] = (0.95, 1.05)
    bev_flip_probability: float = 0.5
    image_augmentation: ImageAugmentation = ImageAugmentation()
    seed: int | None = 0

    def __post_init__(self):
        if not isinstance(self.num_sweeps, int) or self.num_sweeps < 0:
            raise ValueError(f"num_sweeps must be a non-negative int, got {self.num_sweeps!r}")
        unknown = [c for c in self.cameras if not isinstance(c, str)]
        if unknown:
            raise ValueError(f"cameras must be channel names such as 'CAM_FRONT', got {self.cameras!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(int(v) for v in self.image_size) <= 0):
            raise ValueError(f"image_size must be (W, H) with positive sizes, got {self.image_size!r}")
        if self.point_cloud_range is not None:
            pcr = self.point_cloud_range
            if len(pcr) != 6 or not all(pcr[i] < pcr[i + 3] for i in range(3)):
                raise ValueError(f"point_cloud_range must be (x_min, y_min, z_min, x_max, y_max, z_max), got {pcr!r}")
        low, high = self.bev_scale_range
        if not 0 < low <= high:
            raise ValueError(f"bev_scale_range must satisfy 0 < low ≤ high, got {self.bev_scale_range!r}")
        if not 0 <= self.bev_flip_probability <= 1:
            raise ValueError(f"bev_flip_probability must be in [0, 1], got {self.bev_flip_probability}")


_PASS_COUNTS: dict[tuple[str, str], int] = {}


def _sample_rng(seed: int | None, sample_token: str, stream: str) -> np.random.Generator:
    """A generator per (seed, sample, pass): reproducible, yet each new pass over a sample in this process
    (the next epoch with in-process loading or persistent workers) draws a fresh augmentation."""
    if seed is None:
        return np.random.default_rng()
    key = (stream, sample_token)
    count = _PASS_COUNTS.get(key, 0)
    _PASS_COUNTS[key] = count + 1
    token_hash = int(hashlib.sha1(sample_token.encode()).hexdigest()[:15], 16)
    return np.random.default_rng([int(seed), token_hash, count])


def load_detection_sample(
    nusc, sample_token: str, options: NuScenesLoaderOptions | None = None, rng: np.random.Generator | None = None
) -> dict[str, Any]:
    """One key frame as the loader yields it (see `nuscenes_detection_dataset` for the fields).

    Args:
        nusc: a `NuScenes` instance (e.g. from `load_nuscenes`).
        sample_token: a key-frame token of that instance.
        options: loader options; defaults to `NuScenesLoaderOptions()`.
        rng: draws the augmentation when `options.augment`; a fresh unseeded generator when None.
    """
    options = options or NuScenesLoaderOptions()
    try:
        sample = nusc.get("sample", sample_token)
    except KeyError:
        raise KeyError(f"unknown sample token {sample_token!r} for dataroot {nusc.dataroot}") from None
    annotations = load_sample_boxes(nusc, sample)
    boxes, labels = annotations["boxes"], annotations["labels"]
    if options.filter_empty_boxes:
        keep = annotations["num_points"] > 0
        boxes, labels = boxes[keep], labels[keep]

    if options.augment:
        rng = rng if rng is not None else np.random.default_rng()
        angle = math.radians(float(rng.uniform(-options.bev_rotation_range, options.bev_rotation_range)))
        bev_matrix = bev_augmentation_matrix(
            angle,
            float(rng.uniform(*options.bev_scale_range)),
            bool(rng.random() < options.bev_flip_probability),
            bool(rng.random() < options.bev_flip_probability),
        )
        boxes = augment_boxes(boxes, bev_matrix)
    else:
        bev_matrix = np.eye(4, dtype=np.float32)
    points = load_lidar_sweeps(
        nusc,
        sample,
        options.num_sweeps,
        min_distance=options.min_sweep_distance,
        transform=bev_matrix if options.augment else None,
    )

    if options.point_cloud_range is not None:
        points = points[points_in_range(points, options.point_cloud_range)]
        keep = boxes_in_bev_range(boxes, options.point_cloud_range)
        boxes, labels = boxes[keep], labels[keep]

    out: dict[str, Any] = {"sample_token": sample_token, "points": np.ascontiguousarray(points, dtype=np.float32)}
    if options.cameras:
        out.update(
            load_cameras(
                nusc,
                sample,
                options.cameras,
                None if options.image_size is None else (int(options.image_size[0]), int(options.image_size[1])),
                options.image_augmentation if options.augment else None,
                rng,
            )
        )
    out["gt_boxes"] = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 9)
    out["gt_labels"] = np.ascontiguousarray(labels, dtype=np.int64)
    out["bev_aug_matrix"] = bev_matrix.astype(np.float32)
    return out


def _generate_detection_samples(shards: list[str], dataroot: str, version: str, options, stream: str):
    nusc = load_nuscenes(dataroot, version)
    scenes = {scene["name"]: scene for scene in nusc.scene}
    for name in shards:
        if name not in scenes:
            raise NuScenesDataError(f"scene {name!r} is not in the scene table of {dataroot} ({version})")
        for token in _scene_sample_tokens(nusc, scenes[name]):
            rng = _sample_rng(options.seed, token, stream) if options.augment else None
            yield load_detection_sample(nusc, token, options, rng)


def loader_options(*configs) -> dict:
    """`nuscenes_detection_dataset` options that serve every detector of a run (`BEVDetectorConfig`s).

    Student and teacher read the same (augmented) batch, so: images only when some model uses cameras, at the image
    size of the camera models (which must agree; config `[H, W]` → loader `(W, H)`); `cameras=()` otherwise; sweeps
    the largest count among the LiDAR models (0 without one).
    """
    if not configs:
        raise ValueError("loader_options: give at least one detector config")
    for config in configs:
        if not hasattr(config, "modalities"):
            raise TypeError(f"loader_options: {type(config).__name__} is not a BEV detector config (no modalities)")
    camera_configs = [c for c in configs if "camera" in c.modalities]
    lidar_configs = [c for c in configs if "lidar" in c.modalities]
    sizes = {tuple(int(v) for v in c.image_size) for c in camera_configs}
    if len(sizes) > 1:
        raise ValueError(f"teacher and student use cameras at different image sizes {sorted(sizes)} ([H, W])")
    options: dict = {"num_sweeps": max((c.num_sweeps for c in lidar_configs), default=0)}
    if camera_configs:
        height, width = sizes.pop()
        options["image_size"] = (width, height)
    else:
        options["cameras"] = ()
    return options


def nuscenes_detection_dataset(
    dataroot: str | os.PathLike,
    version: str,
    split: str,
    *,
    num_sweeps: int = 10,
    augment: bool = False,
    image_size: tuple[int, int] | None = None,
    cameras: Sequence[str] = CAMERA_NAMES,
    point_cloud_range: Sequence[float] | None = DEFAULT_POINT_CLOUD_RANGE,
    filter_empty_boxes: bool = True,
    min_sweep_distance: float = 1.0,
    bev_rotation_range: float = 22.5,
    bev_scale_range: tuple[float, float] = (0.95, 1.05),
    bev_flip_probability: float = 0.5,
    image_augmentation: ImageAugmentation | None = None,
    seed: int | None = 0,
):
    """Stream nuScenes key frames for 3-D detection as a `datasets.IterableDataset`, sharded by scene.

    Only the scene table is read here; each worker / process builds its own `NuScenes` on first use (cached
    per process). Pass the dataset unsplit to `Trainer` (accelerate shards it per rank); `n_shards` equals the
    number of scenes.

    Args:
        dataroot: folder holding `<version>/*.json`, `samples/` and `sweeps/`.
        version: `"v1.0-mini"`, `"v1.0-trainval"` or `"v1.0-test"`.
        split: a devkit split of that version (`"mini_train"`, `"mini_val"`, `"train"`, `"val"`, ...).
        num_sweeps: earlier LiDAR sweeps added to the key frame (0 = key frame only).
        augment: draw a BEV augmentation (rotation ±`bev_rotation_range` degrees, scale in `bev_scale_range`,
            x / y mirrors with `bev_flip_probability`) and a per-camera image augmentation.
        image_size: (W, H) of the network input; None keeps the original size (then images must share it).
        cameras: camera channels, in this order; empty for LiDAR-only samples (no image fields).
        point_cloud_range: points outside it and boxes whose centre is outside its x-y extent are dropped
            (after augmentation); None keeps everything.
        filter_empty_boxes: drop boxes with no LiDAR or radar point (as the official evaluation does).
        min_sweep_distance: sweep points closer than this (x-y, metres) to their sensor are dropped.
        image_augmentation: the random image augmentation (default `ImageAugmentation()`).
        seed: makes the augmentation reproducible per sample and pass; None for fresh randomness.

    Yields dicts with `sample_token` (str), `points` (N, 5) float32 `[x, y, z, intensity, Δt s]`, `images`
    (N_cam, 3, H, W) float32 in [0, 1], `intrinsics` (N_cam, 3, 3), `camera_to_lidar` (N_cam, 4, 4),
    `image_aug_matrix` (N_cam, 3, 3), `gt_boxes` (M, 9) `[x, y, z, l, w, h, yaw, vx, vy]`, `gt_labels` (M,)
    int64 into `NUSCENES_CLASSES`, and `bev_aug_matrix` (4, 4); everything in the (augmented) key LIDAR_TOP frame.
    """
    import datasets

    options = NuScenesLoaderOptions(
        num_sweeps=num_sweeps,
        cameras=tuple(cameras),
        image_size=None if image_size is None else tuple(int(v) for v in image_size),
        augment=bool(augment),
        point_cloud_range=None if point_cloud_range is None else tuple(float(v) for v in point_cloud_range),
        filter_empty_boxes=filter_empty_boxes,
        min_sweep_distance=float(min_sweep_distance),
        bev_rotation_range=float(bev_rotation_range),
        bev_scale_range=tuple(float(v) for v in bev_scale_range),
        bev_flip_probability=float(bev_flip_probability),
        image_augmentation=image_augmentation or ImageAugmentation(),
        seed=seed,
    )
    dataroot = os.path.abspath(os.fspath(dataroot))
    scene_names = dataroot_scene_names(dataroot, version, split)
    if not scene_names:
        raise NuScenesDataError(f"dataroot {dataroot} ({version}) holds no scene of split {split!r}")
    return datasets.IterableDataset.from_generator(
        _generate_detection_samples,
        gen_kwargs={
            "shards": scene_names,
            "dataroot": dataroot,
            "version": version,
            "options": options,
            "stream": uuid.uuid4().hex,
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------------

_STACKED_KEYS = ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar", "bev_aug_matrix")


def _as_float_tensor(value: Any, key: str, index: int) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float32) if not torch.is_tensor(value) else value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"collate_bev_batch: sample {index} field {key!r} is not numeric: {err}") from err
    return tensor.to(torch.float32)


def collate_bev_batch(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate loader samples into the shared BEV batch.

    Points stay unpadded: all samples are concatenated with a leading batch-index column. Boxes are padded
    to the largest count in the batch (at least one row, so shapes never have a zero dimension) with a
    boolean mask; padded rows are all zeros and label 0.

    Args:
        samples: dicts as yielded by `nuscenes_detection_dataset` (numpy arrays, nested lists as returned
            by `datasets`, or tensors). Required keys: `points` (N, ≥4), `gt_boxes` (M, 9), `gt_labels` (M,).
            Optional: `images`, `intrinsics`, `image_aug_matrix`, `camera_to_lidar`, `bev_aug_matrix`
            (stacked when present in every sample), `sample_token`.

    Returns:
        `points` (P, 1 + C) float32, `gt_boxes` (B, M, 9) float32, `gt_labels` (B, M) int64, `gt_mask` (B, M)
        bool, the stacked camera / augmentation tensors, and `sample_token` (list of str).
    """
    if isinstance(samples, Mapping) or not isinstance(samples, Sequence) or len(samples) == 0:
        raise ValueError("collate_bev_batch expects a non-empty list of sample dicts")
    batch: dict[str, Any] = {}

    points = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, Mapping):
            raise TypeError(f"collate_bev_batch: sample {i} is a {type(sample).__name__}, expected a dict")
        for key in ("points", "gt_boxes", "gt_labels"):
            if key not in sample:
                raise KeyError(f"collate_bev_batch: sample {i} has no {key!r} field")
        pts = _as_float_tensor(sample["points"], "points", i)
        if pts.ndim != 2 or (points and pts.shape[1] != points[0].shape[1] - 1):
            raise ValueError(f"collate_bev_batch: sample {i} points have shape {tuple(pts.shape)}, expected (N, C)")
        batch_column = torch.full((pts.shape[0], 1), float(i), dtype=torch.float32)
        points.append(torch.cat([batch_column, pts], dim=1))  # (N, 1 + C)
    batch["points"] = torch.cat(points, dim=0)

    boxes = [_as_float_tensor(s["gt_boxes"], "gt_boxes", i).reshape(-1, 9) for i, s in enumerate(samples)]
    labels = [torch.as_tensor(np.asarray(s["gt_labels"], dtype=np.int64)).reshape(-1) for s in samples]
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if b.shape[0] != lab.shape[0]:
            raise ValueError(f"collate_bev_batch: sample {i} has {b.shape[0]} boxes but {lab.shape[0]} labels")
    max_boxes = max(1, max(b.shape[0] for b in boxes))
    gt_boxes = torch.zeros(len(samples), max_boxes, 9, dtype=torch.float32)
    gt_labels = torch.zeros(len(samples), max_boxes, dtype=torch.int64)
    gt_mask = torch.zeros(len(samples), max_boxes, dtype=torch.bool)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        gt_boxes[i, : b.shape[0]] = b
        gt_labels[i, : lab.shape[0]] = lab
        gt_mask[i, : b.shape[0]] = True
    batch.update(gt_boxes=gt_boxes, gt_labels=gt_labels, gt_mask=gt_mask)

    for key in _STACKED_KEYS:
        present = [key in s and s[key] is not None for s in samples]
        if not any(present):
            continue
        if not all(present):
            raise KeyError(f"collate_bev_batch: field {key!r} is present in some samples but not all")
        tensors = [_as_float_tensor(s[key], key, i) for i, s in enumerate(samples)]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"collate_bev_batch: field {key!r} has different shapes across the batch: {shapes}")
        batch[key] = torch.stack(tensors)

    if all("sample_token" in s for s in samples):
        batch["sample_token"] = [str(s["sample_token"]) for s in samples]
    return batch

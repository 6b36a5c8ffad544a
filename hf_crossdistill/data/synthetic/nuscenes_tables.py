"""The nuScenes v1.0 schema pieces of the synthetic generator: fixed tables, sensor rig, tokens, map masks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .nuscenes_sensors import CameraSpec
from .nuscenes_world import OBJECT_CLASSES

NUSCENES_IMAGE_SIZE = (1600, 900)  # (W, H) of the real nuScenes cameras; intrinsics below are at this size

ATTRIBUTES = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no immediate intent to move."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)
VISIBILITY_LEVELS = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)

# LIDAR_TOP on the nuScenes vehicle: x to the right, y forward (a -90 degree yaw from the ego frame).
LIDAR_TRANSLATION = np.array([0.943713, 0.0, 1.84023])
LIDAR_YAW = -np.pi / 2
# channel, translation (ego frame), mounting yaw (degrees, CCW from the ego's +x), focal length, cx, cy
CAMERA_RIG = (
    ("CAM_FRONT", (1.70079, 0.01594, 1.51095), 0.0, 1266.4, 816.3, 491.5),
    ("CAM_FRONT_RIGHT", (1.55085, -0.49330, 1.49575), -55.0, 1260.8, 807.9, 495.3),
    ("CAM_FRONT_LEFT", (1.52387, 0.49463, 1.50932), 55.0, 1272.6, 826.6, 479.8),
    ("CAM_BACK", (0.02832, 0.00345, 1.57910), 180.0, 809.2, 829.2, 481.8),
    ("CAM_BACK_LEFT", (1.03569, 0.48480, 1.59097), 110.0, 1256.7, 817.8, 451.9),
    ("CAM_BACK_RIGHT", (1.02868, -0.48604, 1.58129), -110.0, 1259.5, 807.3, 501.2),
)
CAMERA_CHANNELS = tuple(c[0] for c in CAMERA_RIG)
# Camera axes (x right, y down, z forward) expressed in a forward-looking ego frame (x fwd, y left, z up).
_CAM_TO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def make_token(seed: int, *parts: object) -> str:
    """A deterministic 32-hex token from the seed and a record's identity (tokens only need to be unique)."""
    return hashlib.md5(":".join(str(p) for p in (seed, *parts)).encode()).hexdigest()


def yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quaternion_wxyz(rotation: np.ndarray) -> list[float]:
    """Unit quaternion [w, x, y, z] (w >= 0) of a proper rotation matrix (3, 3)."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q) / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return [float(v) for v in q]


def yaw_quaternion(yaw: float) -> list[float]:
    """[w, x, y, z] of a rotation about +z by `yaw`."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def camera_specs(image_size: tuple[int, int]) -> list[CameraSpec]:
    """The six cameras with intrinsics scaled from 1600 x 900 to `image_size` = (W, H) (same field of view)."""
    width, height = image_size
    sx, sy = width / NUSCENES_IMAGE_SIZE[0], height / NUSCENES_IMAGE_SIZE[1]
    specs = []
    for _, translation, yaw_deg, f, cx, cy in CAMERA_RIG:
        intrinsic = np.array([[f * sx, 0.0, cx * sx], [0.0, f * sy, cy * sy], [0.0, 0.0, 1.0]])
        rotation = yaw_rotation(np.deg2rad(yaw_deg)) @ _CAM_TO_FORWARD
        specs.append(CameraSpec(intrinsic, rotation, np.array(translation), width, height))
    return specs


def static_tables(seed: int) -> dict[str, list[dict]]:
    """category, attribute, visibility and sensor tables (shared by all scenes)."""
    category = [
        {"token": make_token(seed, "category", name), "name": name, "description": f"synthetic {det} ({name})"}
        for det, (name, _, _) in OBJECT_CLASSES.items()
    ]
    attribute = [
        {"token": make_token(seed, "attribute", name), "name": name, "description": desc} for name, desc in ATTRIBUTES
    ]
    visibility = [{"token": tok, "level": level, "description": desc} for tok, level, desc in VISIBILITY_LEVELS]
    sensor = [{"token": make_token(seed, "sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"}]
    sensor += [
        {"token": make_token(seed, "sensor", ch), "channel": ch, "modality": "camera"} for ch in CAMERA_CHANNELS
    ]
    return {"category": category, "attribute": attribute, "visibility": visibility, "sensor": sensor}


def calibrated_sensor_records(seed: int, scene_index: int, cameras: list[CameraSpec]) -> dict[str, dict]:
    """One calibrated_sensor record per channel for a scene's log."""
    records = {
        "LIDAR_TOP": {
            "token": make_token(seed, "calibrated_sensor", scene_index, "LIDAR_TOP"),
            "sensor_token": make_token(seed, "sensor", "LIDAR_TOP"),
            "translation": [float(v) for v in LIDAR_TRANSLATION],
            "rotation": yaw_quaternion(LIDAR_YAW),
            "camera_intrinsic": [],
        }
    }
    for ch, cam in zip(CAMERA_CHANNELS, cameras):
        records[ch] = {
            "token": make_token(seed, "calibrated_sensor", scene_index, ch),
            "sensor_token": make_token(seed, "sensor", ch),
            "translation": [float(v) for v in cam.translation],
            "rotation": quaternion_wxyz(cam.rotation),
            "camera_intrinsic": cam.intrinsic.tolist(),
        }
    return records


def write_map_mask(path: Path, road_corners_xy: np.ndarray, extent_xy: tuple[float, float], resolution: float = 0.1):
    """Drivable-area mask PNG in the devkit's MapMask convention (pixel = xy / res, image y flipped)."""
    width, height = int(np.ceil(extent_xy[0] / resolution)), int(np.ceil(extent_xy[1] / resolution))
    image = Image.new("L", (width, height), 0)
    px = road_corners_xy[:, 0] / resolution
    py = height - road_corners_xy[:, 1] / resolution
    ImageDraw.Draw(image).polygon([(float(a), float(b)) for a, b in zip(px, py)], fill=255)
    image.save(path, compress_level=1)


def write_table(table_dir: Path, name: str, records: list[dict]) -> None:
    with open(table_dir / f"{name}.json", "w") as f:
        json.dump(records, f, indent=0)

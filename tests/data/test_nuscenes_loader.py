"""Tests of the nuScenes loader: geometry against the devkit, augmentation consistency, sharding, collator, errors.

Most tests run on a hand-built, minimal dataroot in the real v1.0 format (two mini_train scenes, non-trivial
sensor calibrations and a turning ego vehicle) so that every transform is checked against the devkit itself;
the `tiny_nuscenes_root` fixture (the synthetic world generator) drives the end-to-end checks.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_crossdistill.data.nuscenes import (
    CATEGORY_TO_CLASS,
    DEFAULT_POINT_CLOUD_RANGE,
    NUSCENES_CLASSES,
    NuScenesDataError,
    NuScenesLoaderOptions,
    augment_boxes,
    augment_points,
    bev_augmentation_matrix,
    collate_bev_batch,
    image_augmentation_matrix,
    load_detection_sample,
    load_nuscenes,
    nuscenes_detection_dataset,
    points_in_range,
    quaternion_to_matrix,
    read_lidar_file,
    split_sample_tokens,
)

VERSION = "v1.0-mini"
SCENES = ("scene-0061", "scene-0553")  # both in the devkit's mini_train split
CAMERAS = {"CAM_FRONT": 0.0, "CAM_BACK": math.pi}  # camera yaw in the ego frame
IMAGE_SIZE = (64, 36)
SWEEPS_PER_SAMPLE = 3  # sweeps between consecutive key frames
CATEGORIES = ("vehicle.car", "human.pedestrian.adult", "movable_object.barrier", "animal")


# ---------------------------------------------------------------------------------------------------------------
# A minimal hand-built dataroot
# ---------------------------------------------------------------------------------------------------------------


def _quat_z(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _quat_mul(a, b) -> list[float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]


def _pose(translation, rotation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix(np.asarray(rotation))
    m[:3, 3] = translation
    return m


def _write_dataroot(root: Path, seed: int = 0) -> Path:
    """Write two mini_train scenes of three key frames each, in the nuScenes v1.0 format."""
    rng = np.random.default_rng(seed)
    tables: dict[str, list] = {name: [] for name in ("category", "attribute", "visibility", "instance", "sensor")}
    tables.update({name: [] for name in ("calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data")})
    tables.update(sample_annotation=[], map=[])
    counter = iter(range(10**6))

    def token(prefix: str) -> str:
        return f"{prefix}{next(counter):028x}"

    for name in CATEGORIES:
        tables["category"].append({"token": token("c"), "name": name, "description": name})
    cat_token = {c["name"]: c["token"] for c in tables["category"]}
    tables["visibility"].append({"token": "4", "level": "v80-100", "description": "visible"})
    # The real LIDAR_TOP is turned by about -90° about z; cameras look along their z axis.
    sensors = {"LIDAR_TOP": ("lidar", [0.9, 0.0, 1.8], _quat_z(-math.pi / 2 + 0.03), None)}
    cam_base = [0.5, -0.5, 0.5, -0.5]  # camera (z forward, x right, y down) → ego (x forward, y left, z up)
    intrinsic = [[40.0, 0.0, 32.0], [0.0, 40.0, 18.0], [0.0, 0.0, 1.0]]
    for cam, yaw in CAMERAS.items():
        sensors[cam] = ("camera", [1.5 * math.cos(yaw), 0.0, 1.5], _quat_mul(_quat_z(yaw), cam_base), intrinsic)
    cs_token = {}
    for channel, (modality, translation, rotation, intr) in sensors.items():
        sensor = {"token": token("s"), "channel": channel, "modality": modality}
        tables["sensor"].append(sensor)
        cs = {"token": token("k"), "sensor_token": sensor["token"], "translation": translation}
        cs.update(rotation=rotation, camera_intrinsic=intr or [])
        tables["calibrated_sensor"].append(cs)
        cs_token[channel] = cs["token"]
    log = {"token": token("l"), "logfile": "log0", "vehicle": "v", "date_captured": "2020-01-01", "location": "x"}
    tables["log"].append(log)
    (root / "maps").mkdir(parents=True)
    Image.new("L", (4, 4)).save(root / "maps" / "map0.png")
    tables["map"].append({"token": token("m"), "filename": "maps/map0.png", "category": "semantic_prior"})
    tables["map"][0]["log_tokens"] = [log["token"]]
    for folder in ["samples/LIDAR_TOP", "sweeps/LIDAR_TOP", *[f"samples/{c}" for c in CAMERAS]]:
        (root / folder).mkdir(parents=True)

    time_us = 1_600_000_000_000_000
    for scene_index, scene_name in enumerate(SCENES):
        # Objects: (category, start xy in world, yaw, size [w, l, h], velocity xy)
        objects = [
            ("vehicle.car", [12.0, 3.0], 0.4, [1.9, 4.5, 1.6], [3.0, 1.0]),
            ("vehicle.car", [-8.0, -6.0], -1.2, [2.0, 4.8, 1.7], [0.0, 0.0]),
            ("human.pedestrian.adult", [6.0, -4.0], 2.0, [0.6, 0.7, 1.8], [-1.0, 0.5]),
            ("movable_object.barrier", [3.0, 9.0], 0.0, [2.0, 0.5, 1.0], [0.0, 0.0]),
            ("animal", [-4.0, 5.0], 0.0, [0.5, 1.0, 0.6], [0.0, 0.0]),
            ("movable_object.barrier", [80.0, 0.0], 0.0, [2.0, 0.5, 1.0], [0.0, 0.0]),  # out of range
        ]
        instances = []
        for category, *_ in objects:
            instances.append({"token": token("i"), "category_token": cat_token[category], "nbr_annotations": 3})
        tables["instance"].extend(instances)
        scene = {"token": token("S"), "name": scene_name, "description": "", "log_token": log["token"]}
        scene["nbr_samples"] = 3
        tables["scene"].append(scene)
        prev_sample, prev_sd = "", dict.fromkeys(sensors, "")
        prev_ann = [""] * len(objects)
        for k in range(3):
            for sweep in range(SWEEPS_PER_SAMPLE + 1 if k > 0 else 1):
                is_key = sweep == SWEEPS_PER_SAMPLE or k == 0
                time_us += 50_000 if (k > 0 or sweep > 0) else 0
                t = (time_us - 1_600_000_000_000_000) * 1e-6
                ego_yaw = 0.3 * scene_index + 0.2 * t
                ego = {"token": token("e"), "timestamp": time_us, "rotation": _quat_z(ego_yaw)}
                ego["translation"] = [100.0 * scene_index + 8.0 * t, 2.0 * t, 0.0]
                tables["ego_pose"].append(ego)
                channels = list(sensors) if is_key else ["LIDAR_TOP"]
                sample_token = token("p") if is_key else ""
                for channel in channels:
                    folder = "samples" if is_key else "sweeps"
                    ext = "pcd.bin" if channel == "LIDAR_TOP" else "jpg"
                    filename = f"{folder}/{channel}/{scene_name}_{time_us}.{ext}"
                    sd = {"token": token("d"), "sample_token": sample_token, "ego_pose_token": ego["token"]}
                    sd.update(calibrated_sensor_token=cs_token[channel], filename=filename, timestamp=time_us)
                    sd.update(fileformat=ext.split(".")[0], is_key_frame=is_key, prev=prev_sd[channel], next="")
                    sd.update(width=IMAGE_SIZE[0] if ext == "jpg" else 0, height=IMAGE_SIZE[1] if ext == "jpg" else 0)
                    if prev_sd[channel]:
                        next(s for s in tables["sample_data"] if s["token"] == prev_sd[channel])["next"] = sd["token"]
                    prev_sd[channel] = sd["token"]
                    tables["sample_data"].append(sd)
                    if ext == "jpg":
                        pixels = rng.integers(0, 256, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8)
                        Image.fromarray(pixels).save(root / filename)
                    else:
                        world_from_sensor = _pose(ego["translation"], ego["rotation"]) @ _pose(
                            sensors["LIDAR_TOP"][1], sensors["LIDAR_TOP"][2]
                        )
                        world = np.concatenate(
                            [rng.uniform(-30, 30, (200, 2)), rng.uniform(-1.5, 2.0, (200, 1))], axis=1
                        )
                        # A few returns inside every object, so the point-in-box checks have something to test.
                        centres = [[*np.add(o[1], np.multiply(o[4], t)), 0.8] for o in objects]
                        world = np.concatenate([world, np.repeat(centres, 5, 0) + rng.normal(0, 0.15, (30, 3))])
                        local = (world - world_from_sensor[:3, 3]) @ world_from_sensor[:3, :3]
                        rows = np.concatenate(
                            [local, rng.uniform(0, 100, (len(local), 1)), np.zeros((len(local), 1))], axis=1
                        )
                        rows.astype(np.float32).tofile(root / filename)
                if not is_key:
                    continue
                sample = {"token": sample_token, "timestamp": time_us, "scene_token": scene["token"]}
                sample.update(prev=prev_sample, next="")
                if prev_sample:
                    next(s for s in tables["sample"] if s["token"] == prev_sample)["next"] = sample_token
                tables["sample"].append(sample)
                if k == 0:
                    scene["first_sample_token"] = sample_token
                scene["last_sample_token"] = sample_token
                prev_sample = sample_token
                for j, (_category, xy, yaw, size, vel) in enumerate(objects):
                    ann = {"token": token("a"), "sample_token": sample_token, "instance_token": instances[j]["token"]}
                    ann.update(translation=[xy[0] + vel[0] * t, xy[1] + vel[1] * t, 0.8], size=size)
                    ann.update(rotation=_quat_z(yaw), visibility_token="4", attribute_tokens=[])
                    ann.update(num_lidar_pts=0 if (j == 1 and k == 2) else 5, num_radar_pts=0, prev=prev_ann[j])
                    ann["next"] = ""
                    if prev_ann[j]:
                        next(a for a in tables["sample_annotation"] if a["token"] == prev_ann[j])["next"] = ann[
                            "token"
                        ]
                    prev_ann[j] = ann["token"]
                    tables["sample_annotation"].append(ann)
                    if k == 0:
                        instances[j]["first_annotation_token"] = ann["token"]
                    instances[j]["last_annotation_token"] = ann["token"]
        time_us += 10_000_000
    (root / VERSION).mkdir()
    for name, rows in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(rows))
    return root


@pytest.fixture(scope="module")
def handmade_root(tmp_path_factory) -> Path:
    return _write_dataroot(tmp_path_factory.mktemp("nuscenes_handmade"))


@pytest.fixture(scope="module")
def nusc(handmade_root):
    return load_nuscenes(handmade_root, VERSION)


def _copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _options(**overrides) -> NuScenesLoaderOptions:
    defaults = {"cameras": tuple(CAMERAS), "num_sweeps": 10}
    defaults.update(overrides)
    return NuScenesLoaderOptions(**defaults)


def _devkit_box(row: np.ndarray):
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    return Box(row[:3], [row[4], row[3], row[5]], Quaternion(axis=[0, 0, 1], angle=float(row[6])))


# ---------------------------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------------------------


def test_classes_and_category_mapping_match_the_devkit():
    from nuscenes.eval.detection.constants import DETECTION_NAMES
    from nuscenes.eval.detection.utils import category_to_detection_name

    assert NUSCENES_CLASSES[0] == "car" and len(NUSCENES_CLASSES) == 10
    assert set(NUSCENES_CLASSES) == set(DETECTION_NAMES)
    for category, name in CATEGORY_TO_CLASS.items():
        assert category_to_detection_name(category) == name
    assert category_to_detection_name("animal") is None and "animal" not in CATEGORY_TO_CLASS


# ---------------------------------------------------------------------------------------------------------------
# Loader on the hand-built dataroot
# ---------------------------------------------------------------------------------------------------------------


def test_sample_fields_shapes_dtypes_and_time_lags(nusc):
    token = split_sample_tokens(nusc, "mini_train")[2]  # third key frame: 3 sweeps behind it, 6 in the scene
    sample = load_detection_sample(nusc, token, _options())
    assert sample["sample_token"] == token
    points = sample["points"]
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 5
    key = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
    raw = read_lidar_file(Path(nusc.dataroot) / key["filename"])
    key_points = points[points[:, 4] == 0]
    raw = raw[points_in_range(raw, DEFAULT_POINT_CLOUD_RANGE)]
    np.testing.assert_allclose(key_points[:, :4], raw[:, :4])  # the key frame is already in its own frame
    lags = np.unique(points[:, 4])
    np.testing.assert_allclose(lags, [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4], atol=1e-6)
    assert sample["images"].shape == (2, 3, IMAGE_SIZE[1], IMAGE_SIZE[0]) and sample["images"].dtype == np.float32
    assert sample["images"].min() >= 0.0 and sample["images"].max() <= 1.0
    assert sample["intrinsics"].shape == (2, 3, 3) and sample["camera_to_lidar"].shape == (2, 4, 4)
    np.testing.assert_allclose(sample["image_aug_matrix"], np.broadcast_to(np.eye(3), (2, 3, 3)))
    np.testing.assert_allclose(sample["bev_aug_matrix"], np.eye(4))
    assert sample["gt_boxes"].dtype == np.float32 and sample["gt_boxes"].shape[1] == 9
    assert sample["gt_labels"].dtype == np.int64 and sample["gt_labels"].shape == sample["gt_boxes"].shape[:1]


def test_sweeps_agree_with_the_devkit_multisweep(nusc):
    from nuscenes.utils.data_classes import LidarPointCloud

    token = split_sample_tokens(nusc, "mini_train")[2]
    ours = load_detection_sample(nusc, token, _options(cameras=(), num_sweeps=4, point_cloud_range=None))["points"]
    cloud, times = LidarPointCloud.from_file_multisweep(nusc, nusc.get("sample", token), "LIDAR_TOP", "LIDAR_TOP", 5)
    theirs = np.concatenate([cloud.points.T, times.T], axis=1)
    ours, theirs = ours[ours[:, 4] > 0], theirs[theirs[:, 4] > 0]  # the devkit also drops close key-frame points
    assert len(ours) == len(theirs) > 0
    order = lambda a: a[np.lexsort(np.round(a, 3).T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(ours), order(theirs), atol=1e-3)


def test_boxes_agree_with_the_devkit_in_the_lidar_frame(nusc):
    from pyquaternion import Quaternion

    token = split_sample_tokens(nusc, "mini_train")[1]
    sample = load_detection_sample(nusc, token, _options(cameras=(), filter_empty_boxes=False, point_cloud_range=None))
    lidar_token = nusc.get("sample", token)["data"]["LIDAR_TOP"]
    _, devkit_boxes, _ = nusc.get_sample_data(lidar_token)
    devkit_boxes = [b for b in devkit_boxes if b.name in CATEGORY_TO_CLASS]
    assert len(devkit_boxes) == len(sample["gt_boxes"]) == 5
    sd = nusc.get("sample_data", lidar_token)
    cs, pose = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]), nusc.get("ego_pose", sd["ego_pose_token"])
    to_sensor = Quaternion(cs["rotation"]).inverse * Quaternion(pose["rotation"]).inverse
    for row, label, box in zip(sample["gt_boxes"], sample["gt_labels"], devkit_boxes):
        np.testing.assert_allclose(row[:3], box.center, atol=1e-4)
        np.testing.assert_allclose(row[3:6], box.wlh[[1, 0, 2]], atol=1e-5)
        heading = box.orientation.rotation_matrix[:, 0]
        assert math.isclose(math.cos(row[6]), heading[0], abs_tol=1e-5)
        assert math.isclose(math.sin(row[6]), heading[1], abs_tol=1e-5)
        velocity = to_sensor.rotate(nusc.box_velocity(box.token))
        np.testing.assert_allclose(row[7:9], velocity[:2], atol=1e-4)
        assert NUSCENES_CLASSES[label] == CATEGORY_TO_CLASS[box.name]
    assert np.abs(sample["gt_boxes"][:, 7:9]).max() > 1.0  # a moving object really is moving


def test_empty_and_out_of_range_boxes_are_dropped(nusc):
    last = split_sample_tokens(nusc, "mini_train")[2]  # one car has no points in the last frame
    everything = load_detection_sample(
        nusc, last, _options(cameras=(), filter_empty_boxes=False, point_cloud_range=None)
    )
    default = load_detection_sample(nusc, last, _options(cameras=()))
    assert len(everything["gt_boxes"]) == 5 and len(default["gt_boxes"]) == 3
    assert np.all(np.abs(default["gt_boxes"][:, :2]) <= 54) and np.abs(everything["gt_boxes"][:, :2]).max() > 54
    assert np.all(np.abs(default["points"][:, :2]) < 54)


def test_camera_extrinsics_and_intrinsics_project_boxes_like_the_devkit(nusc):
    from nuscenes.utils.geometry_utils import BoxVisibility

    token = split_sample_tokens(nusc, "mini_train")[1]
    sample = load_detection_sample(nusc, token, _options(filter_empty_boxes=False, point_cloud_range=None))
    centres = np.concatenate([sample["gt_boxes"][:, :3], np.ones((len(sample["gt_boxes"]), 1))], axis=1)
    for c, camera in enumerate(CAMERAS):
        cam_token = nusc.get("sample", token)["data"][camera]
        _, devkit_boxes, intrinsic = nusc.get_sample_data(cam_token, box_vis_level=BoxVisibility.NONE)
        devkit_boxes = [b for b in devkit_boxes if b.name in CATEGORY_TO_CLASS]
        in_camera = centres @ np.linalg.inv(sample["camera_to_lidar"][c]).T
        np.testing.assert_allclose(in_camera[:, :3], [b.center for b in devkit_boxes], atol=1e-3)
        np.testing.assert_allclose(sample["intrinsics"][c], intrinsic)


def test_augmentation_is_consistent_across_points_boxes_and_images(nusc):
    from nuscenes.utils.geometry_utils import points_in_box

    token = split_sample_tokens(nusc, "mini_train")[1]
    plain = load_detection_sample(nusc, token, _options(point_cloud_range=None))
    seen_flips = set()
    for seed in range(6):
        options = _options(augment=True, point_cloud_range=None, image_size=(48, 24), bev_rotation_range=45.0)
        aug = load_detection_sample(nusc, token, options, np.random.default_rng(seed))
        matrix = aug["bev_aug_matrix"]
        seen_flips.add(bool(np.linalg.det(matrix[:3, :3]) < 0))
        assert not np.allclose(matrix, np.eye(4))
        np.testing.assert_allclose(aug["points"][:, :3], augment_points(plain["points"], matrix)[:, :3], atol=1e-4)
        np.testing.assert_array_equal(aug["points"][:, 3:], plain["points"][:, 3:])
        assert len(aug["gt_boxes"]) == len(plain["gt_boxes"]) > 0
        for before, after in zip(plain["gt_boxes"], aug["gt_boxes"]):
            inside_before = points_in_box(_devkit_box(before), plain["points"][:, :3].T)
            inside_after = points_in_box(_devkit_box(after), aug["points"][:, :3].T)
            assert inside_before.sum() >= 4
            np.testing.assert_array_equal(inside_before, inside_after)
            speed_ratio = np.linalg.norm(after[7:9]) / max(np.linalg.norm(before[7:9]), 1e-9)
            if np.linalg.norm(before[7:9]) > 0:
                assert math.isclose(speed_ratio, np.cbrt(abs(np.linalg.det(matrix[:3, :3]))), rel_tol=1e-4)
        # Image augmentation: the image really is the original warped by the recorded matrix.
        assert aug["images"].shape == (2, 3, 24, 48)
        assert not np.allclose(aug["image_aug_matrix"], np.eye(3))
        for c, camera in enumerate(CAMERAS):
            path = Path(nusc.dataroot) / nusc.get("sample_data", nusc.get("sample", token)["data"][camera])["filename"]
            from hf_crossdistill.data.nuscenes import warp_image

            expected = warp_image(
                Image.open(path).convert("RGB"), aug["image_aug_matrix"][c].astype(np.float64), (48, 24)
            )
            np.testing.assert_allclose(aug["images"][c], expected, atol=1e-6)
        np.testing.assert_allclose(aug["intrinsics"], plain["intrinsics"])
        np.testing.assert_allclose(aug["camera_to_lidar"], plain["camera_to_lidar"], atol=1e-6)
    assert seen_flips == {False, True}


def test_image_aug_matrix_maps_a_projected_point_to_where_the_warped_image_shows_it():
    from hf_crossdistill.data.nuscenes import warp_image

    original = np.zeros((90, 160, 3), dtype=np.uint8)
    u, v = 112.0, 31.0  # a bright 6 × 6 square centred here (continuous pixel coordinates)
    original[int(v) - 3 : int(v) + 3, int(u) - 3 : int(u) + 3] = 255
    image = Image.fromarray(original)
    for flip in (False, True):
        for rotation in (0.0, 0.09):
            matrix = image_augmentation_matrix((0.8, 0.8), (10.0, 20.0), flip, rotation, (100, 50))
            warped = warp_image(image, matrix, (100, 50))[0]
            rows, cols = np.nonzero(warped > 0.5)
            expected = matrix @ np.array([u, v, 1.0])
            assert abs(cols.mean() + 0.5 - expected[0]) < 0.8 and abs(rows.mean() + 0.5 - expected[1]) < 0.8


def test_bev_matrix_composition():
    m = bev_augmentation_matrix(math.pi / 2, 2.0, flip_x=True)
    np.testing.assert_allclose(m[:3, :3] @ [1.0, 0.0, 1.0], [0.0, -2.0, 2.0], atol=1e-6)
    boxes = np.array([[1.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 1.0, 0.0]], dtype=np.float32)
    out = augment_boxes(boxes, m)
    np.testing.assert_allclose(out[0, :3], [0.0, -2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 3:6], [8.0, 4.0, 3.0], atol=1e-5)
    assert math.isclose(out[0, 6], -math.pi / 2, abs_tol=1e-6)
    np.testing.assert_allclose(out[0, 7:9], [0.0, -2.0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Streaming dataset and sharding
# ---------------------------------------------------------------------------------------------------------------


def test_iterable_dataset_shards_by_scene_without_loss_or_duplicates(handmade_root, nusc):
    from datasets.distributed import split_dataset_by_node

    ds = nuscenes_detection_dataset(handmade_root, VERSION, "mini_train", cameras=(), num_sweeps=0)
    assert ds.n_shards == len(SCENES)
    expected = split_sample_tokens(nusc, "mini_train")
    assert [s["sample_token"] for s in ds] == expected
    per_rank = [[s["sample_token"] for s in split_dataset_by_node(ds, rank, 2)] for rank in range(2)]
    assert all(per_rank) and sorted(per_rank[0] + per_rank[1]) == sorted(expected)
    assert not set(per_rank[0]) & set(per_rank[1])


def test_torch_dataloader_with_workers_and_collator(handmade_root, nusc):
    ds = nuscenes_detection_dataset(
        handmade_root, VERSION, "mini_train", cameras=tuple(CAMERAS), num_sweeps=2, augment=True, image_size=(32, 16)
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_bev_batch)
    tokens = []
    for batch in loader:
        tokens += batch["sample_token"]
        assert batch["images"].shape[1:] == (2, 3, 16, 32) and batch["bev_aug_matrix"].shape[1:] == (4, 4)
        assert batch["gt_boxes"].shape[:2] == batch["gt_mask"].shape
    assert sorted(tokens) == sorted(split_sample_tokens(nusc, "mini_train"))


def test_augmentation_is_reproducible_by_seed_and_varies_between_passes(handmade_root):
    def matrices(ds):
        return [s["bev_aug_matrix"] for s in ds]

    kwargs = {"cameras": (), "num_sweeps": 0, "augment": True, "seed": 3}
    first = nuscenes_detection_dataset(handmade_root, VERSION, "mini_train", **kwargs)
    again = nuscenes_detection_dataset(handmade_root, VERSION, "mini_train", **kwargs)
    epoch1, epoch2 = matrices(first), matrices(first)
    np.testing.assert_allclose(np.stack(epoch1), np.stack(matrices(again)))
    assert not np.allclose(np.stack(epoch1), np.stack(epoch2))


# ---------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------


def test_collator_builds_the_batch_contract_from_numpy_lists_and_tensors():
    a = {
        "sample_token": "a",
        "points": np.ones((3, 5), np.float32),
        "gt_boxes": np.arange(18, dtype=np.float32).reshape(2, 9),
        "gt_labels": np.array([1, 4]),
        "bev_aug_matrix": np.eye(4),
        "images": np.zeros((2, 3, 4, 5)),
    }
    b = {
        "sample_token": "b",
        "points": [[2.0] * 5],
        "gt_boxes": [],
        "gt_labels": [],
        "bev_aug_matrix": torch.eye(4),
        "images": torch.ones(2, 3, 4, 5),
    }
    batch = collate_bev_batch([a, b])
    assert batch["points"].shape == (4, 6) and batch["points"].dtype == torch.float32
    torch.testing.assert_close(batch["points"][:, 0], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert batch["gt_boxes"].shape == (2, 2, 9) and batch["gt_labels"].dtype == torch.int64
    assert batch["gt_mask"].tolist() == [[True, True], [False, False]]
    assert torch.all(batch["gt_boxes"][1] == 0) and batch["gt_labels"][0].tolist() == [1, 4]
    assert batch["images"].shape == (2, 2, 3, 4, 5) and batch["bev_aug_matrix"].shape == (2, 4, 4)
    assert batch["sample_token"] == ["a", "b"]
    empty = collate_bev_batch([dict(b, gt_boxes=np.zeros((0, 9)))])
    assert empty["gt_boxes"].shape == (1, 1, 9) and not empty["gt_mask"].any()


def test_collator_rejects_bad_input():
    good = {"points": np.ones((3, 5)), "gt_boxes": np.zeros((1, 9)), "gt_labels": [0]}
    with pytest.raises(ValueError, match="non-empty list"):
        collate_bev_batch([])
    with pytest.raises(KeyError, match="gt_boxes"):
        collate_bev_batch([{"points": np.ones((3, 5)), "gt_labels": []}])
    with pytest.raises(ValueError, match="1 boxes but 2 labels"):
        collate_bev_batch([dict(good, gt_labels=[0, 1])])
    with pytest.raises(ValueError, match="different shapes"):
        collate_bev_batch([dict(good, images=np.zeros((6, 3, 4, 4))), dict(good, images=np.zeros((5, 3, 4, 4)))])
    with pytest.raises(KeyError, match="some samples but not all"):
        collate_bev_batch([dict(good, images=np.zeros((6, 3, 4, 4))), good])


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_version_or_split(handmade_root):
    with pytest.raises(ValueError, match="unknown nuScenes version 'v2.0'"):
        nuscenes_detection_dataset(handmade_root, "v2.0", "train")
    with pytest.raises(ValueError, match="unknown split 'train' for nuScenes version 'v1.0-mini'"):
        nuscenes_detection_dataset(handmade_root, VERSION, "train")
    with pytest.raises(NuScenesDataError, match="holds no scene of split 'mini_val'"):
        nuscenes_detection_dataset(handmade_root, VERSION, "mini_val")


def test_missing_table_is_named(handmade_root, tmp_path):
    root = _copy_root(handmade_root, tmp_path / "root")
    (root / VERSION / "sample_annotation.json").unlink()
    with pytest.raises(NuScenesDataError, match=r"'sample_annotation' is missing: .*sample_annotation\.json"):
        nuscenes_detection_dataset(root, VERSION, "mini_train")
    with pytest.raises(NuScenesDataError, match="sample_annotation"):
        load_nuscenes(root, VERSION)
    (root / VERSION / "sample_annotation.json").write_text("[{")
    with pytest.raises(NuScenesDataError, match=r"sample_annotation\.json is not valid JSON"):
        load_nuscenes(root, VERSION)


def test_truncated_lidar_file_is_named(handmade_root, tmp_path):
    root = _copy_root(handmade_root, tmp_path / "root")
    nusc = load_nuscenes(root, VERSION)
    token = split_sample_tokens(nusc, "mini_train")[0]
    path = root / nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])["filename"]
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(NuScenesDataError, match=rf"{path.name} is truncated"):
        load_detection_sample(nusc, token, _options(cameras=()))
    ds = nuscenes_detection_dataset(root, VERSION, "mini_train", cameras=())
    with pytest.raises(NuScenesDataError, match=rf"{path.name} is truncated"):
        next(iter(ds))


def test_missing_image_is_named(handmade_root, tmp_path):
    root = _copy_root(handmade_root, tmp_path / "root")
    nusc = load_nuscenes(root, VERSION)
    token = split_sample_tokens(nusc, "mini_train")[0]
    path = root / nusc.get("sample_data", nusc.get("sample", token)["data"]["CAM_BACK"])["filename"]
    path.unlink()
    with pytest.raises(NuScenesDataError, match=rf"camera image is missing: .*{path.name}"):
        load_detection_sample(nusc, token, _options())
    with pytest.raises(NuScenesDataError, match="has no CAM_FRONT_LEFT image"):
        load_detection_sample(nusc, token, _options(cameras=("CAM_FRONT_LEFT",)))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="num_sweeps"):
        NuScenesLoaderOptions(num_sweeps=-1)
    with pytest.raises(ValueError, match="point_cloud_range"):
        NuScenesLoaderOptions(point_cloud_range=(0, 0, 0, -1, 1, 1))
    with pytest.raises(ValueError, match="image_size"):
        NuScenesLoaderOptions(image_size=(0, 10))


# ---------------------------------------------------------------------------------------------------------------
# End to end on the synthetic world generator's dataroot
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(request):
    try:
        return request.getfixturevalue("tiny_nuscenes_root")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_nuscenes_root fixture (synthetic nuScenes generator) is not available")


def test_synthetic_dataroot_streams_collated_augmented_batches(synthetic_root):
    from nuscenes.utils.geometry_utils import points_in_box

    nusc = load_nuscenes(synthetic_root, VERSION)
    labels_seen = set()
    for split in ("mini_train", "mini_val"):
        ds = nuscenes_detection_dataset(synthetic_root, VERSION, split, augment=True, image_size=(88, 32), seed=1)
        samples = list(ds)
        assert [s["sample_token"] for s in samples] == split_sample_tokens(nusc, split)
        batch = collate_bev_batch(samples[:2])
        assert batch["images"].shape == (2, 6, 3, 32, 88) and batch["intrinsics"].shape == (2, 6, 3, 3)
        assert batch["camera_to_lidar"].shape == (2, 6, 4, 4) and batch["image_aug_matrix"].shape == (2, 6, 3, 3)
        assert batch["points"].shape[1] == 6 and set(batch["points"][:, 0].tolist()) == {0.0, 1.0}
        last = samples[-1]
        lags = np.unique(last["points"][:, 4])
        assert lags[0] == 0 and len(lags) == 11 and lags[-1] < 0.6  # key frame + 10 sweeps at 20 Hz
        for s in samples:
            labels_seen.update(s["gt_labels"].tolist())
        # Points inside each box before and after augmentation are the same points.
        plain = load_detection_sample(nusc, last["sample_token"], _options(cameras=(), point_cloud_range=None))
        aug = load_detection_sample(
            nusc,
            last["sample_token"],
            _options(cameras=(), point_cloud_range=None, augment=True),
            np.random.default_rng(5),
        )
        for before, after in zip(plain["gt_boxes"], aug["gt_boxes"]):
            inside = points_in_box(_devkit_box(before), plain["points"][:, :3].T)
            inside_after = points_in_box(_devkit_box(after), aug["points"][:, :3].T)
            # Ground returns lie exactly on box bottoms, where float32 rounding may flip a point or two.
            assert (inside != inside_after).sum() <= 2 and inside.sum() > 0
    assert labels_seen == set(range(len(NUSCENES_CLASSES)))

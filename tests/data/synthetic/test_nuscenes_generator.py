"""The synthetic nuScenes generator, checked through the real nuscenes-devkit."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from fixtures_nuscenes import (
    TINY_NUSCENES_IMAGE_SIZE,
    TINY_NUSCENES_KEYFRAMES_PER_SCENE,
    TINY_NUSCENES_SWEEPS_PER_KEYFRAME,
    TINY_NUSCENES_VERSION,
)

from hf_crossdistill.data.nuscenes import NUSCENES_CLASSES
from hf_crossdistill.data.synthetic import nuscenes_generator
from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes, split_scene_names

pytest.importorskip("nuscenes")
from nuscenes.eval.detection.utils import category_to_detection_name  # noqa: E402
from nuscenes.nuscenes import NuScenes  # noqa: E402
from nuscenes.utils import splits  # noqa: E402
from nuscenes.utils.data_classes import LidarPointCloud  # noqa: E402
from nuscenes.utils.geometry_utils import points_in_box, view_points  # noqa: E402

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
MICRO = {"num_scenes": 2, "image_size": (32, 16), "scene_duration_s": 1.0, "sweeps_per_keyframe": 2}
MICRO_LIDAR = {"lidar_azimuth_resolution_deg": 2.0}


@pytest.fixture(scope="module")
def nusc(tiny_nuscenes_root: Path) -> NuScenes:
    return NuScenes(TINY_NUSCENES_VERSION, str(tiny_nuscenes_root), verbose=False)


def test_dataroot_loads_with_the_devkit(nusc: NuScenes, tiny_nuscenes_root: Path):
    names = sorted(s["name"] for s in nusc.scene)
    assert len(names) == 2
    assert sum(n in splits.mini_train for n in names) == 1 and sum(n in splits.mini_val for n in names) == 1
    assert len(nusc.sample) == 2 * TINY_NUSCENES_KEYFRAMES_PER_SCENE
    for sample in nusc.sample:
        assert set(sample["data"]) == {"LIDAR_TOP", *CAMERAS}
        assert len(sample["anns"]) > 0
    # Every file the tables name exists and has the right format.
    for sd in nusc.sample_data:
        path = tiny_nuscenes_root / sd["filename"]
        assert path.is_file(), sd["filename"]
        if sd["fileformat"] == "pcd":
            assert path.stat().st_size % 20 == 0 and path.stat().st_size > 0
            assert sd["filename"].startswith("samples/" if sd["is_key_frame"] else "sweeps/")
        else:
            from PIL import Image

            with Image.open(path) as im:
                assert im.size == (sd["width"], sd["height"]) == TINY_NUSCENES_IMAGE_SIZE
    # The map masks the devkit opens lazily exist and mark the road as drivable at the ego positions.
    for log in nusc.log:
        mask = nusc.get("map", log["map_token"])["mask"]
        scene = next(s for s in nusc.scene if s["log_token"] == log["token"])
        sample = nusc.get("sample", scene["first_sample_token"])
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
        assert mask.is_on_mask(pose["translation"][0], pose["translation"][1])[0]


def test_tables_are_mutually_consistent(nusc: NuScenes):
    for scene in nusc.scene:
        chain, token = [], scene["first_sample_token"]
        while token:
            chain.append(nusc.get("sample", token))
            token = chain[-1]["next"]
        assert len(chain) == scene["nbr_samples"] and chain[-1]["token"] == scene["last_sample_token"]
        assert all(b["timestamp"] - a["timestamp"] == 500_000 for a, b in zip(chain, chain[1:]))
        # LIDAR_TOP at 20 Hz: key frame, then the sweeps, then the next key frame.
        sd = nusc.get("sample_data", chain[0]["data"]["LIDAR_TOP"])
        lidar = [sd]
        while sd["next"]:
            sd = nusc.get("sample_data", sd["next"])
            assert nusc.get("sample_data", sd["prev"])["token"] == lidar[-1]["token"]
            lidar.append(sd)
        keys = [s for s in lidar if s["is_key_frame"]]
        assert [s["token"] for s in keys] == [c["data"]["LIDAR_TOP"] for c in chain]
        assert len(lidar) == (len(chain) - 1) * (TINY_NUSCENES_SWEEPS_PER_KEYFRAME + 1) + 1
        assert np.all(np.diff([s["timestamp"] for s in lidar]) == 50_000)
        for sample, key in zip(chain, keys):
            assert key["timestamp"] == sample["timestamp"]
            pose = nusc.get("ego_pose", key["ego_pose_token"])
            assert pose["timestamp"] == key["timestamp"]
    for inst in nusc.instance:
        anns, token = [], inst["first_annotation_token"]
        while token:
            anns.append(nusc.get("sample_annotation", token))
            token = anns[-1]["next"]
        assert len(anns) == inst["nbr_annotations"] and anns[-1]["token"] == inst["last_annotation_token"]
        assert all(a["instance_token"] == inst["token"] for a in anns)
        stamps = [nusc.get("sample", a["sample_token"])["timestamp"] for a in anns]
        assert np.all(np.diff(stamps) == 500_000)  # consecutive key frames, so the devkit can derive velocity
        assert all(len(a["attribute_tokens"]) <= 1 and a["visibility_token"] in "1234" for a in anns)


def test_num_lidar_pts_agrees_with_devkit_points_in_box(nusc: NuScenes):
    checked = with_points = 0
    for sample in nusc.sample:
        path, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        cloud = LidarPointCloud.from_file(path)
        for box in boxes:
            expected = nusc.get("sample_annotation", box.token)["num_lidar_pts"]
            assert int(points_in_box(box, cloud.points[:3]).sum()) == expected, box.token
            checked += 1
            with_points += expected > 0
    assert checked > 50 and with_points > checked // 3


def test_every_detection_class_has_points_in_every_split(nusc: NuScenes):
    seen = defaultdict(set)
    for ann in nusc.sample_annotation:
        if ann["num_lidar_pts"] > 0:
            scene = nusc.get("scene", nusc.get("sample", ann["sample_token"])["scene_token"])
            split = "mini_train" if scene["name"] in splits.mini_train else "mini_val"
            seen[split].add(category_to_detection_name(ann["category_name"]))
    assert seen["mini_train"] == set(NUSCENES_CLASSES)
    assert seen["mini_val"] == set(NUSCENES_CLASSES)


def test_visible_box_centres_project_into_a_camera(nusc: NuScenes):
    fully_visible = 0
    for sample in nusc.sample:
        inside = defaultdict(bool)
        for cam in CAMERAS:
            sd = nusc.get("sample_data", sample["data"][cam])
            _, boxes, intrinsic = nusc.get_sample_data(sd["token"])
            for box in boxes:
                centre = box.center[:, None]
                if centre[2, 0] <= 0.1:
                    continue
                u, v = view_points(centre, intrinsic, normalize=True)[:2, 0]
                inside[box.token] |= bool(0 <= u < sd["width"] and 0 <= v < sd["height"])
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            if ann["visibility_token"] == "4":
                fully_visible += 1
                assert inside[token], f"{ann['category_name']} with visibility 4 is in no camera image"
    assert fully_visible > 20


def test_attributes_agree_with_the_devkit_velocity(nusc: NuScenes):
    for ann in nusc.sample_annotation:
        if not ann["attribute_tokens"] or ann["prev"] == "" and ann["next"] == "":
            continue
        attribute = nusc.get("attribute", ann["attribute_tokens"][0])["name"]
        speed = float(np.linalg.norm(nusc.box_velocity(ann["token"])[:2]))
        if attribute in ("vehicle.moving", "pedestrian.moving"):
            assert speed > 0.5, (attribute, speed)
        elif attribute in ("vehicle.parked", "vehicle.stopped", "pedestrian.standing", "cycle.without_rider"):
            assert speed < 1e-6, (attribute, speed)
    names = {a["name"] for a in nusc.attribute}
    used = {nusc.get("attribute", t)["name"] for a in nusc.sample_annotation for t in a["attribute_tokens"]}
    assert {"vehicle.moving", "vehicle.parked", "pedestrian.moving", "pedestrian.standing"} <= used <= names
    assert {"cycle.with_rider", "cycle.without_rider"} <= used


def test_lidar_points_are_in_the_sensor_frame(nusc: NuScenes):
    sd = nusc.get("sample_data", nusc.sample[0]["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    points = np.fromfile(Path(nusc.dataroot) / sd["filename"], dtype=np.float32).reshape(-1, 5)
    # The ground (ego z = 0) lies the mounting height below the sensor; the lowest beam mostly hits it.
    assert np.median(points[points[:, 4] == 0, 2]) == pytest.approx(-cs["translation"][2], abs=0.05)
    assert np.all(np.hypot(points[:, 0], points[:, 1]) <= 71.0)
    rings = points[:, 4]
    assert np.array_equal(rings, np.round(rings)) and set(np.unique(rings).astype(int)) <= set(range(32))
    # Beam elevation grows with the ring index (32 beams from about -30.7 to +10.7 degrees).
    elevation = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    per_ring = [np.median(elevation[rings == r]) for r in np.unique(rings)]
    assert np.all(np.diff(per_ring) > 0) and per_ring[0] == pytest.approx(-30.67, abs=0.5)


def test_same_seed_gives_identical_dataroots(tmp_path: Path):
    a = make_synthetic_nuscenes(tmp_path / "a", seed=3, **MICRO, **MICRO_LIDAR)
    b = make_synthetic_nuscenes(tmp_path / "b", seed=3, **MICRO, **MICRO_LIDAR)
    c = make_synthetic_nuscenes(tmp_path / "c", seed=4, **MICRO, **MICRO_LIDAR)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        if rel.suffix in (".json", ".bin"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    table = json.loads((a / "v1.0-mini" / "sample_annotation.json").read_text())
    assert table != json.loads((c / "v1.0-mini" / "sample_annotation.json").read_text())


@pytest.mark.slow
def test_parallel_workers_give_the_same_dataroot(tmp_path: Path):
    a = make_synthetic_nuscenes(tmp_path / "a", seed=1, **MICRO, **MICRO_LIDAR)
    b = make_synthetic_nuscenes(tmp_path / "b", seed=1, num_workers=2, **MICRO, **MICRO_LIDAR)
    for rel in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        if rel.suffix in (".json", ".bin"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_a_crash_leaves_no_dataroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = nuscenes_generator._generate_scene

    def crash_on_second_scene(root, seed, scene_index, *args, **kwargs):
        if scene_index == 1:
            raise RuntimeError("simulated crash")
        return real(root, seed, scene_index, *args, **kwargs)

    monkeypatch.setattr(nuscenes_generator, "_generate_scene", crash_on_second_scene)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_synthetic_nuscenes(tmp_path / "root", **MICRO, **MICRO_LIDAR)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_refuses_without_it(tmp_path: Path):
    root = make_synthetic_nuscenes(tmp_path / "root", seed=0, **MICRO, **MICRO_LIDAR)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic_nuscenes(root, seed=1, **MICRO, **MICRO_LIDAR)
    make_synthetic_nuscenes(root, seed=1, overwrite=True, **MICRO, **MICRO_LIDAR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    NuScenes("v1.0-mini", str(root), verbose=False)


def test_trainval_uses_train_and_val_scene_names(tmp_path: Path):
    names = split_scene_names("v1.0-trainval", 12)
    assert {s for _, s in names} == {"train", "val"}
    assert all(n in (splits.train if s == "train" else splits.val) for n, s in names)
    assert len({n for n, _ in names}) == 12
    root = make_synthetic_nuscenes(tmp_path / "tv", version="v1.0-trainval", seed=0, **MICRO, **MICRO_LIDAR)
    nusc = NuScenes("v1.0-trainval", str(root), verbose=False)
    got = {s["name"] for s in nusc.scene}
    assert len(got & set(splits.train)) == 1 and len(got & set(splits.val)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"version": "v1.0-test"}, "version"),
        ({"image_size": (0, 90)}, "image_size"),
        ({"image_size": (160,)}, "image_size"),
        ({"num_scenes": 11}, "num_scenes=11 exceeds"),
        ({"num_scenes": 1}, "num_scenes"),
        ({"scene_duration_s": 0.2}, "scene_duration_s"),
        ({"lidar_dropout": 1.0}, "lidar_dropout"),
        ({"sweeps_per_keyframe": -1}, "sweeps_per_keyframe"),
        ({"num_workers": 0}, "num_workers"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        make_synthetic_nuscenes(tmp_path / "root", **kwargs)
    assert not (tmp_path / "root").exists()


def test_trainval_with_a_dev_split_draws_train_detect_train_track_and_val():
    names = split_scene_names("v1.0-trainval", 62, num_val_scenes=24, num_dev_scenes=6)
    by_split = {s: [n for n, t in names if t == s] for s in ("train_detect", "train_track", "val")}
    assert {k: len(v) for k, v in by_split.items()} == {"train_detect": 32, "train_track": 6, "val": 24}
    for split, members in by_split.items():
        assert set(members) <= set(getattr(splits, split))
    assert len({n for n, _ in names}) == 62
    # The dev scenes are held out of training and spread over the scene indices, not bunched at the end.
    assert not set(by_split["train_track"]) & set(by_split["train_detect"])
    dev_positions = [i for i, (_, s) in enumerate(names) if s == "train_track"]
    assert dev_positions[0] < 62 // 6 and dev_positions[-1] > 62 - 62 // 6
    # Only the val size set: no dev scene.
    assert {s for _, s in split_scene_names("v1.0-trainval", 10, num_val_scenes=4)} == {"train_detect", "val"}
    # The default selection is unchanged (the first scenes of the original interleaving).
    assert split_scene_names("v1.0-trainval", 5) == [
        ("scene-0001", "train"),
        ("scene-0003", "val"),
        ("scene-0002", "train"),
        ("scene-0004", "train"),
        ("scene-0005", "train"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"version": "v1.0-mini", "num_scenes": 4, "num_dev_scenes": 1}, "v1.0-trainval"),
        ({"num_scenes": 4, "num_val_scenes": 2, "num_dev_scenes": 2}, "leaves 0 training"),
        ({"num_scenes": 4, "num_val_scenes": 0}, "leaves"),
        ({"num_scenes": 4, "num_dev_scenes": -1}, "num_dev_scenes"),
        ({"num_scenes": 400, "num_val_scenes": 200}, "200 scene"),
    ],
)
def test_bad_split_sizes_are_rejected(tmp_path: Path, kwargs: dict, match: str):
    kwargs = {"version": "v1.0-trainval", **kwargs}
    with pytest.raises(ValueError, match=match):
        make_synthetic_nuscenes(tmp_path / "root", **kwargs)
    assert not (tmp_path / "root").exists()


def test_a_dev_split_dataroot_loads_with_the_devkit_split_names(tmp_path: Path):
    root = make_synthetic_nuscenes(
        tmp_path / "tv",
        version="v1.0-trainval",
        num_val_scenes=1,
        num_dev_scenes=1,
        seed=0,
        **{**MICRO, "num_scenes": 3},
        **MICRO_LIDAR,
    )
    nusc = NuScenes("v1.0-trainval", str(root), verbose=False)
    got = {s["name"] for s in nusc.scene}
    for split in ("train_detect", "train_track", "val"):
        assert len(got & set(getattr(splits, split))) == 1, split

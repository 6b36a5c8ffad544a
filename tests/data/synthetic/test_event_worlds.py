"""Synthetic event worlds: written in the real layouts, readable by the format readers, labels aligned in time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from testing_utils import load_script

from hf_crossdistill.data.events import read_events
from hf_crossdistill.data.events.datasets import DSEC_TO_DDD17_LABELS
from hf_crossdistill.data.synthetic import event_worlds
from hf_crossdistill.data.synthetic.event_render import (
    DDD17_CLASSES,
    DSEC_CLASSES,
    DSEC_TO_DDD17,
    make_driving_scene,
    render_driving_frame,
)
from hf_crossdistill.data.synthetic.event_worlds import (
    DavisApsModel,
    make_synthetic_ddd17,
    make_synthetic_ncaltech,
)


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_ddd17_recordings_read_back_with_aligned_labels_and_images(tiny_ddd17_root):
    info = json.loads((tiny_ddd17_root / "synthetic_info.json").read_text())
    h, w = info["sensor_size"]
    assert info["label_rows"] == round(h * 200 / 260)
    recs = sorted(p.parent for p in tiny_ddd17_root.rglob("events.dat.t"))
    assert [r.relative_to(tiny_ddd17_root).as_posix() for r in recs] == ["test/rec_001", "train/rec_000"]
    seen = set()
    for rec in recs:
        ev = read_events(rec, "ddd17_ess", sensor_size=(h, w))
        assert len(ev) > 1000
        assert np.all(np.diff(ev.t) >= 0)
        assert ev.t.min() >= 0 and ev.t.max() <= 400_000
        assert set(np.unique(ev.p).tolist()) == {-1, 1}
        index = np.load(rec / "index" / "index_50ms.npy")
        imgs = sorted((rec / "imgs").glob("img_*.png"))
        masks = sorted((rec / "segmentation_masks").glob("segmentation_*.png"))
        assert len(index) == len(imgs) == len(masks) == 10
        np.testing.assert_array_equal(index[:, 0] // 1000, 40_000 * np.arange(1, 11))  # 25 Hz APS readouts
        for k in range(len(index)):
            t_ns, idx, idx_before = index[k]
            window = ev.t[idx_before:idx]
            assert len(window) > 0  # the car moves: every 50 ms window before a label has events
            assert window.min() >= t_ns // 1000 - 50_000 and window.max() < t_ns // 1000
        img, mask = _png(imgs[0]), _png(masks[0])
        assert img.dtype == np.uint8 and img.shape == (h, w)
        assert mask.dtype == np.uint8 and mask.shape == (info["label_rows"], w)
        for m in masks:
            seen |= set(np.unique(_png(m)).tolist())
    assert seen == set(range(len(DDD17_CLASSES)))  # every class appears, nothing else (no stray ids)


def test_dsec_sequences_read_back_with_timestamps(tiny_dsec_root):
    info = json.loads((tiny_dsec_root / "synthetic_info.json").read_text())
    seen = set()
    for seq in sorted(tiny_dsec_root.glob("*/seq_*")):
        ev = read_events(seq / "events" / "left" / "events.h5", "dsec_h5", sensor_size=tuple(info["sensor_size"]))
        origin = info["time_origin_us"]
        assert ev.t.min() >= origin and ev.t.max() <= origin + 300_000
        sem = seq / "semantic" / "left" / "11classes"
        ts = np.loadtxt(sem / "timestamps.txt", dtype=np.int64)
        labels = sorted((sem / "data").glob("*.png"))
        assert len(ts) == len(labels) == 6
        np.testing.assert_array_equal(ts, origin + 50_000 * np.arange(1, 7))  # 20 Hz
        for f in labels:
            lab = _png(f)
            assert lab.shape == tuple(info["sensor_size"])
            seen |= set(np.unique(lab).tolist())
    assert seen <= set(range(len(DSEC_CLASSES)))
    assert set(DSEC_TO_DDD17[sorted(seen)].tolist()) == set(range(len(DDD17_CLASSES)))
    assert info["to_ddd17"]["road"] == "flat" and info["to_ddd17"]["car"] == "vehicle"


def test_class_mappings_agree():
    np.testing.assert_array_equal(DSEC_TO_DDD17, DSEC_TO_DDD17_LABELS)
    named = {DSEC_CLASSES[i]: DDD17_CLASSES[j] for i, j in enumerate(DSEC_TO_DDD17)}
    assert (
        named["person"] == "human" and named["traffic sign"] == "object" and named["background"] == "construction+sky"
    )


def test_source_images_are_labeled_and_cover_every_class(tiny_source_images_root):
    images = sorted((tiny_source_images_root / "train" / "images").glob("*.png"))
    assert len(images) == 7 and len(list((tiny_source_images_root / "val" / "images").glob("*.png"))) == 1
    seen = set()
    for img in images:
        rgb = _png(img)
        lab = _png(img.parents[1] / "labels" / img.name)
        fine = _png(img.parents[1] / "labels_dsec" / img.name)
        assert rgb.shape == (64, 128, 3) and lab.shape == (64, 128)
        np.testing.assert_array_equal(DSEC_TO_DDD17[fine], lab)
        seen |= set(np.unique(lab).tolist())
    assert seen == set(range(6))


def test_ncaltech_bins_read_back_in_class_folders(tiny_ncaltech_root, tiny_recognition_source_root):
    info = json.loads((tiny_ncaltech_root / "synthetic_info.json").read_text())
    assert info["classes"] == ["disc", "ring", "square"]
    for name in info["classes"]:
        files = sorted((tiny_ncaltech_root / name).glob("*.bin"))
        assert len(files) == 4
        for f in files:
            ev = read_events(f, "ncaltech_bin", sensor_size=(60, 80))
            assert len(ev) > 100
            assert ev.t.max() <= 90_000  # three 30 ms saccades
            # events come during all three saccades
            assert np.histogram(ev.t, bins=[0, 30_000, 60_000, 90_001])[0].min() > 0
        sources = sorted((tiny_recognition_source_root / name).glob("*.png"))
        assert len(sources) == 4 and _png(sources[0]).shape == (60, 80, 3)


def test_generation_is_deterministic_by_seed(tmp_path):
    kw = {"num_classes": 2, "samples_per_class": 1, "sensor_size": (30, 40), "saccade_ms": 10.0, "render_fps": 500.0}
    a = make_synthetic_ncaltech(tmp_path / "a", seed=1, **kw)
    b = make_synthetic_ncaltech(tmp_path / "b", seed=1, **kw)
    c = make_synthetic_ncaltech(tmp_path / "c", seed=2, **kw)
    for f in sorted(a.rglob("*.bin")):
        rel = f.relative_to(a)
        assert f.read_bytes() == (b / rel).read_bytes()
        assert f.read_bytes() != (c / rel).read_bytes()


def test_generation_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "ddd17"
    calls = []

    def crash(*args, **kwargs):
        calls.append(args[0])
        raise RuntimeError("disk full")

    monkeypatch.setattr(event_worlds, "write_events", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        make_synthetic_ddd17(out, num_recordings=1, duration_s=0.08, sensor_size=(26, 35), render_fps=50.0)
    assert calls and not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    monkeypatch.undo()
    make_synthetic_ddd17(out, num_recordings=1, duration_s=0.08, sensor_size=(26, 35), render_fps=50.0)
    with pytest.raises(FileExistsError):
        make_synthetic_ddd17(out, num_recordings=1, duration_s=0.08, sensor_size=(26, 35), render_fps=50.0)
    make_synthetic_ddd17(
        out, num_recordings=1, duration_s=0.08, sensor_size=(26, 35), render_fps=50.0, seed=3, overwrite=True
    )
    assert json.loads((out / "synthetic_info.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddd17"]


def test_aps_model_clips_blurs_and_adapts():
    aps = DavisApsModel(seed=0)
    frames = np.full((3, 8, 8), 0.5)
    frames[:, :, :4] = 0.05  # dark half, bright half
    frames[:, 0, 0] = 500.0  # the sun
    img = aps.capture(frames, np.array([0.0, 0.002, 0.004]), 0.004, 0.04)
    assert img[0, 0] == 255 and img[4:, 4:].mean() > 3 * img[4:, :4].mean()
    # a moving edge inside the exposure is smeared into intermediate grey levels
    edge = np.zeros((6, 4, 12))
    for k in range(6):
        edge[k, :, : 3 + k] = 0.08  # x 10 ms exposure: 0.8 of full scale, below clipping
    blurred = DavisApsModel(seed=0, read_noise=0.0, full_well=1e9, min_exposure_ms=10, max_exposure_ms=10).capture(
        edge, np.arange(6) * 0.002, 0.010, 0.04
    )
    assert len(np.unique(blurred[0])) >= 5
    # the exposure follows a darker scene with a lag (auto-exposure), not at once
    exp0 = aps.exposure_ms
    aps.capture(frames * 0.01, np.array([0.0, 0.002, 0.004]), 0.044, 0.04)
    assert exp0 < aps.exposure_ms < 100 * exp0


def test_hdr_scenes_night_and_tunnel():
    day = make_driving_scene(5, 2.0, night=False, tunnel=False)
    night = make_driving_scene(5, 2.0, night=True, tunnel=False)
    rad_day, lab = render_driving_frame(day, 0.1, (52, 69))
    rad_night, _ = render_driving_frame(night, 0.1, (52, 69))
    assert np.median(rad_day) > 20 * np.median(rad_night)
    sky = lab == 0
    assert rad_day[sky].mean() > 5 * rad_day[lab == 5].mean()  # the sky outshines the road by far
    tunnel = make_driving_scene(6, 2.0, night=False, tunnel=True)
    z0 = tunnel.tunnels[0, 0]
    inside_t = (z0 + 10.0) / tunnel.speed
    rad_in, _ = render_driving_frame(tunnel, inside_t, (52, 69))
    assert np.median(rad_in) < 0.2 * np.median(rad_day)


_ARCTAN2 = np.arctan2


def _arctan2_output_touching_input(y, x, out=None, **kwargs):
    """`np.arctan2` as it ran when the heap put a fresh output right where `x`'s memory range ends.

    numpy's SIMD loop then sees the ranges touch, falls back to the scalar libm loop and returns different last bits
    (on CPUs where numpy has a SIMD arctan2; elsewhere both layouts run the scalar loop and this changes nothing).
    """
    if out is not None:
        return _ARCTAN2(y, x, out=out, **kwargs)
    y, x = np.broadcast_arrays(y, x)
    n = y.size
    mem = np.empty(4 * n + 2, dtype=np.result_type(y, x))
    pairs = mem[: 3 * n].reshape(n, 3)  # (N, 3) like the renderer's rays
    pairs[:, 0], pairs[:, 2] = y.reshape(-1), x.reshape(-1)
    res = mem[3 * n + 2 :]  # starts exactly where the range of pairs[:, 2] (N steps of 12 bytes from byte 8) ends
    _ARCTAN2(pairs[:, 0], pairs[:, 2], out=res, **kwargs)
    return res.reshape(y.shape)


def test_frames_do_not_depend_on_where_numpy_puts_outputs(monkeypatch):
    scene = make_driving_scene(3, 1.0, night=False, tunnel=False)
    ref, ref_labels = render_driving_frame(scene, 0.01, (120, 160))
    assert (ref_labels == 0).sum() > 1000  # enough sky: the sky texture is where arctan2 is used
    monkeypatch.setattr(np, "arctan2", _arctan2_output_touching_input)
    rad, labels = render_driving_frame(scene, 0.01, (120, 160))
    np.testing.assert_array_equal(labels, ref_labels)
    assert np.array_equal(rad, ref), f"{(rad != ref).sum()} pixels differ in the last bits"


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (event_worlds.make_synthetic_ddd17, {"sensor_size": (4, 4)}, "sensor_size"),
        (event_worlds.make_synthetic_ddd17, {"duration_s": 0}, "duration_s"),
        (event_worlds.make_synthetic_dsec, {"num_recordings": 0}, "num_recordings"),
        (event_worlds.make_synthetic_ncaltech, {"num_classes": 99}, "num_classes"),
        (event_worlds.make_synthetic_ncaltech, {"sensor_size": (300, 300)}, "too large"),
        (event_worlds.make_source_images, {"num_images": 0}, "num_images"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_generates_every_kind(tmp_path, repo_root, capsys):
    cli = load_script(repo_root / "scripts" / "make_synthetic_events.py", "make_synthetic_events")
    assert cli.main(["recognition-source", str(tmp_path / "rs"), "--tiny", "--num-classes", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "rs").iterdir() if p.is_dir()) == ["disc", "ring"]
    with pytest.raises(SystemExit):  # exists already: a clean usage error, not a traceback
        cli.main(["recognition-source", str(tmp_path / "rs"), "--tiny"])
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["ddd17", str(tmp_path / "d"), "--sensor-size", "3y4"])


def test_saccade_path_and_subpixel_shift():
    from hf_crossdistill.data.synthetic.event_worlds import _saccade_offsets, _shift_view

    t = np.array([0.0, 0.1, 0.2, 0.3, 0.05])
    off = _saccade_offsets(t, 4.0, 0.1)
    np.testing.assert_allclose(off[:4], [[0, 0], [4, 4], [8, 0], [0, 0]], atol=1e-9)  # the N-Caltech triangle
    np.testing.assert_allclose(off[4], [2, 2], atol=1e-9)  # half way, eased
    view = np.arange(8 * 9, dtype=np.float64).reshape(8, 9)
    np.testing.assert_array_equal(_shift_view(view, (1.0, -1.0), 2, (4, 5)), view[1:5, 3:8])
    half = _shift_view(view, (0.5, 0.0), 2, (4, 5))
    np.testing.assert_allclose(half, 0.5 * (view[2:6, 2:7] + view[2:6, 3:8]))
    with pytest.raises(ValueError, match="margin"):
        _shift_view(view, (2.5, 0.0), 2, (4, 5))

"""MVSEC layout: the synthetic recordings read back through the MVSEC reader, APS frames align with the events,
and `event_segmentation_dataset(layout="mvsec")` windows end at each APS timestamp with the sidecar labels."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from hf_crossdistill.data.events import EventFormatError, Events, event_segmentation_dataset, read_events, write_events
from hf_crossdistill.data.events.formats import DAVIS346_SENSOR_SIZE, open_recording, read_mvsec_frames
from hf_crossdistill.data.synthetic.event_worlds import MVSEC_LABELS_DIR

TRAIN_FILE = "train/rec_000_data.hdf5"


def test_synthetic_mvsec_file_has_the_mvsec_layout(tiny_mvsec_root):
    with h5py.File(tiny_mvsec_root / TRAIN_FILE, "r") as f:
        left = f["davis/left"]
        assert left["events"].dtype == np.float64 and left["events"].shape[1] == 4
        assert left["image_raw"].dtype == np.uint8 and left["image_raw"].shape[1:] == DAVIS346_SENSOR_SIZE
        k = left["image_raw"].shape[0]
        assert left["image_raw_ts"].shape == (k,) and left["image_raw_event_inds"].shape == (k,)
        rows = left["events"][:]
    assert set(np.unique(rows[:, 3])) <= {-1.0, 1.0}
    assert np.all(np.diff(rows[:, 2]) >= 0) and rows[0, 2] > 1.5e9  # ROS-like absolute seconds
    info = json.loads((tiny_mvsec_root / "synthetic_info.json").read_text())
    assert info["kind"] == "mvsec_h5" and info["labels_dir"] == MVSEC_LABELS_DIR
    # The ground truth lives outside the MVSEC files, in the generator's sidecar tree.
    labels = sorted((tiny_mvsec_root / MVSEC_LABELS_DIR / "train" / "rec_000").glob("*.png"))
    assert len(labels) == k


def test_round_trip_through_read_events_is_exact(tiny_mvsec_root, tmp_path):
    path = tiny_mvsec_root / TRAIN_FILE
    events = read_events(path)
    assert events.sensor_size == DAVIS346_SENSOR_SIZE and len(events) > 1000
    assert events.t.dtype == np.int64 and set(np.unique(events.p)) <= {-1, 1}
    images, ts, inds = read_mvsec_frames(path)
    copy = write_events(tmp_path / "copy_data.hdf5", events, "mvsec_h5", images=images, image_timestamps_us=ts)
    again = read_events(copy)
    for name in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(again, name), getattr(events, name))
    images2, ts2, inds2 = read_mvsec_frames(copy)
    np.testing.assert_array_equal(images2, images)
    np.testing.assert_array_equal(ts2, ts)
    np.testing.assert_array_equal(inds2, inds)
    # Windowed reads bisect the float64 seconds and agree with the µs timestamps.
    t0, t1 = int(ts[1]), int(ts[2])
    window = read_events(path, t_start_us=t0, t_end_us=t1)
    np.testing.assert_array_equal(window.t, events.t[(events.t >= t0) & (events.t < t1)])


def test_aps_frames_align_with_the_events(tiny_mvsec_root):
    events = read_events(tiny_mvsec_root / TRAIN_FILE)
    images, ts, inds = read_mvsec_frames(tiny_mvsec_root / TRAIN_FILE)
    info = json.loads((tiny_mvsec_root / "synthetic_info.json").read_text())
    period = int(round(1e6 / info["aps_fps"]))
    np.testing.assert_array_equal(np.diff(ts), period)
    assert ts[0] > events.t[0] and ts[-1] <= events.t[-1] + period
    # image_raw_event_inds[k] is the first event at or after frame k (len(events) past the last event).
    assert np.all(inds <= len(events)) and np.all(np.diff(inds) > 0)
    inside = inds < len(events)
    assert np.all(events.t[inds[inside]] >= ts[inside]) and np.all(events.t[inds - 1] < ts)
    # The frames are real exposures (not blank), and differ over time as the car drives.
    assert images.mean() > 5 and images.std() > 5 and np.abs(images[0].astype(int) - images[-1]).mean() > 1


def test_reader_rejects_inconsistent_aps_datasets(tiny_mvsec_root, tmp_path):
    bad = tmp_path / "bad_data.hdf5"
    shutil.copy(tiny_mvsec_root / TRAIN_FILE, bad)
    with h5py.File(bad, "a") as f:
        del f["davis/left/image_raw_ts"]
        f["davis/left/image_raw_ts"] = np.zeros(1)
    with pytest.raises(EventFormatError, match="image_raw_ts"):
        open_recording(bad)
    with pytest.raises(EventFormatError, match="image_raw"):
        ev = Events(np.array([1]), np.array([1]), np.array([10]), np.array([1]), sensor_size=(4, 4))
        read_mvsec_frames(write_events(tmp_path / "no_frames_data.hdf5", ev, "mvsec_h5"), sensor_size=(4, 4))
    ev = Events(np.array([1, 2]), np.array([1, 1]), np.array([10, 20]), np.array([1, -1]), sensor_size=(4, 4))
    frames = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="strictly increasing"):
        write_events(tmp_path / "x_data.hdf5", ev, "mvsec_h5", images=frames, image_timestamps_us=np.array([5, 5]))


def test_dataset_windows_end_at_each_aps_timestamp(tiny_mvsec_root):
    ds = event_segmentation_dataset(
        tiny_mvsec_root, layout="mvsec", split="train", representation="histogram", window_ms=50, with_images=True
    )
    examples = list(ds)
    images, ts, _ = read_mvsec_frames(tiny_mvsec_root / TRAIN_FILE)
    events = read_events(tiny_mvsec_root / TRAIN_FILE)
    assert len(examples) == len(ts)
    for k, ex in enumerate(examples):
        assert ex["frame"] == k and ex["timestamp_us"] == ts[k] and ex["recording"] == TRAIN_FILE
        in_window = (events.t >= ts[k] - 50_000) & (events.t < ts[k])
        assert ex["num_events"] == int(in_window.sum()) > 0
        assert ex["events"].shape == (2, *DAVIS346_SENSOR_SIZE) and ex["events"].sum() == in_window.sum()
        np.testing.assert_allclose(ex["image"][0], images[k] / 255.0, atol=1e-6)
        label = np.asarray(Image.open(tiny_mvsec_root / MVSEC_LABELS_DIR / "train" / "rec_000" / f"{k:06d}.png"))
        np.testing.assert_array_equal(ex["labels"], label)
        assert set(np.unique(ex["labels"])) <= set(range(6))


def test_dataset_without_sidecar_labels_and_resized(tiny_mvsec_root, tmp_path):
    root = tmp_path / "mvsec_no_labels"
    shutil.copytree(tiny_mvsec_root, root, ignore=shutil.ignore_patterns(MVSEC_LABELS_DIR))
    ex = next(iter(event_segmentation_dataset(root, layout="mvsec", split="test", output_size=(64, 96))))
    assert "labels" not in ex and ex["image"].shape == (1, 64, 96) and ex["events"].shape == (5, 64, 96)
    # An explicit labels_root (e.g. pseudo labels) is read like the sidecar; frames_per_shard splits the files.
    ds = event_segmentation_dataset(
        root, layout="mvsec", split=None, labels_root=tiny_mvsec_root / MVSEC_LABELS_DIR, frames_per_shard=2,
        output_size=(64, 96),
    )  # fmt: skip
    assert ds.n_shards == 6
    assert all(e["labels"].shape == (64, 96) for e in ds)
    with pytest.raises(FileNotFoundError, match="labels_root"):
        event_segmentation_dataset(root, layout="mvsec", labels_root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="labels_root is for layout 'mvsec'"):
        event_segmentation_dataset(root, layout="dsec", labels_root=root)
    with pytest.raises(ValueError, match="layout must be one of"):
        event_segmentation_dataset(root, layout="mvsec_h5")

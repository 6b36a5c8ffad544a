"""Streaming event datasets: shapes, dtypes, windows, label maps and sharding across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets.distributed import split_dataset_by_node

from hf_crossdistill.data.events import read_events
from hf_crossdistill.data.events.datasets import (
    REPRESENTATIONS,
    event_recognition_dataset,
    event_representation,
    event_segmentation_dataset,
    labeled_image_dataset,
    representation_channels,
)
from hf_crossdistill.data.events.representations import to_voxel_grid

DDD17_SENSOR = (104, 138)  # tests/fixtures_events.py
LABEL_ROWS = 80


@pytest.mark.parametrize(
    ("name", "kwargs", "channels"),
    [
        ("voxel_grid", {"num_bins": 3}, 3),
        ("histogram", {}, 2),
        ("stacked_frames", {"num_channels": 4, "by": "count"}, 4),
        ("evsegnet", {}, 6),
        ("normalized_count", {}, 2),
    ],
)
def test_ddd17_examples_shapes_and_dtypes(tiny_ddd17_root, name, kwargs, channels):
    ds = event_segmentation_dataset(tiny_ddd17_root, split="train", representation=name, representation_kwargs=kwargs)
    examples = list(ds)
    assert len(examples) == 10
    ex = examples[0]
    assert ex["events"].dtype == np.float32 and ex["events"].shape == (channels, LABEL_ROWS, DDD17_SENSOR[1])
    assert ex["labels"].dtype == np.int64 and ex["labels"].shape == (LABEL_ROWS, DDD17_SENSOR[1])
    assert ex["image"].dtype == np.float32 and ex["image"].shape == (1, LABEL_ROWS, DDD17_SENSOR[1])
    assert ex["image"].min() >= 0 and ex["image"].max() <= 1
    assert set(np.unique(ex["labels"]).tolist()) <= set(range(6))
    assert [e["frame"] for e in examples] == list(range(10))
    assert representation_channels(name, **kwargs) == channels


def test_window_matches_a_direct_read(tiny_ddd17_root):
    rec = tiny_ddd17_root / "train" / "rec_000"
    events = read_events(rec, "ddd17_ess", sensor_size=DDD17_SENSOR)
    counts = {}
    for window_ms in (10, 50, 250, 30):
        ds = event_segmentation_dataset(
            tiny_ddd17_root,
            split="train",
            window_ms=window_ms,
            representation="voxel_grid",
            representation_kwargs={"num_bins": 4},
        )
        ex = list(ds)[5]
        t = ex["timestamp_us"]
        window = events.slice_time(t - window_ms * 1000, t)
        assert ex["num_events"] == len(window) > 0
        expected = to_voxel_grid(window, 4)[:, :LABEL_ROWS].numpy()
        np.testing.assert_allclose(ex["events"], expected, atol=1e-5)
        counts[window_ms] = ex["num_events"]
    assert counts[10] < counts[30] < counts[50] < counts[250]


def test_num_events_window(tiny_ddd17_root):
    ds = event_segmentation_dataset(
        tiny_ddd17_root, split="test", window_ms=None, num_events=500, representation="histogram"
    )
    for ex in ds:
        assert ex["num_events"] == 500
        assert ex["events"].sum() <= 500  # histogram of the top rows only


def test_resize_to_model_input_and_torch_format(tiny_ddd17_root):
    ds = event_segmentation_dataset(
        tiny_ddd17_root, split="test", output_size=(32, 64), representation="normalized_count"
    ).with_format("torch")
    ex = next(iter(ds))
    assert ex["events"].shape == (2, 32, 64) and ex["events"].dtype == torch.float32
    assert ex["labels"].shape == (32, 64) and ex["labels"].dtype == torch.int64
    assert ex["image"].shape == (1, 32, 64)
    assert set(torch.unique(ex["labels"]).tolist()) <= set(range(6))  # nearest: no blended label ids


def test_dsec_examples_and_label_sets(tiny_dsec_root):
    six = list(event_segmentation_dataset(tiny_dsec_root, layout="dsec", split=None, representation="voxel_grid"))
    eleven = list(event_segmentation_dataset(tiny_dsec_root, layout="dsec", split=None, label_set="dsec"))
    assert len(six) == len(eleven) == 12
    assert six[0]["events"].shape == (5, 96, 128) and "image" not in six[0]
    assert set(np.unique(np.concatenate([e["labels"].ravel() for e in six])).tolist()) == set(range(6))
    assert max(int(e["labels"].max()) for e in eleven) <= 10
    assert all(e["num_events"] > 0 for e in six)


def test_shards_across_two_ranks_lose_and_duplicate_nothing(tiny_ddd17_root):
    ds = event_segmentation_dataset(tiny_ddd17_root, split=None, frames_per_shard=5, representation="histogram")
    assert ds.n_shards == 4  # 2 recordings x 2 runs of 5 frames
    everything = sorted((e["recording"], e["frame"]) for e in ds)
    assert len(everything) == 20 and len(set(everything)) == 20
    per_rank = [
        [(e["recording"], e["frame"]) for e in split_dataset_by_node(ds, rank=r, world_size=2)] for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) == 10
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == everything


@pytest.mark.parametrize(("frames_per_shard", "world_size"), [(None, 2), (3, 2), (7, 3)])
def test_any_sharding_covers_every_frame_once(tiny_ddd17_root, frames_per_shard, world_size):
    ds = event_segmentation_dataset(
        tiny_ddd17_root, split=None, frames_per_shard=frames_per_shard, representation="histogram", with_images=False
    )
    seen = [
        (e["recording"], e["frame"])
        for r in range(world_size)
        for e in split_dataset_by_node(ds, rank=r, world_size=world_size)
    ]
    assert len(seen) == len(set(seen)) == 20


def test_recognition_dataset(tiny_ncaltech_root):
    full = list(event_recognition_dataset(tiny_ncaltech_root, sensor_size=(60, 80), representation="voxel_grid"))
    assert len(full) == 12 and sorted({e["label"] for e in full}) == [0, 1, 2]
    assert full[0]["events"].shape == (5, 60, 80) and full[0]["events"].dtype == np.float32
    train = list(event_recognition_dataset(tiny_ncaltech_root, split="train", sensor_size=(60, 80)))
    test = list(event_recognition_dataset(tiny_ncaltech_root, split="test", sensor_size=(60, 80)))
    assert len(train) == 9 and len(test) == 3
    assert not {e["path"] for e in train} & {e["path"] for e in test}
    first = list(
        event_recognition_dataset(tiny_ncaltech_root, num_events=200, sensor_size=(60, 80), output_size=(30, 40))
    )
    assert all(e["num_events"] == 200 and e["events"].shape == (2, 30, 40) for e in first)
    assert event_recognition_dataset(tiny_ncaltech_root, sensor_size=(60, 80)).n_shards == 12


def test_labeled_image_datasets(tiny_source_images_root, tiny_recognition_source_root):
    seg = list(labeled_image_dataset(tiny_source_images_root, split="train", output_size=(32, 64)))
    assert len(seg) == 7
    assert seg[0]["image"].shape == (3, 32, 64) and seg[0]["image"].dtype == np.float32
    assert seg[0]["labels"].shape == (32, 64) and seg[0]["labels"].dtype == np.int64
    fine = list(labeled_image_dataset(tiny_source_images_root, split="val", labels_folder="labels_dsec"))
    assert len(fine) == 1 and fine[0]["labels"].shape == (64, 128)
    cls = list(labeled_image_dataset(tiny_recognition_source_root, kind="classification", split=None))
    assert len(cls) == 12 and sorted({e["label"] for e in cls}) == [0, 1, 2]
    assert cls[0]["image"].shape == (3, 60, 80)


def test_representation_registry_and_sbt_window():
    from hf_crossdistill.data.events import Events

    ev = Events(
        x=np.array([0, 1]), y=np.array([0, 0]), t=np.array([100, 110]), p=np.array([1, -1]), sensor_size=(2, 2)
    )
    # SBT over the streaming window keeps the empty first half of the window empty
    rep = event_representation(ev, "stacked_frames", (0, 200), num_channels=2)
    assert rep[0].abs().sum() == 0 and rep[1].sum() == 0 and rep[1].abs().sum() == 2
    assert set(REPRESENTATIONS) == {"voxel_grid", "histogram", "stacked_frames", "evsegnet", "normalized_count"}


def test_bad_arguments(tiny_ddd17_root, tmp_path):
    with pytest.raises(ValueError, match="unknown representation"):
        event_segmentation_dataset(tiny_ddd17_root, representation="nope")
    with pytest.raises(ValueError, match="representation_kwargs"):
        event_segmentation_dataset(tiny_ddd17_root, representation="voxel_grid", representation_kwargs={"bins": 3})
    with pytest.raises(ValueError, match="exactly one"):
        event_segmentation_dataset(tiny_ddd17_root, window_ms=50, num_events=10)
    with pytest.raises(ValueError, match="layout"):
        event_segmentation_dataset(tiny_ddd17_root, layout="kitti")
    with pytest.raises(ValueError, match="output_size"):
        event_segmentation_dataset(tiny_ddd17_root, output_size=(0, 4))
    with pytest.raises(FileNotFoundError):
        event_segmentation_dataset(tmp_path, split=None)
    with pytest.raises(FileNotFoundError):
        labeled_image_dataset(tmp_path, split="train")

"""Event representations against plain numpy references of their formulas and on hand-built events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_crossdistill.data.events import Events, representations
from hf_crossdistill.data.events.representations import (
    to_evsegnet_image,
    to_histogram,
    to_normalized_count_image,
    to_stacked_frames,
    to_voxel_grid,
)


def random_events(n: int, seed: int = 0, *, sensor=(13, 17), t_start: int = 0, t_span: int = 100_000) -> Events:
    rng = np.random.default_rng(seed)
    h, w = sensor
    t = np.sort(rng.integers(t_start, t_start + t_span, n))
    return Events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.choice([-1, 1], n), sensor)


def voxel_reference(events: Events, num_bins: int) -> np.ndarray:
    """The E2VID formula, written out plainly in float64."""
    h, w = events.sensor_size
    grid = np.zeros((num_bins, h, w))
    if len(events) == 0:
        return grid
    t = events.t.astype(np.float64)
    span = t[-1] - t[0]
    t_star = (num_bins - 1) * (t - t[0]) / span if span > 0 else np.zeros_like(t)
    for b in range(num_bins):
        weight = events.p * np.maximum(0.0, 1.0 - np.abs(b - t_star))
        np.add.at(grid[b], (events.y, events.x), weight)
    return grid


# ------------------------------------------------------------------------------------------------ voxel grid


@pytest.mark.parametrize("num_bins", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("seed", [0, 1])
def test_voxel_grid_matches_reference(num_bins, seed):
    events = random_events(3000, seed, t_start=10**12)  # absolute clock far from 0: float32 must not lose µs
    got = to_voxel_grid(events, num_bins)
    assert got.shape == (num_bins, 13, 17) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), voxel_reference(events, num_bins), atol=1e-5, rtol=0)
    assert got.sum().item() == pytest.approx(float(events.p.sum()), abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    ts=st.lists(st.integers(0, 5000), min_size=1, max_size=60),
    num_bins=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
def test_voxel_grid_matches_reference_hypothesis(ts, num_bins, seed):
    rng = np.random.default_rng(seed)
    n = len(ts)
    events = Events(rng.integers(0, 5, n), rng.integers(0, 4, n), np.sort(ts), rng.choice([-1, 1], n), (4, 5))
    got = to_voxel_grid(events, num_bins).numpy()
    np.testing.assert_allclose(got, voxel_reference(events, num_bins), atol=1e-5, rtol=0)
    assert got.sum() == pytest.approx(float(events.p.sum()), abs=1e-4)


def test_voxel_grid_chunked_path(monkeypatch):
    monkeypatch.setattr(representations, "_VOXEL_CHUNK", 7)  # many chunks per time segment
    events = random_events(500, 3)
    np.testing.assert_allclose(to_voxel_grid(events, 4).numpy(), voxel_reference(events, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int16, np.int64])
def test_any_integer_coordinate_dtype(dtype):
    events = Events(np.array([1, 2, 3], dtype), np.array([0, 1, 2], dtype), [0, 5, 10], [1, -1, 1], (4, 4))
    reference = Events([1, 2, 3], [0, 1, 2], [0, 5, 10], [1, -1, 1], (4, 4))
    for fn in (lambda e: to_voxel_grid(e, 3), to_histogram, lambda e: to_stacked_frames(e, 2), to_evsegnet_image):
        assert torch.equal(fn(events), fn(reference))


def test_voxel_grid_hand_built():
    # t* = 2 (t - 0) / 100: 0 -> bin 0; 25 -> half in bins 0 and 1; 50 -> bin 1; 100 -> bin 2
    events = Events([0, 1, 2, 3], [0, 0, 0, 0], [0, 25, 50, 100], [1, -1, 1, -1], (1, 4))
    grid = to_voxel_grid(events, 3).numpy()[:, 0]  # (3, W)
    np.testing.assert_allclose(grid, [[1, -0.5, 0, 0], [0, -0.5, 1, 0], [0, 0, 0, -1]], atol=1e-7)


def test_voxel_grid_edge_cases():
    empty = Events.empty((3, 4))
    assert torch.equal(to_voxel_grid(empty, 4), torch.zeros(4, 3, 4))
    same_time = Events([0, 1, 1], [0, 2, 2], [7, 7, 7], [1, 1, -1], (3, 4))
    grid = to_voxel_grid(same_time, 3)  # t_last == t_0: everything in bin 0
    assert grid[1:].abs().sum() == 0 and grid[0, 0, 0] == 1 and grid[0, 2, 1] == 0
    assert to_voxel_grid(same_time, 1)[0, 0, 0] == 1


def test_voxel_grid_tuple_input_and_validation():
    events = random_events(200, 4)
    as_tuple = tuple(torch.from_numpy(getattr(events, k)) for k in "xytp")
    assert torch.equal(to_voxel_grid(as_tuple, 5, sensor_size=(13, 17)), to_voxel_grid(events, 5))
    other_dtypes = (as_tuple[0].long(), as_tuple[1].to(torch.int32), as_tuple[2].to(torch.int32), as_tuple[3].long())
    assert torch.equal(to_voxel_grid(other_dtypes, 5, sensor_size=(13, 17)), to_voxel_grid(events, 5))
    with pytest.raises(ValueError, match="sensor_size"):
        to_voxel_grid(as_tuple, 5)
    with pytest.raises(ValueError, match="outside"):
        to_voxel_grid(as_tuple, 5, sensor_size=(13, 10))
    x, y, t, p = as_tuple
    with pytest.raises(ValueError, match="sorted"):
        to_voxel_grid((x, y, t.flip(0), p), 5, sensor_size=(13, 17))
    shuffled = t.clone()
    shuffled[[10, 150]] = shuffled[[150, 10]]
    with pytest.raises(ValueError, match="sorted"):
        to_voxel_grid((x, y, shuffled, p), 5, sensor_size=(13, 17))
    with pytest.raises(ValueError, match="polarity"):
        to_voxel_grid((x, y, t, p * 2), 5, sensor_size=(13, 17))
    with pytest.raises(ValueError, match="integer"):
        to_voxel_grid((x.float(), y, t, p), 5, sensor_size=(13, 17))
    with pytest.raises(ValueError, match="1-D"):
        to_voxel_grid((x, y[:-1], t, p), 5, sensor_size=(13, 17))
    with pytest.raises(ValueError, match="num_bins"):
        to_voxel_grid(events, 0)
    with pytest.raises(TypeError, match="Events"):
        to_voxel_grid({"x": x}, 5)


# ------------------------------------------------------------------------------------------------ others


def test_histogram_hand_built():
    events = Events([0, 0, 2, 2, 2], [1, 1, 0, 0, 0], [0, 1, 2, 3, 4], [1, 1, -1, 1, -1], (2, 3))
    hist = to_histogram(events)
    assert hist.shape == (2, 2, 3) and hist.dtype == torch.float32
    expected = np.zeros((2, 2, 3))
    expected[0, 1, 0] = 2  # channel 0: positive
    expected[0, 0, 2] = 1
    expected[1, 0, 2] = 2  # channel 1: negative
    np.testing.assert_array_equal(hist.numpy(), expected)
    assert to_histogram(Events.empty((2, 3))).abs().sum() == 0


def test_normalized_count_image():
    events = Events([0, 0, 1, 2, 2, 2], [0, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5], [1, 1, 1, -1, -1, -1], (1, 3))
    img = to_normalized_count_image(events).numpy()[:, 0]  # (2, W)
    np.testing.assert_allclose(img, [[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    only_positive = Events([1], [0], [0], [1], (1, 3))
    np.testing.assert_allclose(to_normalized_count_image(only_positive).numpy()[:, 0], [[0, 1, 0], [0, 0, 0]])


def test_stacked_frames_by_time():
    # times 0..90 over [0, 90]: 3 chunks of 30 µs; 90 (== t_end) belongs to the last chunk
    events = Events([0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 29, 30, 60, 90], [1, -1, 1, 1, -1], (1, 2))
    frames = to_stacked_frames(events, 3).numpy()[:, 0]  # (3, W)
    np.testing.assert_array_equal(frames, [[1, -1], [1, 0], [-1, 1]])
    # an explicit window [0, 120): chunks of 40 µs
    frames = to_stacked_frames(events, 3, t_range=(0, 120)).numpy()[:, 0]
    np.testing.assert_array_equal(frames, [[2, -1], [0, 1], [-1, 0]])
    with pytest.raises(ValueError, match="outside t_range"):
        to_stacked_frames(events, 3, t_range=(10, 120))
    same = Events([0, 1], [0, 0], [5, 5], [1, 1], (1, 2))
    np.testing.assert_array_equal(to_stacked_frames(same, 2).numpy()[:, 0], [[1, 1], [0, 0]])


def test_stacked_frames_by_count():
    events = Events([0, 1, 0, 1, 0, 1, 0], [0] * 7, [0, 1, 2, 3, 4, 5, 100], [1, 1, -1, 1, 1, 1, -1], (1, 2))
    # 7 events in 3 chunks: floor(3 i / 7) = 0 0 0 1 1 2 2
    frames = to_stacked_frames(events, 3, by="count").numpy()[:, 0]
    np.testing.assert_array_equal(frames, [[0, 1], [1, 1], [-1, 1]])
    assert to_stacked_frames(events, 3, by="count").sum() == events.p.sum()
    with pytest.raises(ValueError, match="by must be"):
        to_stacked_frames(events, 3, by="space")
    with pytest.raises(ValueError, match="num_channels"):
        to_stacked_frames(events, 0)
    assert to_stacked_frames(Events.empty((1, 2)), 4).shape == (4, 1, 2)


def test_evsegnet_image_hand_built():
    # normalised times t / 100; pixel x=0: positive at 0.6, negative at 0.0 and 1.0; pixel x=1: positive at 0.2
    events = Events([0, 1, 0, 0], [0, 0, 0, 0], [0, 20, 60, 100], [-1, 1, 1, -1], (1, 2))
    img = to_evsegnet_image(events).numpy()[:, 0]  # (6, W)
    assert img.shape == (6, 2)
    np.testing.assert_allclose(img[0], [1, 1])  # positive counts
    np.testing.assert_allclose(img[1], [2, 0])  # negative counts
    np.testing.assert_allclose(img[2], [0.6, 0.2], atol=1e-6)  # positive mean
    np.testing.assert_allclose(img[3], [0.5, 0.0], atol=1e-6)  # negative mean of 0.0 and 1.0
    np.testing.assert_allclose(img[4], [0.0, 0.0], atol=1e-6)  # one positive event per pixel: std 0
    np.testing.assert_allclose(img[5], [0.5, 0.0], atol=1e-6)  # std of {0, 1}


def test_evsegnet_image_matches_numpy():
    events = random_events(400, 5, sensor=(3, 4))
    img = to_evsegnet_image(events).numpy()
    tn = (events.t - events.t[0]) / (events.t[-1] - events.t[0])
    for c, pol in enumerate((1, -1)):
        for yy in range(3):
            for xx in range(4):
                sel = (events.p == pol) & (events.y == yy) & (events.x == xx)
                assert img[c, yy, xx] == sel.sum()
                if sel.any():
                    assert img[2 + c, yy, xx] == pytest.approx(tn[sel].mean(), abs=1e-6)
                    assert img[4 + c, yy, xx] == pytest.approx(tn[sel].std(), abs=1e-5)

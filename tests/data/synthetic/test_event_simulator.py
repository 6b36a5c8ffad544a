"""The ESIM / v2e simulator against hand-computed crossings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_crossdistill.data.synthetic.event_simulator import EventSimulator, simulate_events

EXACT = {"threshold_sigma": 0.0, "refractory_period_us": 0, "log_eps": 1e-12}


def _ramp(log_start: float, log_end: float, shape=(3, 4), t_end=1000):
    frames = np.stack([np.full(shape, np.exp(log_start)), np.full(shape, np.exp(log_end))])
    return frames, np.array([0, t_end])


def test_brightening_pixel_gives_positive_events_at_expected_count_and_times():
    frames, ts = _ramp(0.0, 1.05)
    ev = simulate_events(frames, ts, contrast_threshold=0.2, **EXACT)
    n_per_pixel = int(np.floor(1.05 / 0.2))  # Δlog / C
    assert len(ev) == n_per_pixel * 12
    assert np.all(ev.p == 1)
    one = ev.t[(ev.x == 1) & (ev.y == 2)]
    expected = np.floor(np.arange(1, n_per_pixel + 1) * 0.2 / 1.05 * 1000)  # linear interpolation
    np.testing.assert_allclose(one, expected, atol=1)
    assert np.all(np.diff(ev.t) >= 0)


def test_darkening_gives_negative_events_and_asymmetric_thresholds():
    frames, ts = _ramp(1.0, 0.0)
    ev = simulate_events(frames, ts, contrast_threshold=(0.2, 0.3), **EXACT)
    assert np.all(ev.p == -1)
    assert len(ev) == 3 * 12  # floor(1.0 / 0.3)


def test_reference_carries_over_between_frames():
    # +0.15 three times: no single step crosses 0.2, but the accumulated change crosses it twice (0.2, 0.4).
    logs = np.array([0.0, 0.15, 0.30, 0.45])
    frames = np.exp(logs)[:, None, None] * np.ones((1, 1, 1))
    ev = simulate_events(frames, [0, 100, 200, 300], **EXACT)
    assert len(ev) == 2
    np.testing.assert_allclose(ev.t, [133, 266], atol=1)


def test_refractory_period_respected():
    frames, ts = _ramp(0.0, 2.05, shape=(2, 2))  # crossings every ~97.6 µs
    ev = simulate_events(frames, ts, contrast_threshold=0.2, threshold_sigma=0.0, refractory_period_us=250)
    for pix in range(4):
        t = ev.t[ev.x + 2 * ev.y == pix]
        assert len(t) >= 3
        assert np.all(np.diff(t) >= 250)
    free = simulate_events(frames, ts, contrast_threshold=0.2, threshold_sigma=0.0, refractory_period_us=0)
    assert len(ev) < len(free)


def test_refractory_period_spans_frame_boundaries():
    sim = EventSimulator((1, 1), threshold_sigma=0.0, refractory_period_us=400, log_eps=1e-12)
    sim.step(np.ones((1, 1)), 0)
    times = []
    for k, log_i in enumerate([0.25, 0.5, 0.75, 1.0, 1.25, 1.5], start=1):
        times.extend(sim.step(np.full((1, 1), np.exp(log_i)), k * 100).t.tolist())
    assert len(times) >= 2
    assert np.all(np.diff(times) >= 400)


def test_determinism_by_seed_and_mismatch():
    rng = np.random.default_rng(1)
    frames = np.exp(np.cumsum(rng.normal(scale=0.2, size=(6, 16, 20)), axis=0))
    ts = np.arange(6) * 2000
    a = simulate_events(frames, ts, seed=3, noise_rate_hz=50)
    b = simulate_events(torch.from_numpy(frames), ts, seed=3, noise_rate_hz=50)
    c = simulate_events(frames, ts, seed=4, noise_rate_hz=50)
    for name in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a) != len(c) or not np.array_equal(a.t, c.t)


def test_noise_rate_roughly_as_asked():
    frames = np.ones((11, 40, 50))
    ts = np.arange(11) * 50_000  # 0.5 s of a static scene
    ev = simulate_events(frames, ts, noise_rate_hz=4.0, seed=0)
    expected = 4.0 * 40 * 50 * 0.5
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert abs(np.mean(ev.p == 1) - 0.5) < 0.05
    assert ev.t.min() >= 0 and ev.t.max() < 500_000
    quiet = simulate_events(frames, ts, noise_rate_hz=0.0)
    assert len(quiet) == 0


def test_moving_edge_fires_only_where_it_moves():
    frames = np.full((5, 8, 10), 0.1)
    for k in range(5):
        frames[k, :, : 2 + k] = 1.0  # a bright edge sweeping to the right
    ev = simulate_events(frames, np.arange(5) * 1000, threshold_sigma=0.0)
    assert np.all(ev.p == 1)
    assert set(np.unique(ev.x).tolist()) == {2, 3, 4, 5}
    assert ev.sensor_size == (8, 10)


@pytest.mark.parametrize(
    ("frames", "ts", "match"),
    [
        (np.ones((2, 3)), [0, 1], "shape"),
        (np.ones((3, 2, 2)), [0, 1], "timestamps_us"),
        (np.ones((1, 2, 2)), [0], "at least 2"),
        (np.ones((2, 2, 2)), [5, 5], "strictly increasing"),
        (np.ones((2, 2, 2)), [0.0, np.nan], "NaN"),
        (np.stack([np.ones((2, 2)), np.full((2, 2), np.nan)]), [0, 1], "NaN"),
        (-np.ones((2, 2, 2)), [0, 1], "non-negative"),
    ],
)
def test_bad_input_is_rejected(frames, ts, match):
    with pytest.raises(ValueError, match=match):
        simulate_events(frames, ts)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="contrast_threshold"):
        EventSimulator((2, 2), contrast_threshold=0.0)
    with pytest.raises(ValueError, match="refractory"):
        EventSimulator((2, 2), refractory_period_us=-1)
    sim = EventSimulator((2, 2))
    sim.step(np.ones((2, 2)), 10)
    with pytest.raises(ValueError, match="increase"):
        sim.step(np.ones((2, 2)), 10)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        sim.step(np.ones((3, 2)), 20)

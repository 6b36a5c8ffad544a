"""Event representation throughput (events/s), against baselines measured in the same run.

python scripts/benchmark.py voxel_grid representations
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from benchmarks._timing import median_seconds
from hf_crossdistill.data.events import Events
from hf_crossdistill.data.events.representations import (
    to_evsegnet_image,
    to_histogram,
    to_normalized_count_image,
    to_stacked_frames,
    to_voxel_grid,
)

SENSOR = (260, 346)  # DAVIS346 (H, W), as DDD17 / MVSEC
NUM_BINS = 5


def _events(n: int, seed: int = 0) -> Events:
    rng = np.random.default_rng(seed)
    h, w = SENSOR
    t = np.sort(rng.integers(0, 50_000, n)) + 1_600_000_000_000_000  # a 50 ms window on an absolute clock
    x = rng.integers(0, w, n).astype(np.int16)
    y = rng.integers(0, h, n).astype(np.int16)
    return Events(x, y, t, rng.choice(np.array([-1, 1], np.int8), n), SENSOR)


def numpy_voxel_grid(events: Events, num_bins: int) -> np.ndarray:
    """The E2VID formula in vectorised numpy (float64, one weighted bincount per neighbouring bin)."""
    h, w = events.sensor_size
    t = events.t
    span = int(t[-1] - t[0])
    t_star = (num_bins - 1) * (t - t[0]).astype(np.float64) / span
    b0 = t_star.astype(np.int64)
    frac = t_star - b0
    pix = events.y.astype(np.int64) * w + events.x
    p = events.p.astype(np.float64)
    size = (num_bins + 1) * h * w
    grid = np.bincount(b0 * h * w + pix, p * (1 - frac), minlength=size)
    grid += np.bincount((b0 + 1) * h * w + pix, p * frac, minlength=size)
    return grid[: num_bins * h * w].reshape(num_bins, h, w).astype(np.float32)


def torch_index_add_voxel_grid(events: Events, num_bins: int) -> torch.Tensor:
    """The plain vectorised torch version: two index_add_ calls over combined (bin, pixel) indices."""
    h, w = events.sensor_size
    t = torch.from_numpy(events.t)
    t_star = (t - t[0]).double() * ((num_bins - 1) / float(t[-1] - t[0]))
    b0 = t_star.long()
    frac = (t_star - b0).float()
    p = torch.from_numpy(events.p).float()
    pix = torch.from_numpy(events.y).long() * w + torch.from_numpy(events.x).long()
    grid = torch.zeros((num_bins + 1) * h * w)
    grid.index_add_(0, b0 * h * w + pix, p * (1 - frac))
    grid.index_add_(0, (b0 + 1) * h * w + pix, p * frac)
    return grid[: num_bins * h * w].view(num_bins, h, w)


def _tonic_voxel_grid():
    try:
        from tonic.transforms import ToVoxelGrid
    except Exception as err:  # tonic is optional: installed only for this comparison
        return (
            None,
            f"tonic not importable ({type(err).__name__}: {err}); "
            "install it with `pip install tonic importRosbag --no-deps`",
        )
    return ToVoxelGrid, None


def _median_cpu(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _measure(rows: list, name: str, fn, args, sync=None) -> None:
    wall = median_seconds(fn, repeats=args.repeats, sync=sync)
    rows.append((name, wall, _median_cpu(fn, args.repeats)))


def _report(rows: list[tuple[str, float, float]], n: int, baseline: str) -> dict:
    base = {name: (wall, cpu) for name, wall, cpu in rows}[baseline]
    out = {}
    print(
        f"{'method':44s} {'wall ms':>9s} {'M ev/s':>8s} {'speedup':>8s} {'cpu ms':>9s} {'M ev/s':>8s} {'speedup':>8s}"
    )
    for name, wall, cpu in rows:
        print(
            f"{name:44s} {wall * 1e3:9.2f} {n / wall / 1e6:8.1f} {base[0] / wall:7.2f}x "
            f"{cpu * 1e3:9.2f} {n / cpu / 1e6:8.1f} {base[1] / cpu:7.2f}x"
        )
        out[name] = {
            "wall_seconds": wall,
            "events_per_s": n / wall,
            f"speedup_vs_{baseline}": base[0] / wall,
            "cpu_seconds": cpu,
            "events_per_cpu_s": n / cpu,
            f"cpu_speedup_vs_{baseline}": base[1] / cpu,
        }
    print(f"speedups are relative to {baseline!r}; cpu = process CPU time (less sensitive to other jobs)")
    return out


def voxel_grid(args) -> dict:
    """Voxel grid (5 bins, 346x260) throughput for 1 M events: ours vs numpy, plain torch and tonic."""
    n = 100_000 if args.quick else 1_000_000
    events = _events(n)
    device = torch.device(args.device)
    on_device = tuple(torch.from_numpy(getattr(events, k)).to(device) for k in "xytp")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    threads = torch.get_num_threads()
    ours = to_voxel_grid(events, NUM_BINS)
    np.testing.assert_allclose(ours.numpy(), numpy_voxel_grid(events, NUM_BINS), atol=1e-4)  # same formula

    rows = []
    _measure(rows, "numpy reference (bincount, float64)", lambda: numpy_voxel_grid(events, NUM_BINS), args)
    _measure(rows, "torch two index_add_", lambda: torch_index_add_voxel_grid(events, NUM_BINS), args)
    tonic_cls, why = _tonic_voxel_grid()
    if tonic_cls is None:
        print(f"skipping tonic: {why}")
    else:
        transform = tonic_cls(sensor_size=(SENSOR[1], SENSOR[0], 2), n_time_bins=NUM_BINS)
        structured = np.zeros(n, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
        for k in "xytp":
            structured[k] = getattr(events, k)
        _measure(rows, "tonic ToVoxelGrid", lambda: transform(structured), args)
    label = f"ours to_voxel_grid ({device.type}, {threads} thread{'s' if threads > 1 else ''})"
    _measure(rows, label, lambda: to_voxel_grid(on_device, NUM_BINS, sensor_size=SENSOR), args, sync=sync)
    if device.type == "cpu" and threads > 1:
        torch.set_num_threads(1)
        try:
            _measure(rows, "ours to_voxel_grid (cpu, 1 thread)", lambda: to_voxel_grid(events, NUM_BINS), args)
        finally:
            torch.set_num_threads(threads)
    print(f"{n} events, {NUM_BINS} bins, {SENSOR[1]}x{SENSOR[0]}, torch threads {threads}")
    result = _report(rows, n, "numpy reference (bincount, float64)")
    if tonic_cls is not None:
        tonic = result["tonic ToVoxelGrid"]
        for row in result.values():
            row["speedup_vs_tonic"] = tonic["wall_seconds"] / row["wall_seconds"]
            row["cpu_speedup_vs_tonic"] = tonic["cpu_seconds"] / row["cpu_seconds"]
    return result


def representations(args) -> dict:
    """Throughput of every representation for 1 M events (346x260), against a numpy bincount histogram."""
    n = 100_000 if args.quick else 1_000_000
    events = _events(n, seed=1)
    h, w = SENSOR

    def numpy_histogram():
        index = (events.p < 0).astype(np.int64) * (h * w) + events.y.astype(np.int64) * w + events.x
        return np.bincount(index, minlength=2 * h * w).reshape(2, h, w).astype(np.float32)

    np.testing.assert_array_equal(to_histogram(events).numpy(), numpy_histogram())
    cases = [
        ("numpy histogram (bincount)", numpy_histogram),
        ("to_histogram", lambda: to_histogram(events)),
        ("to_normalized_count_image", lambda: to_normalized_count_image(events)),
        (f"to_voxel_grid ({NUM_BINS} bins)", lambda: to_voxel_grid(events, NUM_BINS)),
        ("to_stacked_frames (SBT, 5 channels)", lambda: to_stacked_frames(events, 5, by="time")),
        ("to_stacked_frames (SBN, 5 channels)", lambda: to_stacked_frames(events, 5, by="count")),
        ("to_evsegnet_image", lambda: to_evsegnet_image(events)),
    ]
    rows = []
    for name, fn in cases:
        _measure(rows, name, fn, args)
    print(f"{n} events, {w}x{h}, torch threads {torch.get_num_threads()}")
    return _report(rows, n, "numpy histogram (bincount)")


ENTRIES = {"voxel_grid": voxel_grid, "representations": representations}

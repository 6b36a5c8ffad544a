"""Dense event representations as torch functions: voxel grid, histogram, stacked frames, Ev-SegNet and count images.

Every function takes either an `Events` or a tuple ``(x, y, t, p)`` of 1-D tensors / arrays (x, y integer pixel
coordinates, t integer µs, p in {-1, +1}) together with ``sensor_size=(H, W)``, and returns a float32 tensor of
shape ``(C, H, W)``. Tensors are used as they are (no copy to numpy), so the functions run on any device; an `Events`
is wrapped without copying. Events must be sorted by time, as every reader returns them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .core import Events

EventsLike = Events | Sequence
_SIGNED = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.int64}


def event_tensors(
    events: EventsLike, sensor_size: tuple[int, int] | None = None, *, where: str = "events"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(x, y, t, p, (H, W))`` as torch tensors from an `Events` or an ``(x, y, t, p)`` tuple.

    Checks lengths, dtypes, the coordinate range and the polarity values; raises `ValueError` naming `where`.
    """
    if isinstance(events, Events):
        x, y, t, p = (torch.from_numpy(np.ascontiguousarray(a)) for a in (events.x, events.y, events.t, events.p))
        size = events.sensor_size if sensor_size is None else sensor_size
    elif isinstance(events, (tuple, list)) and len(events) == 4:
        if sensor_size is None:
            raise ValueError(f"{where}: pass sensor_size=(H, W) with an (x, y, t, p) tuple")
        x, y, t, p = (torch.as_tensor(a) for a in events)
        size = sensor_size
    else:
        raise TypeError(f"{where}: expected Events or an (x, y, t, p) tuple, got {type(events).__name__}")
    if len(size) != 2 or min(int(s) for s in size) <= 0:
        raise ValueError(f"{where}: sensor_size must be (H, W) with positive sizes, got {size}")
    # Wide unsigned integers lack most CPU kernels (min / max among them): widen them to signed ones.
    x, y, t, p = (a.to(_SIGNED[a.dtype]) if a.dtype in _SIGNED else a for a in (x, y, t, p))
    h, w = int(size[0]), int(size[1])
    n = x.shape[0] if x.ndim == 1 else -1
    for name, a in zip("xytp", (x, y, t, p)):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"{where}: {name} must be 1-D with the length of x ({n}), got shape {tuple(a.shape)}")
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise ValueError(f"{where}: {name} must be an integer tensor, got {a.dtype}")
    if n:
        x_lo, x_hi = torch.aminmax(x)
        y_lo, y_hi = torch.aminmax(y)
        if int(x_lo) < 0 or int(x_hi) >= w or int(y_lo) < 0 or int(y_hi) >= h:
            raise ValueError(
                f"{where}: coordinates outside the {w}x{h} (W x H) sensor: x in [{int(x_lo)}, {int(x_hi)}], "
                f"y in [{int(y_lo)}, {int(y_hi)}]"
            )
        p_lo, p_hi = torch.aminmax(p)
        if int(p_lo) < -1 or int(p_hi) > 1:
            raise ValueError(f"{where}: polarity must be -1 or +1, got values in [{int(p_lo)}, {int(p_hi)}]")
    return x, y, t, p, (h, w)


def _pixel_index(x: torch.Tensor, y: torch.Tensor, width: int) -> torch.Tensor:
    # add(alpha=) keeps int32 math on the vectorised path (an int tensor times a Python int is much slower here)
    return torch.add(x.to(torch.int32), y.to(torch.int32), alpha=width)


def _check_count(value: int, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _check_time_order(t: torch.Tensor, where: str) -> None:
    if t.shape[0] > 1 and bool((t[1:] < t[:-1]).any()):
        raise ValueError(f"{where}: timestamps must be sorted (non-decreasing)")


def to_voxel_grid(events: EventsLike, num_bins: int, *, sensor_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Voxel grid of Zhu et al. / E2VID: events spread bilinearly over `num_bins` time bins with signed polarity.

    With t_0 and t_{N-1} the first and last timestamps, each event gets the normalised time
    ``t*_k = (B - 1)(t_k - t_0) / (t_{N-1} - t_0)`` and adds ``p_k · max(0, 1 - |b - t*_k|)`` to bin b at its pixel.
    The two weights of an event sum to p_k, so the total signed mass ``V.sum() == p.sum()`` is preserved (tonic's
    ToVoxelGrid scales by B instead of B - 1 and drops mass at the last bin). If all events share one timestamp
    (t_{N-1} == t_0) they all go to bin 0; no events give zeros.

    Speed: sorted events fall into B contiguous runs of equal floor(t*), so no per-event bin index is needed, and a
    single complex64 `scatter_add_` carries both bilinear weights of an event (p and p·frac). On CPU the scratch
    buffers are kept per thread between calls (8 bytes per pixel plus about 5 MB). On a machine whose cores are
    shared with other jobs, ``torch.set_num_threads(1)`` is much faster than intra-op threads waiting for each other.

    Args:
        events: `Events` or ``(x, y, t, p)`` tuple (then `sensor_size` is required); sorted by time (an event out of
            order across time bins raises `ValueError`).
        num_bins: B >= 1.
        sensor_size: (H, W), default the events' own.

    Returns:
        (num_bins, H, W) float32 tensor on the events' device.
    """
    where = "to_voxel_grid"
    num_bins = _check_count(num_bins, "num_bins", where)
    x, y, t, p, (h, w) = event_tensors(events, sensor_size, where=where)
    n, hw = x.shape[0], h * w
    if n == 0:
        return torch.zeros(num_bins, h, w, dtype=torch.float32, device=x.device)
    t0, t_last = int(t[0]), int(t[-1])
    span = t_last - t0
    if span < 0:
        raise ValueError(f"{where}: timestamps must be sorted (t[0]={t0} > t[-1]={t_last})")
    if span == 0 or num_bins == 1:  # t* == 0 for every event
        grid = torch.zeros(num_bins, hw, dtype=torch.float32, device=x.device)  # (B, H·W)
        grid[0].scatter_add_(0, _pixel_index(x, y, w).to(torch.int64), p.to(torch.float32))
        return grid.view(num_bins, h, w)
    # Sorted events with floor(t*) == k form one contiguous segment k; its first index comes from an exact integer
    # threshold (t - t0)(B - 1) >= k·span, so the time bin never has to be scattered per event.
    thresholds = [t0 + -(-k * span // (num_bins - 1)) for k in range(1, num_bins)]
    thresholds = torch.tensor(thresholds, dtype=t.dtype, device=t.device)
    bounds = [0, *torch.searchsorted(t, thresholds).tolist(), n]
    scale = (num_bins - 1) / span
    job = _VoxelJob(x, y, t, p, t0, scale, w, where)
    scratch = _scratch(x.device, _VOXEL_CHUNK)
    plane = _accumulator(x.device, hw)  # (H·W,) complex64, one time segment at a time
    pairs = torch.view_as_real(plane)  # (H·W, 2)
    grid = torch.empty(num_bins, hw, dtype=torch.float32, device=x.device)  # (B, H·W)
    for k in range(num_bins):
        if k > 0:
            plane.zero_()
        for i0 in range(bounds[k], bounds[k + 1], _VOXEL_CHUNK):
            _voxel_segment(scratch, plane, k == num_bins - 1, job, i0, min(i0 + _VOXEL_CHUNK, bounds[k + 1]), float(k))
        # Segment k adds p·(1 - frac) = re - im to bin k and p·frac = im to bin k + 1 (the carry already in
        # grid[k] is segment k - 1's im); folding each plane while it is in cache beats a (B, H·W) pass at the end.
        if k == 0:
            torch.sub(pairs[:, 0], pairs[:, 1], out=grid[0])
        else:
            grid[k].add_(pairs[:, 0]).sub_(pairs[:, 1])
        if k + 1 < num_bins:
            grid[k + 1].copy_(pairs[:, 1])
    return grid.view(num_bins, h, w)


# Events per scatter step of the voxel grid: the step's temporaries stay in cache.
_VOXEL_CHUNK = 1 << 17
_LOCAL = threading.local()


class _VoxelJob(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    p: torch.Tensor
    t0: int
    scale: float
    width: int
    where: str


def _accumulator(device: torch.device, size: int) -> torch.Tensor:
    """A zeroed complex accumulator, owned by the calling thread and reused across its calls.

    Fresh buffers of a few MB come from the OS on every call and cost more in page faults than the arithmetic
    itself (measured: about 2x slower for 1 M events), so they live as long as the thread.
    """
    if device.type != "cpu":  # device allocators cache blocks themselves
        return torch.zeros(size, dtype=torch.complex64, device=device)
    acc = getattr(_LOCAL, "acc", None)
    if acc is None or acc.shape[0] < size:
        acc = torch.empty(size, dtype=torch.complex64)
        _LOCAL.acc = acc
    return acc[:size].zero_()


class _Scratch:
    """Per-thread temporaries of one scatter step (see `_accumulator` for why they are kept)."""

    def __init__(self, device: torch.device, chunk: int) -> None:
        self.chunk = chunk
        self.i64_a = torch.empty(chunk, dtype=torch.int64, device=device)
        self.i64_b = torch.empty(chunk, dtype=torch.int64, device=device)
        self.i32_a = torch.empty(chunk, dtype=torch.int32, device=device)
        self.i32_b = torch.empty(chunk, dtype=torch.int32, device=device)
        self.f32_a = torch.empty(chunk, dtype=torch.float32, device=device)
        self.f32_b = torch.empty(chunk, dtype=torch.float32, device=device)
        self.c64 = torch.empty(chunk, dtype=torch.complex64, device=device)


def _scratch(device: torch.device, chunk: int) -> _Scratch:
    if device.type != "cpu":
        return _Scratch(device, chunk)
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None or scratch.chunk < chunk:
        scratch = _Scratch(device, chunk)
        _LOCAL.scratch = scratch
    return scratch


def _voxel_segment(ws: _Scratch, acc_k: torch.Tensor, last: bool, job: _VoxelJob, i0: int, i1: int, k: float):
    """Scatter the events i0 .. i1 - 1, all with floor(t*) == k: p as the real, p·frac as the imaginary part."""
    x, y, t, p = job.x[i0:i1], job.y[i0:i1], job.t[i0:i1], job.p[i0:i1]
    t0, scale, width, where = job.t0, job.scale, job.width, job.where
    n = i1 - i0
    pix, tmp = ws.i64_a[:n], ws.i64_b[:n]
    # int32 arithmetic: int64 add-with-alpha is not vectorised here (3x slower than this detour)
    pix32 = torch.add(ws.i32_a[:n].copy_(x), ws.i32_b[:n].copy_(y), alpha=width, out=ws.i32_a[:n])
    pix.copy_(pix32)  # (n,) y·W + x as the int64 index scatter_add_ needs
    pol = ws.f32_a[:n].copy_(p)
    if last:  # only events at exactly t[-1] (t* == B - 1): all their weight is in the last bin
        acc_k.real.scatter_add_(0, pix, pol)
        return
    # Relative times first (int64) so float32 keeps µs resolution whatever the absolute clock.
    torch.sub(t, t0, out=tmp)
    frac = ws.f32_b[:n].copy_(tmp).mul_(scale).sub_(k)  # (n,) t* - k in [0, 1); copy_ converts faster than mul
    lo, hi = torch.aminmax(frac)
    # Rounding can put frac a few 1e-7 outside [0, 1]: harmless, the two weights still sum to p.
    if float(lo) < -1e-3 or float(hi) > 1 + 1e-3:
        raise ValueError(f"{where}: timestamps must be sorted (an event lies outside its time bin)")
    src = torch.complex(pol, frac.mul_(pol), out=ws.c64[:n])  # (n,) p + i·p·frac
    acc_k.scatter_add_(0, pix, src)


def to_histogram(events: EventsLike, *, sensor_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-pixel event counts by polarity: channel 0 counts the positive events, channel 1 the negative ones.

    Returns:
        (2, H, W) float32 tensor.
    """
    x, y, _, p, (h, w) = event_tensors(events, sensor_size, where="to_histogram")
    hw = h * w
    index = _pixel_index(x, y, w).add_((p < 0).to(torch.int32), alpha=hw)  # (N,) channel·H·W + y·W + x
    counts = torch.bincount(index, minlength=2 * hw) if index.numel() else torch.zeros(2 * hw, device=x.device)
    return counts.to(torch.float32).view(2, h, w)


def _signed_sum_per_chunk(x, y, p, chunk: torch.Tensor, num_channels: int, h: int, w: int) -> torch.Tensor:
    hw = h * w
    index = _pixel_index(x, y, w).add_(chunk.to(torch.int32), alpha=hw).to(torch.int64)  # (N,)
    out = torch.zeros(num_channels * hw, dtype=torch.float32, device=x.device)
    out.scatter_add_(0, index, p.to(torch.float32))
    return out.view(num_channels, h, w)


def to_stacked_frames(
    events: EventsLike,
    num_channels: int,
    by: str = "time",
    *,
    sensor_size: tuple[int, int] | None = None,
    t_range: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Event stacking: channel i is the sum of polarities of the events of chunk i.

    ``by="time"`` (SBT) cuts ``[t_start, t_end]`` into `num_channels` equal durations, where the range is `t_range`
    (e.g. the streaming window) or the first / last timestamps; chunk i holds
    ``t_start + iΔ <= t < t_start + (i + 1)Δ`` and the last chunk also holds t == t_end. ``by="count"`` (SBN) gives
    chunk i the events ``[i·N / C, (i + 1)·N / C)`` in time order (floor boundaries).

    Returns:
        (num_channels, H, W) float32 tensor.
    """
    where = "to_stacked_frames"
    num_channels = _check_count(num_channels, "num_channels", where)
    if by not in ("time", "count"):
        raise ValueError(f"{where}: by must be 'time' or 'count', got {by!r}")
    x, y, t, p, (h, w) = event_tensors(events, sensor_size, where=where)
    n = x.shape[0]
    if n == 0:
        return torch.zeros(num_channels, h, w, dtype=torch.float32, device=x.device)
    if by == "count":
        chunk = torch.div(torch.arange(n, device=x.device) * num_channels, n, rounding_mode="floor")
        return _signed_sum_per_chunk(x, y, p, chunk, num_channels, h, w)
    _check_time_order(t, where)
    t_start, t_end = (int(t[0]), int(t[-1])) if t_range is None else (int(t_range[0]), int(t_range[1]))
    if t_end < t_start:
        raise ValueError(f"{where}: t_range must have start <= end, got {t_range}")
    if int(t[0]) < t_start or int(t[-1]) > t_end:
        raise ValueError(f"{where}: events span [{int(t[0])}, {int(t[-1])}], outside t_range {t_range}")
    if t_end == t_start:
        chunk = torch.zeros(n, dtype=torch.int64, device=x.device)
    else:
        rel = torch.sub(t, t_start).to(torch.float64).mul_(num_channels / (t_end - t_start))
        chunk = rel.floor_().clamp_(max=num_channels - 1)
    return _signed_sum_per_chunk(x, y, p, chunk, num_channels, h, w)


def to_evsegnet_image(events: EventsLike, *, sensor_size: tuple[int, int] | None = None) -> torch.Tensor:
    """The 6-channel Ev-SegNet event image.

    Channels, per polarity (+ then -): event count (0, 1), mean (2, 3) and standard deviation (4, 5) of the
    normalised timestamps ``(t - t_0) / (t_{N-1} - t_0)`` in [0, 1] of the events at that pixel (population std;
    0 where a pixel has no event of that polarity; all normalised times are 0 when t_{N-1} == t_0).

    Returns:
        (6, H, W) float32 tensor.
    """
    x, y, t, p, (h, w) = event_tensors(events, sensor_size, where="to_evsegnet_image")
    hw = h * w
    out = torch.zeros(6, h, w, dtype=torch.float32, device=x.device)
    if x.shape[0] == 0:
        return out
    _check_time_order(t, "to_evsegnet_image")
    span = int(t[-1]) - int(t[0])
    tn = torch.sub(t, int(t[0])).to(torch.float64).mul_(1.0 / span if span > 0 else 0.0)  # (N,)
    index = _pixel_index(x, y, w).add_((p < 0).to(torch.int32), alpha=hw)  # (N,) polarity channel, pixel
    count = torch.bincount(index, minlength=2 * hw).to(torch.float64)
    sum_t = torch.bincount(index, weights=tn, minlength=2 * hw)
    sum_t2 = torch.bincount(index, weights=tn * tn, minlength=2 * hw)
    safe = count.clamp(min=1)
    mean = sum_t / safe
    std = (sum_t2 / safe - mean * mean).clamp_(min=0).sqrt_()
    out.view(3, 2 * hw).copy_(torch.stack([count, mean, std]))  # (3, 2·H·W) -> (6, H, W)
    return out


def to_normalized_count_image(events: EventsLike, *, sensor_size: tuple[int, int] | None = None) -> torch.Tensor:
    """The 2-channel event input of the EvDistill release: `to_histogram` with each channel divided by its own max.

    Channel 0 is the positive, channel 1 the negative events; a channel without events stays 0.

    Returns:
        (2, H, W) float32 tensor with values in [0, 1].
    """
    hist = to_histogram(events, sensor_size=sensor_size)
    peak = hist.amax(dim=(1, 2), keepdim=True).clamp_(min=1.0)  # (2, 1, 1)
    return hist / peak

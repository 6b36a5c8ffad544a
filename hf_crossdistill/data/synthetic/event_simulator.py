"""An event-camera simulator in the ESIM / v2e model, vectorised over pixels.

Every pixel keeps a reference log intensity `L_ref`. Between two rendered frames the log intensity
`L = log(I + eps)` is assumed to move linearly in time; each time it crosses `L_ref ± C` an event of polarity
±1 fires at the linearly interpolated crossing time and the reference moves by ±C (several crossings per
interval are allowed). `C` is drawn once per pixel and polarity as `N(contrast_threshold, threshold_sigma²)`
(fixed-pattern threshold mismatch). A pixel that fired less than `refractory_period_us` ago stays blind: the
crossing still moves its reference (the change is lost, as in a real DVS pixel held in reset) but no event is
emitted. Background activity adds independent Poisson events of random polarity at `noise_rate_hz` per pixel.

Use `simulate_events(frames, timestamps_us)` for a whole clip in memory, or `EventSimulator` to stream frames
one at a time (long recordings rendered on the fly).
"""

from __future__ import annotations

import numpy as np

from ..events.core import Events

__all__ = ["EventSimulator", "simulate_events"]

_MIN_THRESHOLD = 0.01  # a mismatch draw below this would make a pixel fire on numerical noise


def _log_intensity(frame: np.ndarray, log_eps: float) -> np.ndarray:
    """(H, W) linear intensities -> (H*W,) `log(I + eps)`, bit-reproducible across processes.

    The log runs in place: numpy picks its SIMD or its scalar log loop (they differ in the last bit) from how the
    input and output buffers sit in memory, and an in-place call always takes the SIMD one (when the CPU has it).
    """
    out = frame.reshape(-1) + log_eps  # (H*W,) a fresh buffer
    return np.log(out, out=out)


def _check_frame(frame: np.ndarray, sensor_size: tuple[int, int], where: str) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float64)
    if frame.shape != tuple(sensor_size):
        raise ValueError(f"{where}: expected a frame of shape {tuple(sensor_size)} (H, W), got {frame.shape}")
    if not np.all(np.isfinite(frame)):
        raise ValueError(f"{where}: frame contains NaN or infinite values")
    if frame.min() < 0:
        raise ValueError(f"{where}: intensities must be non-negative (linear radiance), min is {frame.min()}")
    return frame


class EventSimulator:
    """Stateful ESIM / v2e pixel model: feed frames in time order with `step`, get the events in between.

    Args:
        sensor_size: (H, W) of the sensor.
        contrast_threshold: mean contrast threshold C (log units), or a (C_on, C_off) pair.
        threshold_sigma: per-pixel standard deviation of C (fixed-pattern mismatch); 0 gives exact thresholds.
        refractory_period_us: minimum time between two emitted events of one pixel (integer µs; 0 disables).
        noise_rate_hz: background-activity rate per pixel (random polarity, uniform in time); 0 disables.
        log_eps: `eps` of `log(I + eps)`; keeps dark pixels finite and damps their noise.
        seed: seeds the threshold mismatch and the noise; equal seeds give equal events.
    """

    def __init__(
        self,
        sensor_size: tuple[int, int],
        *,
        contrast_threshold: float | tuple[float, float] = 0.2,
        threshold_sigma: float = 0.03,
        refractory_period_us: int = 500,
        noise_rate_hz: float = 0.0,
        log_eps: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if len(sensor_size) != 2 or min(int(s) for s in sensor_size) <= 0:
            raise ValueError(f"sensor_size must be (H, W) with positive sizes, got {sensor_size}")
        if isinstance(contrast_threshold, (tuple, list)):
            if len(contrast_threshold) != 2:
                raise ValueError(
                    f"contrast_threshold must be a float or a (C_on, C_off) pair, got {contrast_threshold}"
                )
            c_on, c_off = float(contrast_threshold[0]), float(contrast_threshold[1])
        else:
            c_on = c_off = float(contrast_threshold)
        if not (c_on > 0 and c_off > 0):
            raise ValueError(f"contrast_threshold must be positive, got {contrast_threshold}")
        if threshold_sigma < 0:
            raise ValueError(f"threshold_sigma must be >= 0, got {threshold_sigma}")
        if refractory_period_us < 0 or int(refractory_period_us) != refractory_period_us:
            raise ValueError(f"refractory_period_us must be a non-negative integer, got {refractory_period_us}")
        if noise_rate_hz < 0:
            raise ValueError(f"noise_rate_hz must be >= 0, got {noise_rate_hz}")
        if log_eps <= 0:
            raise ValueError(f"log_eps must be positive, got {log_eps}")
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        self.refractory_period_us = int(refractory_period_us)
        self.noise_rate_hz = float(noise_rate_hz)
        self.log_eps = float(log_eps)
        self._rng = np.random.default_rng(seed)
        n = self.sensor_size[0] * self.sensor_size[1]
        self._c_on = np.maximum(c_on + threshold_sigma * self._rng.standard_normal(n), _MIN_THRESHOLD)
        self._c_off = np.maximum(c_off + threshold_sigma * self._rng.standard_normal(n), _MIN_THRESHOLD)
        self._ref: np.ndarray | None = None  # (H*W,) reference log intensity
        self._log_prev: np.ndarray | None = None  # (H*W,) log intensity of the previous frame
        self._t_prev: int | None = None
        self._last_fire = np.full(n, -np.inf)  # time (µs, float) of each pixel's last emitted event

    @property
    def time_us(self) -> int | None:
        """Timestamp of the last frame fed, None before the first."""
        return self._t_prev

    def reset(self, frame: np.ndarray, t_us: int) -> None:
        """Start (or restart) from `frame` at `t_us`: references are set to its log intensity, no events."""
        frame = _check_frame(frame, self.sensor_size, "EventSimulator.reset")
        self._log_prev = _log_intensity(frame, self.log_eps)
        self._ref = self._log_prev.copy()
        self._t_prev = int(t_us)
        self._last_fire[:] = -np.inf

    def step(self, frame: np.ndarray, t_us: int) -> Events:
        """Events fired while the scene moves from the previous frame to `frame` at `t_us` (sorted by time).

        The first call (or one after `reset`) only initialises the references and returns no events.
        """
        h, w = self.sensor_size
        if self._ref is None:
            self.reset(frame, t_us)
            return _empty(self.sensor_size)
        frame = _check_frame(frame, self.sensor_size, f"EventSimulator.step(t_us={t_us})")
        t0, t1 = self._t_prev, int(t_us)
        if t1 <= t0:
            raise ValueError(f"EventSimulator.step: timestamps must increase, got {t1} after {t0}")
        log_prev, log_cur = self._log_prev, _log_intensity(frame, self.log_eps)
        xs, ts, ps = [], [], []
        for polarity in (1, -1):
            idx, t_ev = self._crossings(log_prev, log_cur, t0, t1, polarity)
            xs.append(idx)
            ts.append(t_ev)
            ps.append(np.full(idx.shape[0], polarity, dtype=np.int8))
        if self.noise_rate_hz > 0:
            idx, t_ev, p_ev = self._noise(t0, t1)
            xs.append(idx)
            ts.append(t_ev)
            ps.append(p_ev)
        self._log_prev, self._t_prev = log_cur, t1
        pix = np.concatenate(xs)
        t_all = np.concatenate(ts)
        p_all = np.concatenate(ps)
        # A unique integer key per event (time, then pixel, then polarity) makes the order fully defined and lets
        # numpy use its fast unstable sort.
        key = (t_all - t0) * (2 * w * h) + pix * 2 + (p_all < 0)
        order = np.argsort(key)
        pix, t_all, p_all = pix[order], t_all[order], p_all[order]
        return Events(
            x=(pix % w).astype(np.int16), y=(pix // w).astype(np.int16), t=t_all, p=p_all, sensor_size=(h, w)
        )

    def _crossings(
        self, log_prev: np.ndarray, log_cur: np.ndarray, t0: int, t1: int, polarity: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indices and integer timestamps of the emitted events of one polarity; updates the state."""
        c = self._c_on if polarity > 0 else self._c_off
        # Full-frame work is one subtraction and one comparison; everything else runs on the firing pixels.
        candidates = (
            np.flatnonzero(log_cur - self._ref >= c) if polarity > 0 else np.flatnonzero(self._ref - log_cur >= c)
        )
        c_pix = c[candidates]
        ref0 = self._ref[candidates]
        n = np.floor(polarity * (log_cur[candidates] - ref0) / c_pix).astype(np.int64)
        firing = n > 0  # drops rounding ties where the comparison passed but the ratio fell just below 1
        pix, n, c_pix, ref0 = candidates[firing], n[firing], c_pix[firing], ref0[firing]
        if pix.size == 0:
            return pix, np.empty(0, dtype=np.int64)
        self._ref[pix] = ref0 + polarity * n * c_pix
        # The trajectory is monotone inside the interval and starts within one threshold of the reference
        # (invariant kept by moving the reference on every crossing), so crossing j sits at ref0 ± j·C.
        lp = log_prev[pix]
        slope_t = (t1 - t0) / (log_cur[pix] - lp)  # µs per log unit, sign matches polarity
        t_first = t0 + (ref0 + polarity * c_pix - lp) * slope_t
        spacing = polarity * c_pix * slope_t  # µs between consecutive crossings, > 0
        total = int(n.sum())
        starts = np.cumsum(n) - n
        owner = np.repeat(np.arange(pix.size), n)  # (E,) which crossing pixel each event belongs to
        j = np.arange(total) - starts[owner]  # (E,) crossing number within its pixel, from 0
        t_float = t_first[owner] + j * spacing[owner]
        if self.refractory_period_us > 0:
            keep = self._refractory_keep(pix, owner, j, t_first, spacing)
            owner, t_float = owner[keep], t_float[keep]
        if t_float.size:
            # events are grouped by owner in time order: the last of each group is the pixel's latest event
            last = np.flatnonzero(np.diff(owner, append=-1) != 0)
            self._last_fire[pix[owner[last]]] = t_float[last]
        t_int = np.clip(np.floor(t_float), t0, t1).astype(np.int64)
        return pix[owner], t_int

    def _refractory_keep(
        self, pix: np.ndarray, owner: np.ndarray, j: np.ndarray, t_first: np.ndarray, spacing: np.ndarray
    ) -> np.ndarray:
        """Which crossings are emitted under the refractory period.

        Crossings of one pixel within one interval are equally spaced, so the kept ones are closed-form: the
        first at least `R` after the pixel's last event, then every m-th with m = ceil(R / spacing).
        Flooring a float time is monotone and R is an integer, so integer gaps also stay >= R.
        """
        r = float(self.refractory_period_us)
        tol = 1e-9
        wait = self._last_fire[pix] + r - t_first  # (P,) how long after the first crossing the pixel wakes
        j0 = np.where(wait > 0, np.ceil(wait / spacing - tol), 0.0).astype(np.int64)
        step = np.maximum(np.ceil(r / spacing - tol), 1.0).astype(np.int64)
        rel = j - j0[owner]
        return (rel >= 0) & (rel % step[owner] == 0)

    def _noise(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_pix = self._c_on.shape[0]
        count = self._rng.poisson(self.noise_rate_hz * n_pix * (t1 - t0) * 1e-6)
        pix = self._rng.integers(0, n_pix, size=count)
        t_ev = self._rng.integers(t0, t1, size=count, endpoint=False).astype(np.int64)
        p_ev = np.where(self._rng.random(count) < 0.5, 1, -1).astype(np.int8)
        return pix, t_ev, p_ev


def _empty(sensor_size: tuple[int, int]) -> Events:
    return Events(
        x=np.empty(0, np.int16),
        y=np.empty(0, np.int16),
        t=np.empty(0, np.int64),
        p=np.empty(0, np.int8),
        sensor_size=sensor_size,
    )


def concatenate_events(chunks: list[Events], sensor_size: tuple[int, int]) -> Events:
    """Join time-ordered chunks (each sorted, chunk k ending no later than chunk k+1 starts)."""
    if not chunks:
        return _empty(sensor_size)
    return Events(
        x=np.concatenate([c.x for c in chunks]),
        y=np.concatenate([c.y for c in chunks]),
        t=np.concatenate([c.t for c in chunks]),
        p=np.concatenate([c.p for c in chunks]),
        sensor_size=sensor_size,
    )


def simulate_events(
    frames,
    timestamps_us,
    *,
    contrast_threshold: float | tuple[float, float] = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period_us: int = 500,
    noise_rate_hz: float = 0.0,
    log_eps: float = 1e-3,
    seed: int = 0,
) -> Events:
    """Events an ideal-plus-mismatch DVS would emit while watching `frames` (ESIM / v2e model).

    Args:
        frames: (T, H, W) non-negative linear intensities (numpy array or torch tensor), T >= 2.
        timestamps_us: (T,) strictly increasing frame times in microseconds.
        contrast_threshold, threshold_sigma, refractory_period_us, noise_rate_hz, log_eps, seed:
            see `EventSimulator`.

    Returns:
        `Events` with `sensor_size = (H, W)`, sorted by time, all timestamps within
        [timestamps_us[0], timestamps_us[-1]].

    Example:
        >>> frames = np.stack([np.full((2, 2), 1.0), np.full((2, 2), np.exp(1.1))])  # +1.1 log units
        >>> ev = simulate_events(frames, [0, 1000], threshold_sigma=0, refractory_period_us=0, log_eps=1e-9)
        >>> len(ev)  # floor(1.1 / 0.2) = 5 events per pixel
        20
    """
    frames = np.asarray(frames.detach().cpu().numpy() if hasattr(frames, "detach") else frames, dtype=np.float64)
    ts = np.asarray(timestamps_us)
    if frames.ndim != 3:
        raise ValueError(f"frames must have shape (T, H, W), got {frames.shape}")
    if ts.ndim != 1 or ts.shape[0] != frames.shape[0]:
        raise ValueError(f"timestamps_us must have shape ({frames.shape[0]},) to match frames, got {ts.shape}")
    if frames.shape[0] < 2:
        raise ValueError(f"need at least 2 frames to simulate events, got {frames.shape[0]}")
    if not np.all(np.isfinite(ts)):
        raise ValueError("timestamps_us contains NaN or infinite values")
    if np.any(np.diff(ts) <= 0):
        k = int(np.argmax(np.diff(ts) <= 0))
        raise ValueError(f"timestamps_us must be strictly increasing (t[{k}]={ts[k]} >= t[{k + 1}]={ts[k + 1]})")
    sim = EventSimulator(
        frames.shape[1:],
        contrast_threshold=contrast_threshold,
        threshold_sigma=threshold_sigma,
        refractory_period_us=refractory_period_us,
        noise_rate_hz=noise_rate_hz,
        log_eps=log_eps,
        seed=seed,
    )
    chunks = [sim.step(frame, int(t)) for frame, t in zip(frames, ts)]
    return concatenate_events(chunks, sim.sensor_size)

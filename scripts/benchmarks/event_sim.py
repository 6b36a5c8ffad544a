"""Benchmarks of the event simulator (and the driving renderer that feeds it).

`event_simulator`: events/s and frames/s of `EventSimulator` on rendered DAVIS346 driving frames, against a
naive per-pixel Python loop of the same model on a small crop, measured in the same run and compared per
pixel-frame (the loop is far too slow for the full sensor). The two must agree on the crop (event counts within
1 % with exact thresholds; only rounding at exact ties differs), which is checked before timing.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._timing import median_seconds
from hf_crossdistill.data.synthetic.event_render import make_driving_scene, render_driving_frame
from hf_crossdistill.data.synthetic.event_simulator import EventSimulator, simulate_events


def _naive_simulate(frames: np.ndarray, ts: np.ndarray, c: float, eps: float) -> int:
    """The ESIM model pixel by pixel, crossing by crossing (no refractory, exact thresholds): event count."""
    log = np.log(frames + eps)
    count = 0
    for i in range(frames.shape[1]):
        for j in range(frames.shape[2]):
            ref = log[0, i, j]
            for k in range(1, frames.shape[0]):
                a, b = log[k - 1, i, j], log[k, i, j]
                while b - ref >= c:
                    ref += c
                    _ = ts[k - 1] + (ref - a) / (b - a) * (ts[k] - ts[k - 1])  # the interpolated timestamp
                    count += 1
                while ref - b >= c:
                    ref -= c
                    _ = ts[k - 1] + (ref - a) / (b - a) * (ts[k] - ts[k - 1])
                    count += 1
    return count


def event_simulator(args) -> dict:
    """Simulator events/s and frames/s on 260x346 driving frames vs a naive per-pixel loop."""
    num_frames = 20 if args.quick else 100
    fps = 200.0
    scene = make_driving_scene(0, num_frames / fps + 1.0, night=False, tunnel=False)
    frames = np.stack([render_driving_frame(scene, k / fps, (260, 346))[0] for k in range(num_frames)])  # (T, H, W)
    ts = np.round(np.arange(num_frames) * 1e6 / fps).astype(np.int64)
    render_s = median_seconds(lambda: render_driving_frame(scene, 0.5, (260, 346)), repeats=args.repeats)

    exact = {"threshold_sigma": 0.0, "refractory_period_us": 0, "log_eps": 1e-3}
    crop = frames[:, 100:116, 150:166] if args.quick else frames[:, 100:132, 150:182]
    naive_count = _naive_simulate(crop, ts, 0.2, 1e-3)
    fast_count = len(simulate_events(crop, ts, **exact))
    # Exact agreement is not expected: a pixel returning to exactly k thresholds from its reference is a tie that
    # the loop's accumulated `ref += C` and the closed form `ref0 + n·C` may round differently.
    if abs(naive_count - fast_count) > 0.01 * max(naive_count, 1):
        raise RuntimeError(f"vectorised simulator ({fast_count} events) disagrees with the naive loop ({naive_count})")

    def run():
        sim = EventSimulator((260, 346), contrast_threshold=0.2, noise_rate_hz=0.1, seed=0)
        return sum(len(sim.step(f, int(t))) for f, t in zip(frames, ts))

    n_events = run()
    sim_s = median_seconds(run, repeats=args.repeats)
    naive_s = median_seconds(lambda: _naive_simulate(crop, ts, 0.2, 1e-3), repeats=max(1, args.repeats // 2), warmup=0)
    pixel_frames_fast = frames.shape[0] * frames.shape[1] * frames.shape[2] / sim_s
    pixel_frames_naive = crop.shape[0] * crop.shape[1] * crop.shape[2] / naive_s
    out = {
        "naive_events": naive_count,
        "vectorised_events_on_crop": fast_count,
        "frames": num_frames,
        "sensor": "260x346",
        "events": n_events,
        "events_per_s": n_events / sim_s,
        "frames_per_s": num_frames / sim_s,
        "render_frames_per_s": 1.0 / render_s,
        "naive_crop": f"{crop.shape[1]}x{crop.shape[2]}",
        "naive_pixel_frames_per_s": pixel_frames_naive,
        "pixel_frames_per_s": pixel_frames_fast,
        "speedup_vs_naive": pixel_frames_fast / pixel_frames_naive,
    }
    print(
        f"simulator: {out['events_per_s'] / 1e6:.2f} M events/s, {out['frames_per_s']:.0f} frames/s "
        f"({n_events} events over {num_frames} frames of 260x346); renderer {out['render_frames_per_s']:.0f} frames/s"
    )
    print(
        f"naive per-pixel loop: {pixel_frames_naive / 1e6:.3f} M pixel-frames/s; vectorised "
        f"{pixel_frames_fast / 1e6:.1f} M pixel-frames/s = {out['speedup_vs_naive']:.0f}x"
    )
    assert math.isfinite(out["speedup_vs_naive"])
    return out


ENTRIES = {"event_simulator": event_simulator}

"""Synthetic event-camera datasets written in the real formats (DDD17-ESS, DSEC, N-Caltech101) plus the unpaired,
labeled source-image sets EvDistill distils from.

- `make_synthetic_ddd17`: driving recordings from a DAVIS346-like sensor: events (ESS memmaps + index files),
  25 Hz APS frames (8-bit, auto-exposure with over / under-exposure, shot and read noise, motion blur) and
  per-frame 6-class labels on the top rows, as ESS pre-processed DDD17.
- `make_synthetic_dsec`: the same kind of drives from a 640x480 sensor as DSEC sequences: ``events.h5`` and
  11-class labels at 20 Hz.
- `make_synthetic_mvsec`: the same kind of drives from the DAVIS346 as MVSEC ``*_data.hdf5`` files (events and
  APS frames in one file). MVSEC has no semantic labels; the ground truth for synthetic evaluation is written in
  a separate ``synthetic_labels/`` tree that is NOT part of the MVSEC layout.
- `make_source_images`: labeled driving images of another "city and camera" (`SOURCE_STYLE`), never paired with
  the event recordings (different seeds, colours, textures, camera height, daylight only).
- `make_synthetic_ncaltech`: K procedural object classes on a screen seen by a sensor making the three saccades
  of the N-Caltech101 protocol, as ``.bin`` files in class folders; `make_recognition_source_images` draws the
  same classes in another style as labeled RGB images.

Every generator is deterministic by `seed` and atomic: it writes into a hidden temporary folder next to
`out_dir` and renames it into place at the end, so a crash never leaves a half-written dataset at `out_dir`.
Each root holds `synthetic_info.json` (classes, sensor size, seeds, the class mapping).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..events.formats import write_events
from .event_render import (
    DDD17_CLASSES,
    DSEC_CLASSES,
    DSEC_TO_DDD17,
    SOURCE_STYLE,
    TARGET_STYLE,
    DrivingScene,
    make_driving_scene,
    render_driving_frame,
)
from .event_simulator import EventSimulator, concatenate_events

__all__ = [
    "DDD17_LABEL_ROWS",
    "DavisApsModel",
    "RECOGNITION_CLASSES",
    "make_recognition_source_images",
    "make_source_images",
    "make_synthetic_ddd17",
    "make_synthetic_dsec",
    "make_synthetic_mvsec",
    "make_synthetic_ncaltech",
]

MVSEC_LABELS_DIR = "synthetic_labels"  # sidecar ground truth, not part of MVSEC (it has no semantic labels)

DDD17_LABEL_ROWS = 200  # of 260: ESS labels DDD17 on the top rows (the car hood fills the rest)
INFO_FILE = "synthetic_info.json"


# ----------------------------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def _atomic_dir(out_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes `out_dir` only if the body finishes."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(trash)
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(out)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _check_sensor(sensor_size, name: str = "sensor_size") -> tuple[int, int]:
    if len(sensor_size) != 2 or min(int(s) for s in sensor_size) < 8:
        raise ValueError(f"{name} must be (H, W) with both sizes >= 8, got {sensor_size}")
    return int(sensor_size[0]), int(sensor_size[1])


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, compress_level=1)


def _split_of(k: int, n: int, test_fraction: float) -> str:
    """The last ceil(n * test_fraction) recordings (at least one when n >= 2) are the test split."""
    n_test = 0 if n < 2 else max(1, int(np.ceil(n * test_fraction)))
    return "test" if k >= n - n_test else "train"


def _sub_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class DavisApsModel:
    """The active-pixel (frame) readout of a DAVIS: auto-exposure, motion blur, noise, 8-bit clipping.

    The exposure time follows the scene's median radiance with a lag (as DAVIS auto-exposure does), clamped to
    [`min_exposure_ms`, `max_exposure_ms`]: bright skies clip at 255 and tunnel entrances or night scenes come out
    dark and noisy, while the events (log domain) keep their contrast. The frame integrates every rendered frame
    inside its exposure window (motion blur).
    """

    def __init__(
        self,
        *,
        target: float = 0.35,
        min_exposure_ms: float = 0.05,
        max_exposure_ms: float = 30.0,
        adaptation_s: float = 0.3,
        read_noise: float = 0.01,
        full_well: float = 2000.0,
        seed: int = 0,
    ) -> None:
        self.target, self.min_exp, self.max_exp = target, min_exposure_ms, max_exposure_ms
        self.adaptation_s, self.read_noise, self.full_well = adaptation_s, read_noise, full_well
        self.exposure_ms: float | None = None
        self._rng = np.random.default_rng(seed)

    def capture(self, frames: np.ndarray, times_s: np.ndarray, t_s: float, dt_since_last_s: float) -> np.ndarray:
        """(H, W) uint8 frame read out at `t_s` from recent radiance `frames` (K, H, W) at `times_s` (K,)."""
        latest = frames[-1]
        wanted = self.target / max(float(np.median(latest)), 1e-6)  # exposure (ms) for a mid-grey median
        wanted = float(np.clip(wanted, self.min_exp, self.max_exp))
        if self.exposure_ms is None:
            self.exposure_ms = wanted
        else:
            alpha = 1.0 - np.exp(-dt_since_last_s / self.adaptation_s)
            self.exposure_ms = float(np.exp((1 - alpha) * np.log(self.exposure_ms) + alpha * np.log(wanted)))
        in_window = times_s >= t_s - self.exposure_ms * 1e-3 - 1e-9
        in_window[-1] = True
        signal = frames[in_window].mean(0) * self.exposure_ms  # (H, W) blurred over the exposure
        electrons = np.clip(signal, 0.0, 4.0) * self.full_well
        noisy = electrons + np.sqrt(electrons) * self._rng.standard_normal(signal.shape)
        value = noisy / self.full_well + self.read_noise * self._rng.standard_normal(signal.shape)
        return np.clip(np.round(value * 255.0), 0, 255).astype(np.uint8)


def _drive(
    scene: DrivingScene,
    sensor_size: tuple[int, int],
    duration_s: float,
    render_fps: float,
    label_times_us: np.ndarray,
    *,
    simulator: EventSimulator,
    aps: DavisApsModel | None,
):
    """Render the drive once: stream frames into the simulator, grab labels (and APS frames) at label times."""
    n_frames = int(np.floor(duration_s * render_fps)) + 1
    frame_us = np.round(np.arange(n_frames) * 1e6 / render_fps).astype(np.int64)
    label_frame = np.searchsorted(frame_us, label_times_us)  # label k is rendered at frame label_frame[k]
    if np.any(frame_us[np.minimum(label_frame, n_frames - 1)] != label_times_us):
        raise ValueError("label times must fall on rendered frames (label rate must divide render_fps)")
    chunks, labels, images = [], [], []
    blur_frames = max(1, int(np.ceil(aps.max_exp * 1e-3 * render_fps)) + 1) if aps is not None else 1
    recent: list[np.ndarray] = []
    recent_t: list[float] = []
    next_label = 0
    last_aps_t = 0.0
    for k, t_us in enumerate(frame_us):
        radiance, fine = render_driving_frame(scene, t_us * 1e-6, sensor_size)
        chunks.append(simulator.step(radiance, int(t_us)))
        if aps is not None:
            recent.append(radiance)
            recent_t.append(t_us * 1e-6)
            del recent[:-blur_frames], recent_t[:-blur_frames]
        while next_label < len(label_frame) and label_frame[next_label] == k:
            labels.append(fine)
            if aps is not None:
                t_s = t_us * 1e-6
                images.append(aps.capture(np.stack(recent), np.array(recent_t), t_s, t_s - last_aps_t))
                last_aps_t = t_s
            next_label += 1
    return concatenate_events(chunks, sensor_size), labels, images


def _simulator_options(
    contrast_threshold: float, threshold_sigma: float, refractory_period_us: int, noise_rate_hz: float
) -> dict:
    """The `EventSimulator` keyword options shared by the driving generators (the seed is per recording)."""
    return {
        "contrast_threshold": contrast_threshold,
        "threshold_sigma": threshold_sigma,
        "refractory_period_us": refractory_period_us,
        "noise_rate_hz": noise_rate_hz,
    }


def _simulate_recording(
    rec_seed: int,
    sensor_size: tuple[int, int],
    duration_s: float,
    render_fps: float,
    period_us: int,
    simulator_options: dict,
    *,
    with_aps: bool,
):
    """One drive of the target world: returns (scene, times_us, events, labels, APS frames).

    Labels (and APS frames when `with_aps`) are taken every `period_us`; the scene, simulator and APS model are
    all seeded by `rec_seed`.
    """
    scene = make_driving_scene(rec_seed, duration_s, style=TARGET_STYLE)
    times_us = np.arange(period_us, int(duration_s * 1e6) + 1, period_us, dtype=np.int64)
    simulator = EventSimulator(sensor_size, **simulator_options, seed=rec_seed)
    aps = DavisApsModel(seed=rec_seed) if with_aps else None
    events, labels, images = _drive(scene, sensor_size, duration_s, render_fps, times_us, simulator=simulator, aps=aps)
    return scene, times_us, events, labels, images


def _write_info(root: Path, info: dict) -> None:
    (root / INFO_FILE).write_text(json.dumps(info, indent=2))


# ----------------------------------------------------------------------------------------------------------------
# driving: DDD17 (ESS layout) and DSEC


def make_synthetic_ddd17(
    out_dir: str | os.PathLike,
    *,
    num_recordings: int = 4,
    duration_s: float = 4.0,
    seed: int = 0,
    sensor_size: tuple[int, int] = (260, 346),
    render_fps: float = 200.0,
    aps_fps: float = 25.0,
    test_fraction: float = 0.25,
    contrast_threshold: float = 0.3,
    threshold_sigma: float = 0.03,
    refractory_period_us: int = 500,
    noise_rate_hz: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """Write DDD17 recordings in the layout of ESS's pre-processed DDD17.

    Layout::

        out_dir/synthetic_info.json
        out_dir/{train,test}/rec_XXX/events.dat.t, events.dat.xyp, index/index_{10,50,250}ms.npy
        out_dir/{train,test}/rec_XXX/imgs/img_XXXXXXXX.png                 (H, W) uint8 APS frames, 25 Hz
        out_dir/{train,test}/rec_XXX/segmentation_masks/segmentation_XXXXXXXX.png  (label_rows, W) uint8

    Frame k (image, mask) belongs to index row k, whose timestamp is the APS readout time. Masks hold the 6
    DDD17 classes (`DDD17_CLASSES`, ids 0..5) on the top `round(H * 200 / 260)` rows (200 on the real sensor);
    255 is reserved for "ignore" and does not occur in rendered masks.

    Args:
        out_dir: dataset root to create.
        num_recordings: drives to render (each its own scene, lighting and traffic).
        duration_s: length of each drive.
        seed: everything is a deterministic function of it.
        sensor_size: (H, W); the real DAVIS346 is (260, 346).
        render_fps: rate of the rendered radiance frames the simulator interpolates between.
        aps_fps: APS / label rate (must divide `render_fps`).
        test_fraction: share of recordings in `test/`.
        contrast_threshold, threshold_sigma, refractory_period_us, noise_rate_hz: see `EventSimulator`. The
            default threshold 0.3 gives sparse, DDD17-like streams (0.5-1 M events/s on the full sensor).
        overwrite: replace an existing `out_dir`.

    Returns:
        The dataset root.
    """
    sensor_size = _check_sensor(sensor_size)
    _check_positive(num_recordings=num_recordings, duration_s=duration_s, render_fps=render_fps, aps_fps=aps_fps)
    label_rows = int(round(sensor_size[0] * DDD17_LABEL_ROWS / 260))
    period_us = int(round(1e6 / aps_fps))
    simulator_options = _simulator_options(contrast_threshold, threshold_sigma, refractory_period_us, noise_rate_hz)
    with _atomic_dir(out_dir, overwrite) as root:
        recordings = []
        for k in range(num_recordings):
            rec_seed = _sub_seed(seed, 17, k)
            scene, label_times, events, labels, images = _simulate_recording(
                rec_seed, sensor_size, duration_s, render_fps, period_us, simulator_options, with_aps=True
            )
            split = _split_of(k, num_recordings, test_fraction)
            rec = root / split / f"rec_{k:03d}"
            write_events(rec, events, "ddd17_ess", frame_timestamps_us=label_times)
            for i, (fine, img) in enumerate(zip(labels, images)):
                _save_png(rec / "imgs" / f"img_{i:08d}.png", img)
                _save_png(rec / "segmentation_masks" / f"segmentation_{i:08d}.png", DSEC_TO_DDD17[fine[:label_rows]])
            recordings.append({
                "path": f"{split}/rec_{k:03d}", "seed": rec_seed, "night": scene.night,
                "tunnel": bool(len(scene.tunnels)), "speed_mps": scene.speed, "num_events": len(events),
                "num_frames": len(labels),
            })  # fmt: skip
        _write_info(root, {
            "kind": "ddd17_ess", "classes": list(DDD17_CLASSES), "ignore_index": 255, "sensor_size": list(sensor_size),
            "label_rows": label_rows, "aps_fps": aps_fps, "render_fps": render_fps, "duration_s": duration_s,
            "seed": seed, "contrast_threshold": contrast_threshold, "recordings": recordings,
        })  # fmt: skip
    return Path(out_dir)


def make_synthetic_dsec(
    out_dir: str | os.PathLike,
    *,
    num_recordings: int = 2,
    duration_s: float = 3.0,
    seed: int = 0,
    sensor_size: tuple[int, int] = (480, 640),
    render_fps: float = 200.0,
    label_fps: float = 20.0,
    test_fraction: float = 0.25,
    contrast_threshold: float = 0.3,
    threshold_sigma: float = 0.03,
    refractory_period_us: int = 500,
    noise_rate_hz: float = 0.1,
    time_origin_us: int = 10**9,
    overwrite: bool = False,
) -> Path:
    """Write DSEC-Semantic-like sequences.

    Layout::

        out_dir/synthetic_info.json
        out_dir/{train,test}/seq_XXX/events/left/events.h5            (DSEC events.h5: ms_to_idx, t_offset)
        out_dir/{train,test}/seq_XXX/semantic/left/11classes/data/%06d.png   (H, W) uint8, `DSEC_CLASSES` ids
        out_dir/{train,test}/seq_XXX/semantic/left/11classes/timestamps.txt  one label time (µs) per line

    The renderer labels every pixel with the 11 DSEC classes directly (sky is "background"); the DDD17 labels of
    `make_synthetic_ddd17` are the grouping `DSEC_TO_DDD17` of the same classes, so both sets agree. Timestamps
    are absolute µs starting at `time_origin_us` (DSEC stores large absolute times through `t_offset`).

    Args: as `make_synthetic_ddd17`, with `label_fps` (20 Hz in DSEC) instead of `aps_fps`; no APS frames.
    """
    sensor_size = _check_sensor(sensor_size)
    _check_positive(num_recordings=num_recordings, duration_s=duration_s, render_fps=render_fps, label_fps=label_fps)
    period_us = int(round(1e6 / label_fps))
    simulator_options = _simulator_options(contrast_threshold, threshold_sigma, refractory_period_us, noise_rate_hz)
    with _atomic_dir(out_dir, overwrite) as root:
        recordings = []
        for k in range(num_recordings):
            rec_seed = _sub_seed(seed, 11, k)
            scene, label_times, events, labels, _ = _simulate_recording(
                rec_seed, sensor_size, duration_s, render_fps, period_us, simulator_options, with_aps=False
            )
            events.t = events.t + int(time_origin_us)
            split = _split_of(k, num_recordings, test_fraction)
            seq = root / split / f"seq_{k:03d}"
            write_events(seq / "events" / "left" / "events.h5", events, "dsec_h5", t_offset=int(time_origin_us))
            sem = seq / "semantic" / "left" / "11classes"
            for i, fine in enumerate(labels):
                _save_png(sem / "data" / f"{i:06d}.png", fine)
            np.savetxt(sem / "timestamps.txt", label_times + int(time_origin_us), fmt="%d")
            recordings.append({
                "path": f"{split}/seq_{k:03d}", "seed": rec_seed, "night": scene.night,
                "tunnel": bool(len(scene.tunnels)), "num_events": len(events), "num_labels": len(labels),
            })  # fmt: skip
        _write_info(root, {
            "kind": "dsec", "classes": list(DSEC_CLASSES), "ignore_index": 255, "sensor_size": list(sensor_size),
            "label_fps": label_fps, "render_fps": render_fps, "duration_s": duration_s, "seed": seed,
            "to_ddd17": {DSEC_CLASSES[i]: DDD17_CLASSES[int(j)] for i, j in enumerate(DSEC_TO_DDD17)},
            "time_origin_us": int(time_origin_us), "recordings": recordings,
        })  # fmt: skip
    return Path(out_dir)


def make_synthetic_mvsec(
    out_dir: str | os.PathLike,
    *,
    num_recordings: int = 2,
    duration_s: float = 3.0,
    seed: int = 0,
    sensor_size: tuple[int, int] = (260, 346),
    render_fps: float = 200.0,
    aps_fps: float = 25.0,
    test_fraction: float = 0.25,
    contrast_threshold: float = 0.3,
    threshold_sigma: float = 0.03,
    refractory_period_us: int = 500,
    noise_rate_hz: float = 0.1,
    time_origin_s: float = 1_506_117_000.0,
    with_labels: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write MVSEC-like driving recordings: one ``*_data.hdf5`` per drive with events and APS frames.

    Layout::

        out_dir/synthetic_info.json
        out_dir/{train,test}/rec_XXX_data.hdf5
            davis/left/events                (N, 4) float64 rows (x, y, t seconds, p ±1)
            davis/left/image_raw             (K, H, W) uint8 APS frames at `aps_fps`
            davis/left/image_raw_ts          (K,) float64 seconds
            davis/left/image_raw_event_inds  (K,) int64, first event at or after each frame
        out_dir/synthetic_labels/{train,test}/rec_XXX/%06d.png    (H, W) uint8, 6 DDD17 classes, frame k

    MVSEC itself has NO semantic labels (EvDistill and others train and score on pseudo labels). The
    ``synthetic_labels/`` tree is a sidecar of this generator, for evaluating on synthetic data only; label k is
    the ground truth of APS frame k over the whole frame (the synthetic camera sees no hood). Timestamps are ROS-
    like absolute seconds from `time_origin_s` (float64 keeps them µs-exact at that magnitude).

    Args: as `make_synthetic_ddd17`, plus `time_origin_s` and `with_labels` (False: no sidecar at all).
    """
    sensor_size = _check_sensor(sensor_size)
    _check_positive(num_recordings=num_recordings, duration_s=duration_s, render_fps=render_fps, aps_fps=aps_fps)
    if not 0 <= time_origin_s < 2**31:
        raise ValueError(f"time_origin_s must be in [0, 2^31) seconds, got {time_origin_s}")
    origin_us = int(round(time_origin_s * 1e6))
    period_us = int(round(1e6 / aps_fps))
    simulator_options = _simulator_options(contrast_threshold, threshold_sigma, refractory_period_us, noise_rate_hz)
    with _atomic_dir(out_dir, overwrite) as root:
        recordings = []
        for k in range(num_recordings):
            rec_seed = _sub_seed(seed, 346, k)
            scene, frame_times, events, labels, images = _simulate_recording(
                rec_seed, sensor_size, duration_s, render_fps, period_us, simulator_options, with_aps=True
            )
            events.t = events.t + origin_us
            split = _split_of(k, num_recordings, test_fraction)
            name = f"rec_{k:03d}"
            write_events(
                root / split / f"{name}_data.hdf5",
                events,
                "mvsec_h5",
                images=np.stack(images),
                image_timestamps_us=frame_times + origin_us,
            )
            if with_labels:
                for i, fine in enumerate(labels):
                    _save_png(root / MVSEC_LABELS_DIR / split / name / f"{i:06d}.png", DSEC_TO_DDD17[fine])
            recordings.append({
                "path": f"{split}/{name}_data.hdf5", "seed": rec_seed, "night": scene.night,
                "tunnel": bool(len(scene.tunnels)), "num_events": len(events), "num_frames": len(images),
            })  # fmt: skip
        _write_info(root, {
            "kind": "mvsec_h5", "classes": list(DDD17_CLASSES), "ignore_index": 255, "sensor_size": list(sensor_size),
            "aps_fps": aps_fps, "render_fps": render_fps, "duration_s": duration_s, "seed": seed,
            "time_origin_s": time_origin_s, "contrast_threshold": contrast_threshold,
            "labels_dir": MVSEC_LABELS_DIR if with_labels else None,
            "labels_note": "MVSEC has no semantic labels; synthetic_labels/ is a generator sidecar for evaluation",
            "recordings": recordings,
        })  # fmt: skip
    return Path(out_dir)


def _tone_map(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ordinary colour camera: auto-exposure on the median, sRGB-like gamma, mild noise, 8-bit."""
    exposure = 0.25 / max(float(np.median(radiance)), 1e-6)
    img = np.clip(radiance * exposure, 0, 1) ** (1 / 2.2)
    img = img + 0.01 * rng.standard_normal(img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def make_source_images(
    out_dir: str | os.PathLike,
    *,
    num_images: int = 200,
    image_size: tuple[int, int] = (256, 512),
    seed: int = 0,
    val_fraction: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """Labeled RGB driving images in another style (`SOURCE_STYLE`), unpaired with any event recording.

    Layout::

        out_dir/synthetic_info.json
        out_dir/{train,val}/images/%06d.png    (H, W, 3) uint8
        out_dir/{train,val}/labels/%06d.png    (H, W) uint8, the 6 DDD17 classes
        out_dir/{train,val}/labels_dsec/%06d.png  (H, W) uint8, the 11 DSEC classes

    Each image comes from its own random drive and instant (daylight, no tunnels: the "Cityscapes" of this world).
    """
    image_size = _check_sensor(image_size, "image_size")
    _check_positive(num_images=num_images)
    n_val = int(round(num_images * val_fraction))
    with _atomic_dir(out_dir, overwrite) as root:
        for i in range(num_images):
            s = _sub_seed(seed, 99, i)
            rng = np.random.default_rng(s)
            style = replace(SOURCE_STYLE, camera_height=float(SOURCE_STYLE.camera_height * rng.uniform(0.9, 1.15)))
            scene = make_driving_scene(s, 20.0, style=style, night=False, tunnel=False)
            # early instants keep the scene's opening pedestrian, car and sign in view
            radiance, fine = render_driving_frame(scene, float(rng.uniform(0, 0.8)), image_size, rgb=True)
            split = "val" if i >= num_images - n_val else "train"
            _save_png(root / split / "images" / f"{i:06d}.png", _tone_map(radiance, rng))
            _save_png(root / split / "labels" / f"{i:06d}.png", DSEC_TO_DDD17[fine])
            _save_png(root / split / "labels_dsec" / f"{i:06d}.png", fine)
        _write_info(root, {
            "kind": "source_images", "classes": list(DDD17_CLASSES), "dsec_classes": list(DSEC_CLASSES),
            "ignore_index": 255, "image_size": list(image_size), "num_images": num_images, "seed": seed,
        })  # fmt: skip
    return Path(out_dir)


# ----------------------------------------------------------------------------------------------------------------
# recognition: N-Caltech101-like

RECOGNITION_CLASSES = (
    "disc", "ring", "square", "triangle", "star", "cross", "stripes", "checker", "crescent", "spiral", "arrow",
    "hexagon",
)  # fmt: skip


def _object_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape of class `cls` in object coordinates (u, v in about [-1, 1]); float coverage in [0, 1]."""
    r, a = np.hypot(u, v), np.arctan2(v, u)
    name = RECOGNITION_CLASSES[cls]
    if name == "disc":
        m = r < 0.8
    elif name == "ring":
        m = (r < 0.85) & (r > 0.5)
    elif name == "square":
        m = (np.abs(u) < 0.7) & (np.abs(v) < 0.7)
    elif name == "triangle":
        m = (v > -0.6) & (v < 0.9 - 1.6 * np.abs(u) * 1.0) & (np.abs(u) < 0.9)
    elif name == "star":
        m = r < 0.45 + 0.4 * np.cos(5 * a) ** 2
    elif name == "cross":
        m = ((np.abs(u) < 0.25) | (np.abs(v) < 0.25)) & (np.abs(u) < 0.85) & (np.abs(v) < 0.85)
    elif name == "stripes":
        m = (np.abs(u) < 0.8) & (np.abs(v) < 0.8) & (np.mod(u * 3.0, 1.0) < 0.5)
    elif name == "checker":
        m = (np.abs(u) < 0.8) & (np.abs(v) < 0.8) & ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0)
    elif name == "crescent":
        m = (r < 0.8) & (np.hypot(u - 0.35, v) > 0.6)
    elif name == "spiral":
        m = (r < 0.9) & (np.mod(r * 4.0 - a / np.pi, 1.0) < 0.45)
    elif name == "arrow":
        m = ((np.abs(v) < 0.2) & (u > -0.8) & (u < 0.2)) | ((u >= 0.1) & (u < 0.85) & (np.abs(v) < 0.7 * (0.85 - u)))
    elif name == "hexagon":
        m = np.maximum(np.abs(u) * 0.866 + np.abs(v) * 0.5, np.abs(v)) < 0.75
    else:  # pragma: no cover - guarded by the class count check
        raise ValueError(cls)
    return m.astype(np.float64)


def _object_image(
    cls: int, params: dict, size: tuple[int, int], *, colour: bool, margin: int = 0, supersample: int = 3
) -> np.ndarray:
    """The object of class `cls` on a screen, box-filtered over each pixel (`supersample`² samples).

    Returns the (H + 2·margin, W + 2·margin[, 3]) view whose pixel (margin, margin) is the sensor's (0, 0), so
    that `_shift_view` can move the sensor by up to `margin` pixels without re-rendering.
    """
    h, w = size
    ss = supersample
    ys = (np.arange(-margin * ss, (h + margin) * ss) + 0.5) / ss  # pixel-centre coordinates of the sub-samples
    xs = (np.arange(-margin * ss, (w + margin) * ss) + 0.5) / ss
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    unit = params["scale"] * min(h, w) / 2
    x = (xx - w / 2 - params["dx"]) / unit
    y = (yy - h / 2 - params["dy"]) / unit
    c, s = np.cos(params["angle"]), np.sin(params["angle"])
    mask = _object_mask(cls, c * x + s * y, -s * x + c * y)
    texture = 1.0 + params["texture"] * np.sin(params["freq"] * xx + params["phase"]) * np.sin(
        params["freq"] * 0.7 * yy
    )
    if colour:
        fg, bg = np.asarray(params["fg_rgb"]), np.asarray(params["bg_rgb"])
        img = (mask[..., None] * fg + (1 - mask[..., None]) * bg) * texture[..., None]
    else:
        img = (mask * params["fg"] + (1 - mask) * params["bg"]) * texture
    hh, ww = h + 2 * margin, w + 2 * margin
    return img.reshape(hh, ss, ww, ss, *img.shape[2:]).mean(axis=(1, 3))  # (hh, ww[, 3]) box filter


def _shift_view(view: np.ndarray, shift_xy: tuple[float, float], margin: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W) sensor image of `view` with the sensor moved by `shift_xy` pixels (bilinear, sub-pixel)."""
    h, w = size
    sx, sy = shift_xy
    ix, iy = int(np.floor(sx)), int(np.floor(sy))
    fx, fy = sx - ix, sy - iy
    if not (-margin <= ix and ix + 1 <= margin and -margin <= iy and iy + 1 <= margin):
        raise ValueError(f"shift {shift_xy} exceeds the rendered margin of {margin} pixels")
    r, c = margin + iy, margin + ix
    return (
        (1 - fy) * ((1 - fx) * view[r : r + h, c : c + w] + fx * view[r : r + h, c + 1 : c + w + 1])
        + fy * ((1 - fx) * view[r + 1 : r + h + 1, c : c + w] + fx * view[r + 1 : r + h + 1, c + 1 : c + w + 1])
    )  # fmt: skip


def _saccade_offsets(times_s: np.ndarray, amplitude_px: float, saccade_s: float) -> np.ndarray:
    """(T, 2) sensor offsets along the N-Caltech triangle: three saccades, each an eased straight move."""
    corners = amplitude_px * np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    k = np.clip((times_s // saccade_s).astype(int), 0, 2)
    f = np.clip(times_s / saccade_s - k, 0.0, 1.0)
    ease = 0.5 - 0.5 * np.cos(np.pi * f)  # (T,)
    return corners[k] + ease[:, None] * (corners[k + 1] - corners[k])


def _sample_params(rng: np.random.Generator, source_style: bool) -> dict:
    if source_style:  # printed photos: colour, light backgrounds, coarse texture, bigger objects
        return {
            "dx": rng.uniform(-12, 12), "dy": rng.uniform(-10, 10), "scale": rng.uniform(0.65, 0.9),
            "angle": rng.uniform(-0.5, 0.5), "texture": rng.uniform(0.0, 0.15), "freq": rng.uniform(0.1, 0.3),
            "phase": rng.uniform(0, 6.3), "fg_rgb": rng.uniform(0.05, 0.6, 3), "bg_rgb": rng.uniform(0.6, 1.0, 3),
        }  # fmt: skip
    return {
        "dx": rng.uniform(-20, 20), "dy": rng.uniform(-15, 15), "scale": rng.uniform(0.45, 0.75),
        "angle": rng.uniform(-np.pi, np.pi), "texture": rng.uniform(0.05, 0.3), "freq": rng.uniform(0.3, 0.9),
        "phase": rng.uniform(0, 6.3), "fg": rng.uniform(0.6, 1.0), "bg": rng.uniform(0.05, 0.3),
    }  # fmt: skip


def _check_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= len(RECOGNITION_CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(RECOGNITION_CLASSES)}], got {num_classes}")


def make_synthetic_ncaltech(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 10,
    samples_per_class: int = 20,
    seed: int = 0,
    sensor_size: tuple[int, int] = (180, 240),
    saccade_ms: float = 100.0,
    amplitude_px: float = 6.0,
    render_fps: float = 500.0,
    contrast_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period_us: int = 500,
    noise_rate_hz: float = 0.2,
    overwrite: bool = False,
) -> Path:
    """N-Caltech101-like recognition recordings: ``out_dir/<class>/image_XXXX.bin`` (N-Caltech ``.bin``).

    Each sample is one object (random pose, size, contrast and surface texture) shown on a screen while the sensor
    makes the three saccades of the N-Caltech101 protocol (a triangle, `saccade_ms` each). Classes are
    `RECOGNITION_CLASSES[:num_classes]`; `synthetic_info.json` lists them in label order.
    """
    _check_classes(num_classes)
    _check_positive(samples_per_class=samples_per_class, saccade_ms=saccade_ms, render_fps=render_fps)
    sensor_size = _check_sensor(sensor_size)
    if sensor_size[0] >= 240 or sensor_size[1] > 256:
        raise ValueError(f"N-Caltech .bin stores x, y in a byte and y < 240: sensor_size {sensor_size} too large")
    classes = RECOGNITION_CLASSES[:num_classes]
    n_frames = int(round(3 * saccade_ms * 1e-3 * render_fps)) + 1
    times_s = np.arange(n_frames) / render_fps
    offsets = _saccade_offsets(times_s, amplitude_px, saccade_ms * 1e-3)
    margin = int(np.ceil(np.abs(offsets).max())) + 1
    with _atomic_dir(out_dir, overwrite) as root:
        counts = {}
        for c, name in enumerate(classes):
            for i in range(samples_per_class):
                s = _sub_seed(seed, 101, c, i)
                rng = np.random.default_rng(s)
                params = _sample_params(rng, source_style=False)
                sim = EventSimulator(
                    sensor_size,
                    contrast_threshold=contrast_threshold,
                    threshold_sigma=threshold_sigma,
                    refractory_period_us=refractory_period_us,
                    noise_rate_hz=noise_rate_hz,
                    seed=s,
                )
                view = _object_image(c, params, sensor_size, colour=False, margin=margin)
                chunks = [
                    sim.step(_shift_view(view, tuple(off), margin, sensor_size), int(round(t * 1e6)))
                    for t, off in zip(times_s, offsets)
                ]
                events = concatenate_events(chunks, sensor_size)
                write_events(root / name / f"image_{i:04d}.bin", events, "ncaltech_bin")
                counts.setdefault(name, []).append(len(events))
        _write_info(root, {
            "kind": "ncaltech_bin", "classes": list(classes), "sensor_size": list(sensor_size),
            "samples_per_class": samples_per_class, "seed": seed, "saccade_ms": saccade_ms,
            "num_events": counts,
        })  # fmt: skip
    return Path(out_dir)


def make_recognition_source_images(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 10,
    samples_per_class: int = 20,
    image_size: tuple[int, int] = (180, 240),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """The labeled source modality for recognition: ``out_dir/<class>/XXXX.png`` RGB images of the same classes
    as `make_synthetic_ncaltech`, drawn in another style (colour, light backgrounds, milder rotation) and unpaired
    (different seeds) — the Caltech101 images of this world."""
    _check_classes(num_classes)
    _check_positive(samples_per_class=samples_per_class)
    image_size = _check_sensor(image_size, "image_size")
    classes = RECOGNITION_CLASSES[:num_classes]
    with _atomic_dir(out_dir, overwrite) as root:
        for c, name in enumerate(classes):
            for i in range(samples_per_class):
                rng = np.random.default_rng(_sub_seed(seed, 202, c, i))
                img = _object_image(c, _sample_params(rng, source_style=True), image_size, colour=True)
                img = np.clip(img, 0, 1) ** (1 / 2.2) + 0.01 * rng.standard_normal(img.shape)
                _save_png(root / name / f"{i:04d}.png", np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
        _write_info(root, {
            "kind": "recognition_source_images", "classes": list(classes), "image_size": list(image_size),
            "samples_per_class": samples_per_class, "seed": seed,
        })  # fmt: skip
    return Path(out_dir)

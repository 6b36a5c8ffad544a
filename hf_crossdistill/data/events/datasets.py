"""Streaming `datasets.IterableDataset`s over event recordings and labeled images.

- `event_segmentation_dataset`: DDD17-ESS, DSEC or MVSEC recordings → one example per labeled (MVSEC: APS) frame:
  the event representation of the window before it, the label map, and (DDD17, MVSEC) the APS frame.
- `event_recognition_dataset`: N-Caltech101 layout (``<class>/<file>.bin``) → representation + class label.
- `labeled_image_dataset`: the source modality: ``images/`` + ``labels/`` folders (segmentation) or class
  folders of images (classification).

Datasets are built with ``IterableDataset.from_generator(gen, gen_kwargs={"shards": [...]})``; a shard is a
run of frames of one recording (or one file), so `n_shards` can be made a multiple of world_size x workers with
`frames_per_shard`. Pass the dataset UNSPLIT to Trainer / accelerate (they shard per rank themselves; calling
`split_dataset_by_node` first silently drops data). Examples hold plain float32 / int64 numpy arrays (Arrow- and
collator-friendly); use ``.with_format("torch")`` for tensors.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .formats import DAVIS346_SENSOR_SIZE, DSEC_SENSOR_SIZE, MvsecRecording, open_recording
from .representations import (
    to_evsegnet_image,
    to_histogram,
    to_normalized_count_image,
    to_stacked_frames,
    to_voxel_grid,
)

__all__ = [
    "DSEC_TO_DDD17_LABELS",
    "REPRESENTATIONS",
    "event_recognition_dataset",
    "event_representation",
    "event_segmentation_dataset",
    "labeled_image_dataset",
    "representation_channels",
]

# DSEC-Semantic's 11 classes (background, building, fence, person, pole, road, sidewalk, vegetation, car, wall,
# traffic sign) grouped into DDD17's 6 (flat, construction+sky, object, nature, human, vehicle).
DSEC_TO_DDD17_LABELS = np.array([1, 1, 1, 4, 2, 0, 0, 3, 5, 1, 2], dtype=np.int64)
IGNORE_INDEX = 255
SEGMENTATION_LAYOUTS = ("ddd17_ess", "dsec", "mvsec")
MVSEC_LABELS_DIR = "synthetic_labels"  # `make_synthetic_mvsec`'s sidecar ground truth (MVSEC has no labels)
NCALTECH_SENSOR_SIZE = (180, 240)  # every N-Caltech101 recording fits in it
_INFO_FILE = "synthetic_info.json"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _voxel(events, window, *, num_bins: int = 5):
    return to_voxel_grid(events, num_bins)


def _stacked(events, window, *, num_channels: int = 5, by: str = "time"):
    return to_stacked_frames(events, num_channels, by, t_range=window if by == "time" else None)


# name -> (function(events, window (t0, t1) or None, **kwargs), channels(**kwargs))
REPRESENTATIONS: dict[str, tuple[Callable, Callable[..., int]]] = {
    "voxel_grid": (_voxel, lambda num_bins=5: int(num_bins)),
    "histogram": (lambda events, window: to_histogram(events), lambda: 2),
    "stacked_frames": (_stacked, lambda num_channels=5, by="time": int(num_channels)),
    "evsegnet": (lambda events, window: to_evsegnet_image(events), lambda: 6),
    "normalized_count": (lambda events, window: to_normalized_count_image(events), lambda: 2),
}


def _check_representation(name: str, kwargs: dict | None) -> dict:
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {name!r}; choose one of {sorted(REPRESENTATIONS)}")
    kwargs = dict(kwargs or {})
    try:
        REPRESENTATIONS[name][1](**kwargs)
    except TypeError as err:
        raise ValueError(f"representation {name!r}: bad representation_kwargs {kwargs}: {err}") from None
    return kwargs


def representation_channels(name: str, **kwargs) -> int:
    """Number of channels of representation `name` with `kwargs` (e.g. ``num_bins`` of the voxel grid)."""
    return REPRESENTATIONS[name][1](**_check_representation(name, kwargs))


def event_representation(events, name: str, window_us: tuple[int, int] | None = None, **kwargs) -> torch.Tensor:
    """(C, H, W) float32 tensor: representation `name` (a key of `REPRESENTATIONS`) of `events`.

    `window_us` is the time window the events were cut from; SBT stacking uses it to place the chunk
    boundaries (so an empty stretch of the window stays empty instead of being stretched away).
    """
    kwargs = _check_representation(name, kwargs)
    return REPRESENTATIONS[name][0](events, window_us, **kwargs)


def _resize(array: torch.Tensor, size: tuple[int, int] | None, mode: str) -> torch.Tensor:
    """(C, H, W) → (C, *size); nearest for labels, bilinear otherwise."""
    if size is None or tuple(array.shape[-2:]) == tuple(size):
        return array
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(array[None].to(torch.float32), size=tuple(size), mode=mode, **kw)[0]  # (C, h, w)
    return out.to(array.dtype) if mode == "nearest" else out


def _check_output_size(output_size) -> tuple[int, int] | None:
    if output_size is None:
        return None
    if len(output_size) != 2 or min(int(s) for s in output_size) <= 0:
        raise ValueError(f"output_size must be (H, W) with positive sizes, got {output_size}")
    return int(output_size[0]), int(output_size[1])


def _check_window(window_ms, num_events) -> None:
    if (window_ms is None) == (num_events is None):
        raise ValueError(
            f"pass exactly one of window_ms and num_events, got window_ms={window_ms}, num_events={num_events}"
        )
    if window_ms is not None and not window_ms > 0:
        raise ValueError(f"window_ms must be positive, got {window_ms}")
    if num_events is not None and (int(num_events) != num_events or num_events <= 0):
        raise ValueError(f"num_events must be a positive integer, got {num_events}")


def _read_info(root: Path) -> dict:
    f = root / _INFO_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _split_dirs(root: Path, split: str | None) -> list[Path]:
    base = root if split is None else root / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such folder (root={root}, split={split!r})")
    return [base]


def _window_events(rec, t_label: int, window_ms: float | None, num_events: int | None, frame: int):
    """Events before the label time: ``[t - window, t)`` or the last `num_events` before t."""
    if num_events is not None:
        i1 = rec.index_of_time(t_label)
        events = rec.read_count(max(0, i1 - num_events), min(num_events, i1))
        window = (int(events.t[0]), t_label) if len(events) else (t_label, t_label)
        return events, window
    w_us = int(round(window_ms * 1000))
    if hasattr(rec, "read_frame_window") and float(window_ms) in (10.0, 50.0, 250.0):
        events = rec.read_frame_window(frame, int(window_ms))  # the ESS index files, as ESS reads them
    else:
        events = rec.read_window(t_label - w_us, t_label)
    return events, (t_label - w_us, t_label)


# ----------------------------------------------------------------------------------------------------------------
# segmentation


def _ddd17_recordings(root: Path, split: str | None) -> list[Path]:
    recs = []
    for base in _split_dirs(root, split):
        recs += sorted(p.parent for p in base.rglob("events.dat.t"))
    return recs


def _dsec_recordings(root: Path, split: str | None) -> list[Path]:
    recs = []
    for base in _split_dirs(root, split):
        recs += sorted(p.parents[2] for p in base.rglob("events/left/events.h5"))
    return recs


def _mvsec_recordings(root: Path, split: str | None) -> list[Path]:
    recs = []
    for base in _split_dirs(root, split):
        recs += sorted(p for p in base.rglob("*.hdf5") if MVSEC_LABELS_DIR not in p.relative_to(root).parts)
    return recs


def _mvsec_frames(rec: Path, sensor_size: tuple[int, int]) -> np.ndarray:
    """(K,) APS frame timestamps in µs (``davis/left/image_raw_ts``): one example per APS frame."""
    with MvsecRecording(rec, sensor_size) as r:
        if r.num_images == 0:
            raise FileNotFoundError(f"{rec}: MVSEC file has no davis/left/image_raw (APS frames)")
        return r.image_timestamps_us()


def _mvsec_label_dir(labels_root: Path | None, root: Path, rec: Path) -> Path | None:
    """``<labels_root>/<split>/<rec name>/`` for ``<root>/<split>/<rec name>_data.hdf5``, if it exists."""
    if labels_root is None:
        return None
    rel = rec.relative_to(root)
    stem = rel.name[: -len("_data.hdf5")] if rel.name.endswith("_data.hdf5") else rec.stem
    folder = labels_root / rel.parent / stem
    return folder if folder.is_dir() else None


def _ddd17_frames(rec: Path) -> np.ndarray:
    """(K,) label timestamps in µs from the ESS index file (row k ↔ segmentation_k ↔ img_k)."""
    index = rec / "index" / "index_50ms.npy"
    if not index.is_file():
        raise FileNotFoundError(f"{rec}: DDD17-ESS recording has no index/index_50ms.npy")
    rows = np.load(index)
    return rows[:, 0].astype(np.int64) // 1000


def _dsec_frames(rec: Path) -> np.ndarray:
    f = rec / "semantic" / "left" / "11classes" / "timestamps.txt"
    if not f.is_file():
        raise FileNotFoundError(f"{rec}: DSEC sequence has no semantic/left/11classes/timestamps.txt")
    return np.atleast_1d(np.loadtxt(f, dtype=np.int64))


def _event_example(
    rec,
    rec_name: str,
    k: int,
    t_frame: int,
    *,
    labels: np.ndarray | None = None,
    representation: str,
    representation_kwargs: dict,
    window_ms: float | None,
    num_events: int | None,
    output_size: tuple[int, int] | None,
) -> dict:
    """Frame `k`'s example without the APS image: the representation of the events before `t_frame`, then the
    recording fields. With `labels` ((H', W) int64; DDD17 labels cover the top rows only) the representation is
    cropped to its H' rows and ``labels`` follows ``events``."""
    events, window = _window_events(rec, t_frame, window_ms, num_events, k)
    rep = event_representation(events, representation, window, **representation_kwargs)
    example = {}
    if labels is None:
        example["events"] = _resize(rep, output_size, "bilinear").numpy()
    else:
        example["events"] = _resize(rep[:, : labels.shape[0]], output_size, "bilinear").numpy()
        example["labels"] = _resize(torch.from_numpy(labels)[None], output_size, "nearest")[0].numpy()
    example.update(recording=rec_name, frame=k, timestamp_us=t_frame, num_events=len(events))
    return example


def _segmentation_examples(
    shards: list[tuple[str, str, int, int, Path | None]],
    *,
    layout: str,
    sensor_size: tuple[int, int],
    representation: str,
    representation_kwargs: dict,
    window_ms: float | None,
    num_events: int | None,
    output_size: tuple[int, int] | None,
    with_images: bool,
    label_set: str,
) -> Iterator[dict]:
    event_example = functools.partial(
        _event_example,
        representation=representation,
        representation_kwargs=representation_kwargs,
        window_ms=window_ms,
        num_events=num_events,
        output_size=output_size,
    )
    for rec_path, rec_name, f0, f1, label_dir in shards:
        rec_dir = Path(rec_path)
        if layout == "mvsec":
            yield from _mvsec_examples(
                rec_dir, rec_name, f0, f1, None if label_dir is None else Path(label_dir),
                sensor_size=sensor_size, output_size=output_size, with_images=with_images, event_example=event_example,
            )  # fmt: skip
            continue
        if layout == "ddd17_ess":
            times = _ddd17_frames(rec_dir)
            source = rec_dir
        else:
            times = _dsec_frames(rec_dir)
            source = rec_dir / "events" / "left" / "events.h5"
        with open_recording(source, layout if layout == "ddd17_ess" else "dsec_h5", sensor_size=sensor_size) as rec:
            for k in range(f0, f1):
                t_label = int(times[k])
                if layout == "ddd17_ess":
                    label = _load_png(rec_dir / "segmentation_masks" / f"segmentation_{k:08d}.png").astype(np.int64)
                else:
                    label = _load_png(rec_dir / "semantic" / "left" / "11classes" / "data" / f"{k:06d}.png")
                    label = label.astype(np.int64)
                    if label_set == "ddd17":
                        label = np.where(
                            label < len(DSEC_TO_DDD17_LABELS),
                            DSEC_TO_DDD17_LABELS[np.minimum(label, 10)],
                            IGNORE_INDEX,
                        )
                rows = label.shape[0]  # DDD17 labels cover the top rows only: the inputs are cropped to them
                example = event_example(rec, rec_name, k, t_label, labels=label)
                if with_images and layout == "ddd17_ess":
                    img = _load_png(rec_dir / "imgs" / f"img_{k:08d}.png").astype(np.float32)[:rows] / 255.0
                    example["image"] = _resize(torch.from_numpy(img)[None], output_size, "bilinear").numpy()
                yield example


def _mvsec_examples(
    rec_path: Path,
    rec_name: str,
    f0: int,
    f1: int,
    label_dir: Path | None,
    *,
    sensor_size: tuple[int, int],
    output_size: tuple[int, int] | None,
    with_images: bool,
    event_example: Callable[..., dict],
) -> Iterator[dict]:
    """Frames f0 .. f1 - 1 of an MVSEC file: events before each APS timestamp, the APS frame, sidecar labels.

    `event_example`: `_event_example` with the representation options bound (as `_segmentation_examples` makes it).
    """
    with MvsecRecording(rec_path, sensor_size) as rec:
        times = rec.image_timestamps_us()
        for k in range(f0, f1):
            t_frame = int(times[k])
            example = event_example(rec, rec_name, k, t_frame)
            if label_dir is not None:
                label_file = label_dir / f"{k:06d}.png"
                if not label_file.is_file():
                    raise FileNotFoundError(f"{rec_path}: APS frame {k} has no label {label_file}")
                label = torch.from_numpy(_load_png(label_file).astype(np.int64))
                if tuple(label.shape) != tuple(sensor_size):
                    raise ValueError(f"{label_file}: label map is {tuple(label.shape)}, the sensor is {sensor_size}")
                example["labels"] = _resize(label[None], output_size, "nearest")[0].numpy()
            if with_images:
                img = torch.from_numpy(rec.read_image(k).astype(np.float32) / 255.0)[None]  # (1, H, W)
                example["image"] = _resize(img, output_size, "bilinear").numpy()
            yield example


def _sensor_size_of(root: Path, layout: str, first_rec: Path | None, sensor_size) -> tuple[int, int]:
    if sensor_size is not None:
        return int(sensor_size[0]), int(sensor_size[1])
    info = _read_info(root)
    if "sensor_size" in info:
        return tuple(int(s) for s in info["sensor_size"])
    if first_rec is not None and layout == "ddd17_ess":
        imgs = sorted((first_rec / "imgs").glob("img_*.png"))
        if imgs:
            return _load_png(imgs[0]).shape[:2]
    return DSEC_SENSOR_SIZE if layout == "dsec" else DAVIS346_SENSOR_SIZE


def _shards(recs: list[Path], root: Path, num_frames: list[int], frames_per_shard: int | None, label_dirs=None):
    shards = []
    label_dirs = label_dirs or [None] * len(recs)
    for rec, n, labels in zip(recs, num_frames, label_dirs):
        step = n if frames_per_shard is None else int(frames_per_shard)
        for f0 in range(0, n, max(step, 1)):
            label_dir = None if labels is None else str(labels)
            shards.append((str(rec), rec.relative_to(root).as_posix(), f0, min(n, f0 + step), label_dir))
    return shards


def event_segmentation_dataset(
    root: str | os.PathLike,
    *,
    layout: str = "ddd17_ess",
    split: str | None = "train",
    representation: str = "voxel_grid",
    representation_kwargs: dict | None = None,
    window_ms: float | None = 50.0,
    num_events: int | None = None,
    output_size: tuple[int, int] | None = None,
    with_images: bool = True,
    label_set: str = "ddd17",
    frames_per_shard: int | None = None,
    sensor_size: tuple[int, int] | None = None,
    labels_root: str | os.PathLike | None = None,
) -> datasets.IterableDataset:
    """One example per labeled frame of DDD17-ESS or DSEC recordings, or per APS frame of MVSEC recordings.

    Args:
        root: dataset root (e.g. from `make_synthetic_ddd17` / `make_synthetic_dsec`, or the real ones).
        layout: ``"ddd17_ess"`` (``<split>/<rec>/events.dat.*``, masks and APS images), ``"dsec"``
            (``<split>/<seq>/events/left/events.h5`` + ``semantic/left/11classes``) or ``"mvsec"``
            (``<split>/*.hdf5`` MVSEC files: one example per ``davis/left/image_raw`` frame, the window ending at
            its ``image_raw_ts``; whole frames, no row crop). MVSEC has no semantic labels: ``labels`` come from
            `labels_root` when it holds ``<split>/<name>/%06d.png`` for ``<split>/<name>_data.hdf5`` (the sidecar
            of `make_synthetic_mvsec`), otherwise the examples have no ``labels`` (train-only, EvDistill needs none).
        split: sub-folder of `root` (None: search all of `root`).
        representation: a key of `REPRESENTATIONS`; `representation_kwargs` its options (e.g. ``num_bins``).
        window_ms: events of ``[t_label - window_ms, t_label)`` (10 / 50 / 250 use the ESS index files).
        num_events: instead of a time window, the `num_events` events before the label.
        output_size: (H, W) to resize events (bilinear), APS images (bilinear) and labels (nearest) to, e.g.
            (256, 512) as EvDistill; None keeps the label size.
        with_images: add the APS frame (``"image"``, (1, H, W) float32 in [0, 1]) for DDD17.
        label_set: for DSEC, ``"ddd17"`` maps the 11 classes to the 6 DDD17 classes; ``"dsec"`` keeps them.
        frames_per_shard: split recordings into shards of this many frames (more shards for more ranks/workers).
        sensor_size: (H, W) override; default from ``synthetic_info.json``, the APS images or the format.
        labels_root: MVSEC only: folder of sidecar label maps; default ``<root>/synthetic_labels`` when it exists.

    Returns:
        IterableDataset of dicts: ``events`` (C, H, W) float32 (cropped to the label rows), ``labels`` (H, W)
        int64 (255 = ignore; MVSEC: only with sidecar labels), ``recording`` (str), ``frame`` (int),
        ``timestamp_us`` (int), ``num_events`` (int), and ``image`` for DDD17 / MVSEC when `with_images`.
    """
    root = Path(root)
    if layout not in SEGMENTATION_LAYOUTS:
        raise ValueError(f"layout must be one of {SEGMENTATION_LAYOUTS}, got {layout!r}")
    if labels_root is not None and layout != "mvsec":
        raise ValueError(f"labels_root is for layout 'mvsec' only (got layout {layout!r})")
    if label_set not in ("ddd17", "dsec"):
        raise ValueError(f"label_set must be 'ddd17' or 'dsec', got {label_set!r}")
    if frames_per_shard is not None and frames_per_shard <= 0:
        raise ValueError(f"frames_per_shard must be positive, got {frames_per_shard}")
    _check_window(window_ms, num_events)
    kwargs = _check_representation(representation, representation_kwargs)
    output_size = _check_output_size(output_size)
    finders = {"ddd17_ess": _ddd17_recordings, "dsec": _dsec_recordings, "mvsec": _mvsec_recordings}
    recs = finders[layout](root, split)
    if not recs:
        raise FileNotFoundError(f"{root}: no {layout} recordings found (split={split!r})")
    size = _sensor_size_of(root, layout, recs[0], sensor_size)
    label_dirs = None
    if layout == "mvsec":
        num_frames = [len(_mvsec_frames(r, size)) for r in recs]
        if labels_root is None and (root / MVSEC_LABELS_DIR).is_dir():
            labels_root = root / MVSEC_LABELS_DIR
        elif labels_root is not None and not Path(labels_root).is_dir():
            raise FileNotFoundError(f"labels_root {labels_root}: no such folder")
        lroot = None if labels_root is None else Path(labels_root)
        label_dirs = [_mvsec_label_dir(lroot, root, r) for r in recs]
        if lroot is not None and any(d is None for d in label_dirs) and not all(d is None for d in label_dirs):
            missing = [r.name for r, d in zip(recs, label_dirs) if d is None]
            raise FileNotFoundError(f"{lroot}: sidecar labels missing for {missing} (all recordings or none)")
    else:
        num_frames = [len(_ddd17_frames(r) if layout == "ddd17_ess" else _dsec_frames(r)) for r in recs]
    return datasets.IterableDataset.from_generator(
        _segmentation_examples,
        gen_kwargs={
            "shards": _shards(recs, root, num_frames, frames_per_shard, label_dirs),
            "layout": layout,
            "sensor_size": size,
            "representation": representation,
            "representation_kwargs": kwargs,
            "window_ms": window_ms,
            "num_events": None if num_events is None else int(num_events),
            "output_size": output_size,
            "with_images": with_images,
            "label_set": label_set,
        },
    )


# ----------------------------------------------------------------------------------------------------------------
# recognition


def _class_folders(root: Path, classes: list[str] | None) -> list[str]:
    if classes is None:
        info = _read_info(root)
        classes = info.get("classes") or sorted(
            p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders found")
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: class folders {missing} are missing")
    return list(classes)


def _split_files(files: list[Path], split: str | None, test_fraction: float) -> list[Path]:
    """Per class: the last ceil(n * test_fraction) files (sorted by name) are `test`, the rest `train`."""
    if split is None:
        return files
    n_test = int(np.ceil(len(files) * test_fraction)) if len(files) > 1 else 0
    return files[len(files) - n_test :] if split == "test" else files[: len(files) - n_test]


def _labeled_files(root: Path, classes: list[str], suffixes: tuple[str, ...], split, test_fraction):
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in suffixes)
        items += [(str(f), label) for f in _split_files(files, split, test_fraction)]
    if not items:
        raise FileNotFoundError(f"{root}: no {'/'.join(suffixes)} files found (split={split!r})")
    return items


def _recognition_examples(
    shards: list[tuple[str, int]],
    *,
    sensor_size: tuple[int, int],
    representation: str,
    representation_kwargs: dict,
    window_ms: float | None,
    num_events: int | None,
    output_size: tuple[int, int] | None,
) -> Iterator[dict]:
    for path, label in shards:
        with open_recording(path, "ncaltech_bin", sensor_size=sensor_size) as rec:
            if num_events is not None:
                events = rec.read_count(0, num_events)  # the first N events, as in "EvDistill-20K events"
                window = (int(events.t[0]), int(events.t[-1])) if len(events) else None
            elif window_ms is not None:
                t0 = rec.t_first_us
                events = rec.read_window(t0, t0 + int(round(window_ms * 1000)))
                window = (t0, t0 + int(round(window_ms * 1000)))
            else:
                events = rec.read_all()
                window = (rec.t_first_us, rec.t_last_us) if len(events) else None
        rep = event_representation(events, representation, window, **representation_kwargs)
        yield {
            "events": _resize(rep, output_size, "bilinear").numpy(),
            "label": int(label),
            "path": path,
            "num_events": len(events),
        }


def _recognition_sensor_size(root: Path, sensor_size) -> tuple[int, int]:
    if sensor_size is None:
        sensor_size = _read_info(root).get("sensor_size", NCALTECH_SENSOR_SIZE)
    if len(sensor_size) != 2 or min(int(s) for s in sensor_size) <= 0:
        raise ValueError(f"{root}: sensor_size must be (H, W) with positive sizes, got {sensor_size}")
    return int(sensor_size[0]), int(sensor_size[1])


def event_recognition_dataset(
    root: str | os.PathLike,
    *,
    split: str | None = None,
    test_fraction: float = 0.2,
    representation: str = "histogram",
    representation_kwargs: dict | None = None,
    num_events: int | None = None,
    window_ms: float | None = None,
    output_size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
    sensor_size: tuple[int, int] | None = None,
) -> datasets.IterableDataset:
    """N-Caltech101-layout recognition samples (``root/<class>/*.bin``), one shard per file.

    Args:
        root: dataset root (e.g. from `make_synthetic_ncaltech` or N-Caltech101 itself).
        split: None (all files), ``"train"`` or ``"test"``: per class, the last `test_fraction` of the files
            sorted by name are the test split.
        representation, representation_kwargs: as in `event_segmentation_dataset`.
        num_events: use the first N events of each file; `window_ms`: the first window_ms; neither: all events.
        output_size: (H, W) to resize the representation to.
        classes: label order; default ``synthetic_info.json`` or the sorted class folder names.
        sensor_size: (H, W) of the representation; default the ``sensor_size`` of ``synthetic_info.json``, else
            180 x 240 (N-Caltech101 fits in it). A frame larger than the sensor leaves the events in its top-left
            corner, so it must match the data: the resize to `output_size` happens after.

    Returns:
        IterableDataset of dicts: ``events`` (C, H, W) float32, ``label`` int, ``path`` str, ``num_events`` int.
    """
    root = Path(root)
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    if num_events is not None and window_ms is not None:
        raise ValueError("pass at most one of num_events and window_ms")
    if num_events is not None:
        _check_window(None, num_events)
    if window_ms is not None:
        _check_window(window_ms, None)
    kwargs = _check_representation(representation, representation_kwargs)
    names = _class_folders(root, classes)
    items = _labeled_files(root, names, (".bin",), split, test_fraction)
    return datasets.IterableDataset.from_generator(
        _recognition_examples,
        gen_kwargs={
            "shards": items,
            "sensor_size": _recognition_sensor_size(root, sensor_size),
            "representation": representation,
            "representation_kwargs": kwargs,
            "window_ms": window_ms,
            "num_events": None if num_events is None else int(num_events),
            "output_size": _check_output_size(output_size),
        },
    )


# ----------------------------------------------------------------------------------------------------------------
# labeled images (the source modality)


def _image_tensor(path: str) -> torch.Tensor:
    img = _load_png(Path(path))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return torch.from_numpy(img[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W)


def _image_examples(shards: list[tuple], *, kind: str, output_size: tuple[int, int] | None) -> Iterator[dict]:
    for item in shards:
        image = _resize(_image_tensor(item[0]), output_size, "bilinear").numpy()
        if kind == "segmentation":
            label = torch.from_numpy(_load_png(Path(item[1])).astype(np.int64))
            yield {"image": image, "labels": _resize(label[None], output_size, "nearest")[0].numpy(), "path": item[0]}
        else:
            yield {"image": image, "label": int(item[1]), "path": item[0]}


def labeled_image_dataset(
    root: str | os.PathLike,
    *,
    kind: str = "segmentation",
    split: str | None = "train",
    labels_folder: str = "labels",
    output_size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
    test_fraction: float = 0.2,
) -> datasets.IterableDataset:
    """Labeled source images, one shard per image.

    Args:
        root: dataset root.
        kind: ``"segmentation"``: ``root/<split>/images/*.png`` with label maps of the same name in
            ``root/<split>/<labels_folder>/`` (e.g. `make_source_images`; ``labels_folder="labels_dsec"`` for the
            11 DSEC classes). ``"classification"``: ``root/<class>/*.png`` (e.g. `make_recognition_source_images`),
            where `split` selects the per-class train / test files as in `event_recognition_dataset`.
        output_size: (H, W) to resize to (bilinear images, nearest labels).

    Returns:
        IterableDataset of dicts: ``image`` (3, H, W) float32 in [0, 1], ``labels`` (H, W) int64 or ``label`` int,
        and ``path``.
    """
    root = Path(root)
    output_size = _check_output_size(output_size)
    if kind == "segmentation":
        (base,) = _split_dirs(root, split)
        images = sorted(p for p in (base / "images").glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{base / 'images'}: no images found")
        items = []
        for img in images:
            label = base / labels_folder / (img.stem + ".png")
            if not label.is_file():
                raise FileNotFoundError(f"{img}: no label map {label}")
            items.append((str(img), str(label)))
    elif kind == "classification":
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test' for classification, got {split!r}")
        items = _labeled_files(root, _class_folders(root, classes), _IMAGE_SUFFIXES, split, test_fraction)
    else:
        raise ValueError(f"kind must be 'segmentation' or 'classification', got {kind!r}")
    return datasets.IterableDataset.from_generator(
        _image_examples, gen_kwargs={"shards": items, "kind": kind, "output_size": output_size}
    )

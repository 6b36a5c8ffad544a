"""Gradio Space for hf_crossdistill: UniDistill BEV detection and EvDistill event segmentation.

Two tabs:

- **BEV detection (UniDistill)**: a key frame of a small synthetic nuScenes dataroot (generated into a cache folder on
  first start) or an uploaded LIDAR_TOP ``.pcd.bin`` (float32 x 5) → a BEV detector → BEV plot (predicted boxes red,
  ground truth green) and a table of detections.
- **Event segmentation (EvDistill)**: an uploaded event file in any supported format (DSEC / MVSEC HDF5,
  N-Caltech ``.bin``, E2VID ``.txt``/``.zip``, or the ``events.dat.t`` + ``events.dat.xyp`` pair of a DDD17-ESS
  recording) or a synthetic DDD17 recording → time window → event frame, the network's input representation and
  the segmentation overlay of a DeepLabV3+ event student.

Models come from a Hub id or a local ``save_pretrained`` folder (a textbox in each tab; defaults from the
``HF_CROSSDISTILL_BEV_MODEL`` / ``HF_CROSSDISTILL_EVENT_MODEL`` environment variables). Left empty, a tiny model is
built from the package's tiny preset with random weights — labelled "untrained demo weights" in the UI, because its
predictions carry no meaning. Everything runs on CPU.

    python spaces_demo/app.py            # http://127.0.0.1:7860
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch

APP_DIR = Path(__file__).resolve().parent

try:
    import hf_crossdistill  # noqa: F401  (registers the configs / models with the Auto classes)
except ImportError:  # a Space built from this repo: the package folder sits next to app.py or one level up
    for _root in (APP_DIR, APP_DIR.parent):
        if (_root / "hf_crossdistill" / "__init__.py").is_file():
            sys.path.insert(0, str(_root))
            break
    import hf_crossdistill  # noqa: F401

from transformers import AutoConfig, AutoModelForObjectDetection, AutoModelForSemanticSegmentation  # noqa: E402 (after the sys.path fallback)

from hf_crossdistill.data.events import (  # noqa: E402 (after the sys.path fallback)
    EVENT_FORMATS,
    REPRESENTATIONS,
    EventFormatError,
    event_representation,
    open_recording,
    representation_channels,
)
from hf_crossdistill.data.nuscenes import (  # noqa: E402 (after the sys.path fallback)
    CAMERA_NAMES,
    NUSCENES_CLASSES,
    NuScenesDataError,
    NuScenesLoaderOptions,
    collate_bev_batch,
    load_detection_sample,
    load_nuscenes,
    points_in_range,
    read_lidar_file,
)
from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection  # noqa: E402 (after the sys.path fallback)
from hf_crossdistill.models.deeplab import DeepLabV3PlusForSemanticSegmentation  # noqa: E402 (after the sys.path fallback)
from hf_crossdistill.visualization import (  # noqa: E402 (after the sys.path fallback)
    DDD17_PALETTE,
    DSEC_PALETTE,
    make_palette,
    overlay_segmentation,
    plot_bev,
    render_event_frame,
)

BEV_MODEL_ENV = "HF_CROSSDISTILL_BEV_MODEL"
EVENT_MODEL_ENV = "HF_CROSSDISTILL_EVENT_MODEL"
EXAMPLES_DIR_ENV = "HF_CROSSDISTILL_DEMO_CACHE"

DEFAULT_PRESETS = {"detection": "bev_lidar_pillar_nuscenes_tiny", "segmentation": "deeplabv3plus_tiny_events"}
UNTRAINED_LABEL = "untrained demo weights"
NUSCENES_VERSION = "v1.0-mini"

# Small enough to generate in well under a minute on a free CPU Space, large enough to look like a drive.
DEFAULT_NUSCENES_KWARGS = {
    "version": NUSCENES_VERSION,
    "num_scenes": 2,
    "seed": 0,
    "image_size": (352, 128),
    "scene_duration_s": 2.0,
    "sweeps_per_keyframe": 9,
    "lidar_azimuth_resolution_deg": 0.4,
}
DEFAULT_DDD17_KWARGS = {"num_recordings": 2, "duration_s": 1.0, "sensor_size": (260, 346), "seed": 0}

BEV_PLOT_INCHES, BEV_PLOT_DPI = 6, 100
BEV_PLOT_SIZE = BEV_PLOT_INCHES * BEV_PLOT_DPI  # pixels per side of the BEV plot
DETECTION_COLUMNS = ["class", "score", "x", "y", "z", "length", "width", "height", "yaw", "vx", "vy"]
CLASS_SHARE_COLUMNS = ["class", "pixels (%)"]
REPRESENTATION_GAP_PX = 4
MAX_ERROR_CHARS = 400


class DemoInputError(ValueError):
    """A problem with what the user gave the demo; its message is shown in the UI as it is."""


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------

_TASKS = {
    "detection": (AutoModelForObjectDetection, BEVDetectorForObjectDetection, "BEV detector"),
    "segmentation": (AutoModelForSemanticSegmentation, DeepLabV3PlusForSemanticSegmentation, "DeepLabV3+ model"),
}


def _preset_path(name: str) -> Path:
    """A preset shipped with the package (`hf_crossdistill.presets`)."""
    from hf_crossdistill.presets import preset_path

    try:
        return preset_path(name)
    except FileNotFoundError as err:
        raise DemoInputError(f"{err}; give a model id or folder instead") from err


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _source_key(source: str | os.PathLike | None) -> str:
    return "" if source is None else os.fspath(source).strip()


@dataclass
class ModelCache:
    """Loaded models by (task, source), least recently used first out; `source` "" is the random tiny preset.

    Bounded, because on a public Space every model id typed into a textbox would otherwise stay in memory.
    """

    max_entries: int = 4
    models: OrderedDict[tuple[str, str], tuple[Any, str]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, task: str, source: str | os.PathLike | None) -> tuple[Any, str]:
        """`(model in eval mode, description for the UI)`; raises `DemoInputError` with a readable message."""
        if task not in _TASKS:
            raise ValueError(f"task must be one of {sorted(_TASKS)}, got {task!r}")
        key = (task, _source_key(source))
        with self.lock:
            if key not in self.models:
                self.models[key] = _load_model(task, key[1])
                while len(self.models) > max(int(self.max_entries), 1):
                    self.models.popitem(last=False)
            self.models.move_to_end(key)
            return self.models[key]


def _load_model(task: str, source: str) -> tuple[Any, str]:
    auto_cls, expected_cls, what = _TASKS[task]
    if not source:
        preset = DEFAULT_PRESETS[task]
        config = AutoConfig.from_pretrained(_preset_path(preset))
        with torch.random.fork_rng():  # the same demo weights on every start, without touching the global RNG
            torch.manual_seed(0)
            model = auto_cls.from_config(config)
        noise = "boxes and scores" if task == "detection" else "class maps"
        description = f"**{UNTRAINED_LABEL}** (tiny preset `{preset}`, random initialisation: the {noise} are noise)"
    else:
        try:
            model = auto_cls.from_pretrained(source, dtype=torch.float32)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise DemoInputError(f"could not load a {what} from {source!r}: {_short(err)}") from None
        description = f"`{source}`"
    if not isinstance(model, expected_cls):
        raise DemoInputError(f"{source!r} holds a {type(model).__name__}, not a {expected_cls.__name__}")
    return model.eval(), description


# ---------------------------------------------------------------------------------------------------------------
# Example data (generated once into a cache folder)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DemoExamples:
    """Where the synthetic examples live and what the dropdowns list."""

    nuscenes_root: Path
    ddd17_root: Path
    nuscenes_samples: dict[str, str]  # dropdown label -> sample token
    ddd17_recordings: dict[str, Path]  # dropdown label -> recording folder
    ddd17_sensor_size: tuple[int, int] | None  # (H, W) from synthetic_info.json; ESS files do not store it


def default_examples_dir() -> Path:
    env = os.environ.get(EXAMPLES_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "hf_crossdistill" / "space_demo"


def _nuscenes_ready(root: Path) -> bool:
    return (root / NUSCENES_VERSION / "scene.json").is_file()


def _ddd17_ready(root: Path) -> bool:
    return any(root.rglob("events.dat.t"))


def prepare_examples(
    examples_dir: str | os.PathLike | None = None,
    *,
    nuscenes_kwargs: Mapping[str, Any] | None = None,
    ddd17_kwargs: Mapping[str, Any] | None = None,
) -> DemoExamples:
    """Generate (once) and index the synthetic nuScenes dataroot and DDD17 recordings of the demo.

    `examples_dir/nuscenes` is a `v1.0-mini` dataroot and `examples_dir/ddd17` a DDD17-ESS root; existing complete
    folders are reused (the generators write atomically, so a folder that exists is complete).
    """
    from hf_crossdistill.data.synthetic import make_synthetic_ddd17, make_synthetic_nuscenes

    root = Path(examples_dir) if examples_dir is not None else default_examples_dir()
    if root.exists() and not root.is_dir():
        raise ValueError(f"examples_dir {root} exists and is not a folder")
    nuscenes_root, ddd17_root = root / "nuscenes", root / "ddd17"
    nuscenes_kwargs = {**DEFAULT_NUSCENES_KWARGS, **(nuscenes_kwargs or {})}
    if nuscenes_kwargs["version"] != NUSCENES_VERSION:
        raise ValueError(
            f"the demo reads a {NUSCENES_VERSION} dataroot, got nuscenes_kwargs version {nuscenes_kwargs}"
        )
    if not _nuscenes_ready(nuscenes_root):
        make_synthetic_nuscenes(nuscenes_root, overwrite=nuscenes_root.exists(), **nuscenes_kwargs)
    if not _ddd17_ready(ddd17_root):
        make_synthetic_ddd17(
            ddd17_root, overwrite=ddd17_root.exists(), **{**DEFAULT_DDD17_KWARGS, **(ddd17_kwargs or {})}
        )

    nusc = load_nuscenes(nuscenes_root, NUSCENES_VERSION)
    samples: dict[str, str] = {}
    for scene in sorted(nusc.scene, key=lambda s: s["name"]):
        token, k = scene["first_sample_token"], 0
        while token:
            samples[f"{scene['name']} · key frame {k}"] = token
            token, k = nusc.get("sample", token)["next"], k + 1
    recordings = {
        p.parent.relative_to(ddd17_root).as_posix(): p.parent for p in sorted(ddd17_root.rglob("events.dat.t"))
    }
    info_file = ddd17_root / "synthetic_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    sensor_size = tuple(int(v) for v in info["sensor_size"]) if "sensor_size" in info else None
    return DemoExamples(nuscenes_root, ddd17_root, samples, recordings, sensor_size)


# ---------------------------------------------------------------------------------------------------------------
# BEV detection
# ---------------------------------------------------------------------------------------------------------------


def _error(message: str, hide_dirs: list[str] | None = None) -> str:
    """The UI's error line; the server's temporary folders of uploads are cut from it (the name says enough)."""
    for folder in sorted(hide_dirs or [], key=len, reverse=True):
        message = message.replace(folder.rstrip(os.sep) + os.sep, "")
    return f"⚠️ **Error:** {message}"


def _figure_to_array(fig) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a matplotlib figure at its own size and dpi."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=BEV_PLOT_DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def _uploaded_path(upload: Any) -> str | None:
    """The local path of a gr.File value (str path, a FileData-like dict, or an object with `.name`)."""
    if upload is None or upload == "":
        return None
    if isinstance(upload, (str, os.PathLike)):
        return os.fspath(upload)
    if isinstance(upload, Mapping) and "path" in upload:
        return os.fspath(upload["path"])
    if hasattr(upload, "name"):
        return os.fspath(upload.name)
    raise DemoInputError(f"unexpected upload value of type {type(upload).__name__}")


def read_uploaded_lidar(path: str | os.PathLike) -> np.ndarray:
    """(N, 5) `[x, y, z, intensity, Δt = 0]` from a nuScenes LIDAR_TOP `.pcd.bin` (float32 x 5: x, y, z, i, ring)."""
    name = Path(path).name
    try:
        raw = read_lidar_file(path)  # (N, 5) x, y, z, intensity, ring
    except NuScenesDataError as err:
        raise DemoInputError(
            f"{name}: not a LIDAR_TOP .pcd.bin — {os.path.getsize(path)} bytes is not a whole number of points "
            "(each point is 5 float32 values = 20 bytes: x, y, z, intensity, ring)"
            if os.path.isfile(path)
            else str(err)
        ) from None
    if len(raw) == 0:
        raise DemoInputError(f"{name}: the file holds no points")
    if not np.isfinite(raw[:, :4]).all():
        raise DemoInputError(f"{name}: x, y, z or intensity contain NaN or inf — is this really a .pcd.bin?")
    points = raw.copy()
    points[:, 4] = 0.0  # a single sweep: the ring index column becomes the sweep time offset Δt = 0
    return points


def _detector_inputs(model, sample: Mapping[str, Any]) -> dict[str, Any]:
    batch = collate_bev_batch([sample])
    inputs = {"points": batch["points"], "batch_size": 1}
    if "camera" in model.config.modalities:
        for key in ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar", "bev_aug_matrix"):
            inputs[key] = batch[key]
    return inputs


def _load_dataroot_sample(model, examples: DemoExamples, label: str) -> dict[str, Any]:
    if label not in examples.nuscenes_samples:
        raise DemoInputError(f"unknown sample {label!r}; pick one from the list or upload a .pcd.bin")
    config = model.config
    uses_camera = "camera" in config.modalities
    options = NuScenesLoaderOptions(
        num_sweeps=int(config.num_sweeps) if "lidar" in config.modalities else 0,  # as scripts/distill.py
        cameras=CAMERA_NAMES if uses_camera else (),
        image_size=(int(config.image_size[1]), int(config.image_size[0])) if uses_camera else None,
        point_cloud_range=tuple(float(v) for v in config.point_cloud_range),
    )
    nusc = load_nuscenes(examples.nuscenes_root, NUSCENES_VERSION)
    return load_detection_sample(nusc, examples.nuscenes_samples[label], options)


def detection_table(result: Mapping[str, torch.Tensor], class_names: list[str]) -> pd.DataFrame:
    """One row per box, columns `DETECTION_COLUMNS`, highest score first."""
    boxes = result["boxes"].detach().cpu().numpy().reshape(-1, 9)
    scores = result["scores"].detach().cpu().numpy().reshape(-1)
    labels = result["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64)
    table = pd.DataFrame(np.round(boxes, 3), columns=DETECTION_COLUMNS[2:])
    table.insert(0, "score", np.round(scores, 4))
    table.insert(0, "class", [class_names[k] if 0 <= k < len(class_names) else str(k) for k in labels])
    return table


def _top_k(result: Mapping[str, torch.Tensor], score_threshold: float, max_boxes: int) -> dict[str, torch.Tensor]:
    keep = result["scores"] >= score_threshold
    scores = result["scores"][keep]
    order = torch.argsort(scores, descending=True)[:max_boxes]
    return {"boxes": result["boxes"][keep][order], "scores": scores[order], "labels": result["labels"][keep][order]}


def run_detection(
    cache: ModelCache,
    examples: DemoExamples,
    sample_label: str | None,
    upload: Any,
    model_source: str | None,
    score_threshold: float,
    max_boxes: float,
) -> tuple[np.ndarray | None, pd.DataFrame, str]:
    """(BEV plot, detections table, status message). Problems with the inputs come back as the message."""
    empty = pd.DataFrame(columns=DETECTION_COLUMNS)
    try:
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise DemoInputError(f"score threshold must be in [0, 1], got {score_threshold}")
        if int(max_boxes) < 1:
            raise DemoInputError(f"max boxes must be at least 1, got {max_boxes}")
        model, model_text = cache.get("detection", model_source)
        config = model.config
        path = _uploaded_path(upload)
        if path is not None:
            if "camera" in config.modalities:
                raise DemoInputError(
                    f"this detector uses {list(config.modalities)}; an uploaded point cloud only feeds LiDAR-only "
                    "detectors — pick a synthetic sample (it has the 6 camera images) instead"
                )
            points = read_uploaded_lidar(path)
            points = points[points_in_range(points, config.point_cloud_range)]
            if len(points) == 0:
                raise DemoInputError(
                    f"{Path(path).name}: no point inside the detector's range {config.point_cloud_range}"
                )
            sample = {"points": points, "gt_boxes": np.zeros((0, 9), np.float32), "gt_labels": np.zeros(0, np.int64)}
            source_text, has_gt = f"uploaded `{Path(path).name}`", False
        elif sample_label:
            sample = _load_dataroot_sample(model, examples, sample_label)
            source_text, has_gt = f"synthetic nuScenes `{sample_label}`", True
        else:
            raise DemoInputError("pick a synthetic sample or upload a LIDAR_TOP .pcd.bin file")

        with torch.inference_mode():
            outputs = model(**_detector_inputs(model, sample))
            result = _top_k(
                model.post_process(outputs, score_threshold=0.0)[0], float(score_threshold), int(max_boxes)
            )
    except (DemoInputError, NuScenesDataError) as err:
        return None, empty, _error(str(err))

    from matplotlib.figure import Figure

    class_names = list(config.class_names) if getattr(config, "class_names", None) else list(NUSCENES_CLASSES)
    pcr = config.point_cloud_range
    fig = Figure(figsize=(BEV_PLOT_INCHES, BEV_PLOT_INCHES), dpi=BEV_PLOT_DPI)
    plot_bev(
        sample["points"],
        gt_boxes=sample["gt_boxes"] if has_gt else None,
        pred_boxes=result["boxes"],
        pred_scores=result["scores"],
        bev_range=(pcr[0], pcr[1], pcr[3], pcr[4]),
        labels=class_names,
        gt_labels=sample["gt_labels"] if has_gt else None,
        pred_labels=result["labels"],
        title="predictions red" + (", ground truth green" if has_gt else ""),
        ax=fig.add_subplot(),
    )
    image = _figure_to_array(fig)
    status = (
        f"{source_text}: {len(sample['points'])} points, {len(result['scores'])} boxes with score ≥ "
        f"{float(score_threshold):g}"
        + (f", {len(sample['gt_boxes'])} ground-truth boxes" if has_gt else "")
        + f". Model: {model_text}."
    )
    return image, detection_table(result, class_names), status


# ---------------------------------------------------------------------------------------------------------------
# Event segmentation
# ---------------------------------------------------------------------------------------------------------------

ESS_FILES = ("events.dat.t", "events.dat.xyp")


def _ess_folder_from_uploads(paths: list[str], workdir: Path) -> Path:
    """Rebuild a DDD17-ESS recording folder from its uploaded files (index files are optional)."""
    names = {Path(p).name: p for p in paths}
    missing = [n for n in ESS_FILES if n not in names]
    if missing:
        raise DemoInputError(f"a DDD17-ESS recording needs both {' and '.join(ESS_FILES)}; missing {missing[0]}")
    folder = workdir / "recording"
    (folder / "index").mkdir(parents=True)
    for name, p in names.items():
        if name in ESS_FILES:
            shutil.copyfile(p, folder / name)
        elif name.startswith("index_") and name.endswith(".npy"):
            shutil.copyfile(p, folder / "index" / name)
    return folder


def _event_source(
    examples: DemoExamples,
    example_label: str | None,
    uploads: Any,
    fmt: str | None,
    sensor_size: tuple[int, int] | None,
    workdir: Path,
) -> tuple[Path, str | None, tuple[int, int] | None, str]:
    """(path, format or None to detect, sensor size or None for the format's default, text for the status)."""
    if uploads is not None and not isinstance(uploads, (list, tuple)):
        uploads = [uploads]
    paths = [p for p in (_uploaded_path(u) for u in (uploads or [])) if p]
    fmt = None if fmt in (None, "", "auto") else fmt
    if fmt is not None and fmt not in EVENT_FORMATS:
        raise DemoInputError(f"format must be 'auto' or one of {EVENT_FORMATS}, got {fmt!r}")
    if paths:
        names = [Path(p).name for p in paths]
        if fmt == "ddd17_ess" or any(n in ESS_FILES for n in names):
            return _ess_folder_from_uploads(paths, workdir), "ddd17_ess", sensor_size, "uploaded DDD17-ESS recording"
        if len(paths) > 1:
            raise DemoInputError(
                f"upload one event file (got {len(paths)}: {', '.join(names)}), or the "
                f"{' + '.join(ESS_FILES)} pair of a DDD17-ESS recording"
            )
        return Path(paths[0]), fmt, sensor_size, f"uploaded `{names[0]}`"
    if example_label:
        if example_label not in examples.ddd17_recordings:
            raise DemoInputError(f"unknown example {example_label!r}; pick one from the list or upload a file")
        recording = examples.ddd17_recordings[example_label]
        return recording, "ddd17_ess", sensor_size or examples.ddd17_sensor_size, f"synthetic DDD17 `{example_label}`"
    raise DemoInputError("pick a synthetic DDD17 recording or upload an event file")


def _parse_size(text: str | None, what: str, minimum: int) -> tuple[int, int] | None:
    """ "64x128" (H x W) → (64, 128); empty → None."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).lower().replace("×", "x").replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < minimum:
        raise DemoInputError(f"{what} must look like 64x128 (H x W, each ≥ {minimum}), got {text!r}")
    return size


def representation_image(representation: torch.Tensor) -> np.ndarray:
    """The channels of a `(C, H, W)` representation side by side as grey levels, `(H, C·W + gaps, 3)` uint8.

    Non-negative channels map 0 → white and large values → black; signed ones (voxel grids) map 0 → mid grey and
    large positive / negative values → white / black. "Large" is the 99th percentile of each channel's non-zero
    magnitudes, so a few hot pixels do not wash the rest out.
    """
    rep = representation.detach().cpu().to(torch.float32).numpy()
    if rep.ndim != 3 or min(rep.shape) == 0:
        raise ValueError(f"representation must be (C, H, W), got shape {rep.shape}")
    magnitude = np.abs(rep).reshape(len(rep), -1)  # (C, H·W)
    peak = np.array([np.percentile(m[m > 0], 99) if (m > 0).any() else 1.0 for m in magnitude])  # (C,), C is small
    scaled = np.clip(rep / np.maximum(peak, 1e-12)[:, None, None], -1.0, 1.0)  # (C, H, W)
    if rep.min() < 0:
        grey = 0.5 + 0.5 * scaled
    else:
        grey = 1.0 - scaled
    tiles = np.clip(np.rint(grey * 255), 0, 255).astype(np.uint8)  # (C, H, W)
    gap = np.full((rep.shape[1], REPRESENTATION_GAP_PX), 255, np.uint8)
    parts = [tiles[0]]
    for tile in tiles[1:]:
        parts += [gap, tile]
    strip = np.concatenate(parts, axis=1)  # (H, C·W + gaps)
    return np.repeat(strip[..., None], 3, axis=-1)


def _palette_for(num_labels: int) -> np.ndarray:
    if num_labels == len(DDD17_PALETTE):
        return DDD17_PALETTE
    if num_labels == len(DSEC_PALETTE):
        return DSEC_PALETTE
    return make_palette(num_labels)


def class_share_table(prediction: np.ndarray, id2label: Mapping[int, str], num_labels: int) -> pd.DataFrame:
    counts = np.bincount(prediction.reshape(-1), minlength=num_labels)[:num_labels]
    share = np.round(100.0 * counts / max(prediction.size, 1), 2)
    names = [str(id2label.get(k, k)) for k in range(num_labels)]
    return pd.DataFrame({CLASS_SHARE_COLUMNS[0]: names, CLASS_SHARE_COLUMNS[1]: share})


def run_segmentation(
    cache: ModelCache,
    examples: DemoExamples,
    example_label: str | None,
    uploads: Any,
    fmt: str | None,
    window_start_ms: float,
    window_ms: float,
    representation: str,
    input_size: str | None,
    model_source: str | None,
    sensor_size: str | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, pd.DataFrame, str]:
    """(event frame, representation, segmentation overlay, class shares, status message)."""
    empty = pd.DataFrame(columns=CLASS_SHARE_COLUMNS)
    with tempfile.TemporaryDirectory(prefix="hf_crossdistill_demo_") as tmp:
        hide = [str(Path(tmp) / "recording"), tmp]
        try:
            if window_start_ms is None or float(window_start_ms) < 0:
                raise DemoInputError(f"window start must be ≥ 0 ms, got {window_start_ms}")
            if window_ms is None or not float(window_ms) > 0:
                raise DemoInputError(f"window length must be > 0 ms, got {window_ms}")
            if representation not in REPRESENTATIONS:
                raise DemoInputError(
                    f"representation must be one of {sorted(REPRESENTATIONS)}, got {representation!r}"
                )
            size = _parse_size(input_size, "model input size", 8)
            sensor = _parse_size(sensor_size, "sensor size", 1)
            model, model_text = cache.get("segmentation", model_source)
            channels = int(model.config.num_channels)
            kwargs = {"voxel_grid": {"num_bins": channels}, "stacked_frames": {"num_channels": channels}}.get(
                representation, {}
            )
            if representation_channels(representation, **kwargs) != channels:
                raise DemoInputError(
                    f"representation {representation!r} has {representation_channels(representation, **kwargs)} "
                    f"channels but the model takes {channels}; choose another representation"
                )
            path, fmt, sensor, source_text = _event_source(examples, example_label, uploads, fmt, sensor, Path(tmp))
            hide.append(str(path.parent))
            with open_recording(path, fmt, sensor_size=sensor) as rec:
                t0 = rec.t_first_us + int(round(float(window_start_ms) * 1000))
                t1 = t0 + max(int(round(float(window_ms) * 1000)), 1)
                events = rec.read_window(t0, t1)
                span_ms = rec.duration_us / 1000
                format_name = rec.format
            if len(events) == 0:
                raise DemoInputError(
                    f"{source_text}: no events in the window [{float(window_start_ms):g}, "
                    f"{float(window_start_ms) + float(window_ms):g}) ms after the first event "
                    f"(the recording spans {span_ms:.1f} ms)"
                )
        except (DemoInputError, EventFormatError) as err:
            return None, None, None, empty, _error(str(err), hide)
        except (OSError, ValueError) as err:  # e.g. an HDF5 file h5py cannot open, a window past int64
            return None, None, None, empty, _error(f"could not read the events: {_short(err)}", hide)

    rep = event_representation(events, representation, (t0, t1), **kwargs)  # (C, H, W)
    pixel_values = rep[None]  # (1, C, H, W)
    if size is not None:
        pixel_values = torch.nn.functional.interpolate(pixel_values, size=size, mode="bilinear", align_corners=False)
    with torch.inference_mode():
        logits = model(pixel_values=pixel_values).logits  # (1, num_labels, h, w)
        if size is not None:
            logits = torch.nn.functional.interpolate(logits, size=rep.shape[-2:], mode="bilinear", align_corners=False)
    prediction = logits[0].argmax(dim=0).cpu().numpy()  # (H, W)
    num_labels = int(logits.shape[1])
    frame = render_event_frame(events)
    overlay = overlay_segmentation(frame, prediction, _palette_for(num_labels), alpha=0.5)
    height, width = events.sensor_size
    status = (
        f"{source_text} ({format_name}, {width}×{height}): {len(events)} events in "
        f"[{float(window_start_ms):g}, {float(window_start_ms) + float(window_ms):g}) ms; representation "
        f"`{representation}` {tuple(rep.shape)}" + (f" resized to {size}" if size else "") + f". Model: {model_text}."
    )
    id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
    return frame, representation_image(rep), overlay, class_share_table(prediction, id2label, num_labels), status


# ---------------------------------------------------------------------------------------------------------------
# The Blocks
# ---------------------------------------------------------------------------------------------------------------

INTRO = """# hf_crossdistill — cross-modal knowledge distillation

**UniDistill** (CVPR 2023) distils BEV 3-D detectors across LiDAR and cameras; **EvDistill** (CVPR 2021) teaches
event-camera students from an image teacher. Examples are *synthetic* (generated by the package in the real
nuScenes / DDD17 formats). Without a checkpoint the models are tiny and randomly initialised
(**untrained demo weights**): the pipeline is real, the predictions are not meaningful.
"""


def build_demo(
    *,
    bev_model: str | os.PathLike | None = None,
    event_model: str | os.PathLike | None = None,
    examples_dir: str | os.PathLike | None = None,
    nuscenes_kwargs: Mapping[str, Any] | None = None,
    ddd17_kwargs: Mapping[str, Any] | None = None,
) -> gr.Blocks:
    """Build the Space's `gr.Blocks` (generating the synthetic examples on first use).

    Args:
        bev_model: Hub id or local folder of a `BEVDetectorForObjectDetection`; default the
            `HF_CROSSDISTILL_BEV_MODEL` environment variable, else untrained tiny demo weights.
        event_model: Hub id or local folder of an event `DeepLabV3PlusForSemanticSegmentation`; default
            `HF_CROSSDISTILL_EVENT_MODEL`, else untrained tiny demo weights.
        examples_dir: cache folder of the synthetic examples (default `HF_CROSSDISTILL_DEMO_CACHE`, else
            `~/.cache/hf_crossdistill/space_demo`).
        nuscenes_kwargs, ddd17_kwargs: overrides of the example generators' options (used only when generating).

    Endpoints: `/detect` (sample, pcd_file, model, score_threshold, max_boxes → bev_plot, detections, status) and
    `/segment` (example, event_files, format, sensor_size, window_start_ms, window_ms, representation, input_size,
    model →
    event_frame, representation, overlay, class_shares, status).
    """
    for name, value in (("bev_model", bev_model), ("event_model", event_model)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"build_demo: {name} must be a Hub id or a folder path, got {type(value).__name__}")
    bev_default = _source_key(bev_model if bev_model is not None else os.environ.get(BEV_MODEL_ENV))
    event_default = _source_key(event_model if event_model is not None else os.environ.get(EVENT_MODEL_ENV))
    examples = prepare_examples(examples_dir, nuscenes_kwargs=nuscenes_kwargs, ddd17_kwargs=ddd17_kwargs)
    cache = ModelCache()

    def detect(sample, pcd_file, model_source, score_threshold, max_boxes):
        return run_detection(cache, examples, sample, pcd_file, model_source, score_threshold, max_boxes)

    def segment(
        example, event_files, fmt, sensor_size, window_start_ms, window_ms, representation, input_size, model_source
    ):
        return run_segmentation(
            cache, examples, example, event_files, fmt, window_start_ms, window_ms, representation, input_size,
            model_source, sensor_size,
        )  # fmt: skip

    sample_labels = list(examples.nuscenes_samples)
    recording_labels = list(examples.ddd17_recordings)
    model_help = "Hub id or local save_pretrained folder; empty = tiny model with untrained demo weights"
    with gr.Blocks(title="hf_crossdistill: UniDistill + EvDistill") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("BEV detection (UniDistill)"):
            with gr.Row():
                with gr.Column(scale=1):
                    bev_source = gr.Textbox(
                        value=bev_default, label="Detector", placeholder=model_help, info=model_help
                    )
                    sample = gr.Dropdown(
                        sample_labels, value=sample_labels[0] if sample_labels else None,
                        label="Synthetic nuScenes key frame",
                    )  # fmt: skip
                    pcd_file = gr.File(
                        label="…or upload a LIDAR_TOP .pcd.bin (float32 × 5: x, y, z, intensity, ring)",
                        file_types=[".bin"], type="filepath",
                    )  # fmt: skip
                    score_threshold = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Score threshold")
                    max_boxes = gr.Slider(1, 200, value=50, step=1, label="Max boxes")
                    detect_button = gr.Button("Run detector", variant="primary", elem_id="detect-button")
                with gr.Column(scale=2):
                    bev_status = gr.Markdown(elem_id="detect-status")
                    bev_plot = gr.Image(label="BEV (predictions red, ground truth green)", type="numpy", format="png")
                    detections = gr.Dataframe(headers=DETECTION_COLUMNS, label="Detections", interactive=False)
            detect_button.click(
                detect,
                inputs=[sample, pcd_file, bev_source, score_threshold, max_boxes],
                outputs=[bev_plot, detections, bev_status],
                api_name="detect",
            )
        with gr.Tab("Event segmentation (EvDistill)", elem_id="event-tab"):
            with gr.Row():
                with gr.Column(scale=1):
                    event_source = gr.Textbox(
                        value=event_default, label="Event segmentation model", placeholder=model_help, info=model_help
                    )
                    example = gr.Dropdown(
                        recording_labels, value=recording_labels[0] if recording_labels else None,
                        label="Synthetic DDD17 recording",
                    )  # fmt: skip
                    event_files = gr.File(
                        label="…or upload events: .h5 (DSEC), .hdf5 (MVSEC), .bin (N-Caltech), .txt/.zip (E2VID), "
                        "or events.dat.t + events.dat.xyp (DDD17-ESS)",
                        file_count="multiple", type="filepath",
                    )  # fmt: skip
                    fmt = gr.Dropdown(["auto", *EVENT_FORMATS], value="auto", label="Format")
                    sensor_size = gr.Textbox(
                        value="", label="Sensor size H×W (empty = the file's / format's default)",
                        info="DDD17-ESS and DSEC files do not store it (defaults 260×346 and 480×640)",
                    )  # fmt: skip
                    window_start = gr.Number(value=0.0, minimum=0.0, label="Window start (ms after the first event)")
                    window_ms = gr.Slider(1, 1000, value=50, step=1, label="Window length (ms)")
                    representation = gr.Dropdown(
                        sorted(REPRESENTATIONS), value="normalized_count", label="Event representation"
                    )
                    input_size = gr.Textbox(value="", label="Model input size H×W (empty = sensor size)")
                    segment_button = gr.Button("Run segmentation", variant="primary", elem_id="segment-button")
                with gr.Column(scale=2):
                    event_status = gr.Markdown(elem_id="segment-status")
                    with gr.Row():
                        event_frame = gr.Image(
                            label="Events (positive red, negative blue)", type="numpy", format="png"
                        )
                        overlay = gr.Image(
                            label="Segmentation overlay", type="numpy", format="png", elem_id="segment-overlay"
                        )
                    rep_image = gr.Image(label="Representation channels", type="numpy", format="png")
                    class_shares = gr.Dataframe(
                        headers=CLASS_SHARE_COLUMNS, label="Predicted classes", interactive=False
                    )
            segment_button.click(
                segment,
                inputs=[
                    example,
                    event_files,
                    fmt,
                    sensor_size,
                    window_start,
                    window_ms,
                    representation,
                    input_size,
                    event_source,
                ],  # fmt: skip
                outputs=[event_frame, rep_image, overlay, class_shares, event_status],
                api_name="segment",
            )
    return demo


if __name__ == "__main__":
    build_demo().launch()

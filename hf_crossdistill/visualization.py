"""Plots for inspection and model cards (matplotlib, Agg backend: works headless).

Sections: 3-D boxes (BEV and camera views). Segmentation overlays and event frames live in their own sections.
Boxes follow the package convention `[x, y, z, l, w, h, yaw, (vx, vy)]` in the LIDAR_TOP frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------


def _numpy(value: Any, name: str, dtype=np.float64) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not numeric: {err}") from err


def _boxes(value: Any, name: str) -> np.ndarray:
    boxes = _numpy(value, name)
    if boxes.size == 0:
        return boxes.reshape(0, 7)
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f"{name} must be (K, ≥7) [x, y, z, l, w, h, yaw, ...], got shape {boxes.shape}")
    return boxes


def _figure(ax=None, figsize=(6, 6)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _save(fig, save_path: str | os.PathLike | None) -> None:
    if save_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(save_path))), exist_ok=True)
        fig.savefig(save_path, dpi=100, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------------------------
# 3-D boxes
# ---------------------------------------------------------------------------------------------------------------


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """BEV corners (K, 4, 2) of boxes (K, ≥7), counter-clockwise starting front-left."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64) / 2  # (4, 2) in (l, w) units
    local = half[None] * boxes[:, None, [3, 4]]  # (K, 4, 2)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rotation = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (K, 2, 2)
    return local @ rotation.transpose(0, 2, 1) + boxes[:, None, :2]


def box_corners_3d(boxes: np.ndarray) -> np.ndarray:
    """3-D corners (K, 8, 3): the 4 BEV corners at the bottom, then the same 4 at the top."""
    boxes = np.asarray(boxes, dtype=np.float64)
    bev = box_corners_bev(boxes)  # (K, 4, 2)
    bottom = (boxes[:, 2] - boxes[:, 5] / 2)[:, None, None].repeat(4, 1)
    top = (boxes[:, 2] + boxes[:, 5] / 2)[:, None, None].repeat(4, 1)
    return np.concatenate([np.concatenate([bev, bottom], -1), np.concatenate([bev, top], -1)], axis=1)


_BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def project_boxes_to_image(
    boxes: Any,
    intrinsics: Any,
    camera_to_lidar: Any,
    *,
    image_aug_matrix: Any | None = None,
    bev_aug_matrix: Any | None = None,
    min_depth: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (K, 8, 2) of the box corners and a mask (K,) of boxes entirely in front of the camera.

    `boxes` are in the LIDAR_TOP frame — the augmented one when `bev_aug_matrix` is given (it is undone first);
    `image_aug_matrix` maps original pixels to the (augmented) image being drawn on.
    """
    boxes = _boxes(boxes, "boxes")
    K = _numpy(intrinsics, "intrinsics").reshape(3, 3)
    lidar_from_camera = _numpy(camera_to_lidar, "camera_to_lidar").reshape(4, 4)
    corners = box_corners_3d(boxes).reshape(-1, 3)  # (K·8, 3)
    homogeneous = np.concatenate([corners, np.ones((len(corners), 1))], axis=1)
    if bev_aug_matrix is not None:
        homogeneous = homogeneous @ np.linalg.inv(_numpy(bev_aug_matrix, "bev_aug_matrix").reshape(4, 4)).T
    camera = (homogeneous @ np.linalg.inv(lidar_from_camera).T)[:, :3]
    depth = camera[:, 2]
    pixels = camera @ K.T
    pixels = pixels[:, :2] / np.maximum(pixels[:, 2:3], 1e-9)
    if image_aug_matrix is not None:
        aug = _numpy(image_aug_matrix, "image_aug_matrix").reshape(3, 3)
        pixels = pixels @ aug[:2, :2].T + aug[:2, 2]
    in_front = (depth > min_depth).reshape(-1, 8).all(axis=1)
    return pixels.reshape(-1, 8, 2), in_front


def plot_bev(
    points: Any | None = None,
    gt_boxes: Any | None = None,
    pred_boxes: Any | None = None,
    *,
    pred_scores: Any | None = None,
    score_threshold: float = 0.0,
    bev_range: Sequence[float] = (-54.0, -54.0, 54.0, 54.0),
    labels: Sequence[str] | None = None,
    gt_labels: Any | None = None,
    pred_labels: Any | None = None,
    title: str | None = None,
    ax=None,
    save_path: str | os.PathLike | None = None,
):
    """Bird's-eye view of LiDAR points with ground-truth (green) and predicted (red) boxes.

    Args:
        points: (N, ≥2) x, y in metres (a leading batch-index column is not expected: pass one sample).
        gt_boxes, pred_boxes: (K, ≥7) boxes; predictions below `score_threshold` are hidden.
        bev_range: (x_min, y_min, x_max, y_max) of the view.
        labels: class names to annotate boxes with, indexed by `gt_labels` / `pred_labels`.
        ax: draw into this axes instead of a new figure; save_path: also write a PNG there.

    Returns:
        the matplotlib `Figure`.
    """
    if len(bev_range) != 4 or bev_range[0] >= bev_range[2] or bev_range[1] >= bev_range[3]:
        raise ValueError(f"bev_range must be (x_min, y_min, x_max, y_max), got {bev_range!r}")
    fig, ax = _figure(ax)
    if points is not None:
        pts = _numpy(points, "points")
        if pts.ndim != 2 or pts.shape[1] < 2:
            raise ValueError(f"points must be (N, ≥2), got shape {pts.shape}")
        ax.scatter(pts[:, 0], pts[:, 1], s=0.2, c="0.35", marker=".", linewidths=0)
    for boxes, box_labels, scores, colour, name in (
        (gt_boxes, gt_labels, None, "tab:green", "gt_boxes"),
        (pred_boxes, pred_labels, pred_scores, "tab:red", "pred_boxes"),
    ):
        if boxes is None:
            continue
        boxes = _boxes(boxes, name)
        keep = np.ones(len(boxes), dtype=bool)
        if scores is not None:
            scores = _numpy(scores, "pred_scores").reshape(-1)
            if len(scores) != len(boxes):
                raise ValueError(f"pred_scores has {len(scores)} entries for {len(boxes)} boxes")
            keep = scores >= score_threshold
        corners = box_corners_bev(boxes[keep])  # (K, 4, 2)
        closed = np.concatenate([corners, corners[:, :1]], axis=1)  # (K, 5, 2)
        for polygon in closed:
            ax.plot(polygon[:, 0], polygon[:, 1], color=colour, linewidth=1.0)
        # The heading: a line from the centre to the middle of the front edge.
        front = (corners[:, 0] + corners[:, 3]) / 2
        for centre, tip in zip(boxes[keep][:, :2], front):
            ax.plot([centre[0], tip[0]], [centre[1], tip[1]], color=colour, linewidth=1.0)
        if labels is not None and box_labels is not None:
            box_labels = _numpy(box_labels, name, dtype=np.int64).reshape(-1)[keep]
            for (x, y), k in zip(boxes[keep][:, :2], box_labels):
                ax.text(x, y, labels[k], fontsize=5, color=colour)
    ax.set_xlim(bev_range[0], bev_range[2])
    ax.set_ylim(bev_range[1], bev_range[3])
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    if title:
        ax.set_title(title)
    _save(fig, save_path)
    return fig


def plot_camera_boxes(
    image: Any,
    boxes: Any,
    intrinsics: Any,
    camera_to_lidar: Any,
    *,
    image_aug_matrix: Any | None = None,
    bev_aug_matrix: Any | None = None,
    color: str = "tab:green",
    title: str | None = None,
    ax=None,
    save_path: str | os.PathLike | None = None,
):
    """A camera image with 3-D boxes (LIDAR_TOP frame) projected as wireframes.

    Args:
        image: (3, H, W) float in [0, 1] (the loader's layout) or (H, W, 3) uint8 / float.
        boxes: (K, ≥7) boxes; those not entirely in front of the camera are skipped.
        intrinsics, camera_to_lidar, image_aug_matrix, bev_aug_matrix: the loader's fields for this camera.

    Returns:
        the matplotlib `Figure`.
    """
    img = _numpy(image, "image", dtype=np.float32)
    if img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {img.shape}")
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.max() > 1.0:
        img = img / 255.0
    height, width = img.shape[:2]
    pixels, in_front = project_boxes_to_image(
        boxes, intrinsics, camera_to_lidar, image_aug_matrix=image_aug_matrix, bev_aug_matrix=bev_aug_matrix
    )
    fig, ax = _figure(ax, figsize=(8, 8 * height / max(width, 1)))
    ax.imshow(np.clip(img, 0, 1), extent=(0, width, height, 0))
    for corners in pixels[in_front]:
        for a, b in _BOX_EDGES:
            ax.plot(corners[[a, b], 0], corners[[a, b], 1], color=color, linewidth=1.0)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    if title:
        ax.set_title(title)
    _save(fig, save_path)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Images as arrays: PNG writing and input layouts (shared by the event-frame and segmentation sections)
# ---------------------------------------------------------------------------------------------------------------


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an `(H, W, 3)` or `(H, W)` uint8 array as a PNG (parent folders are created)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"save_png expects (H, W[, 3|4]) uint8, got {array.dtype} {array.shape} for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    Image.fromarray(array).save(os.fspath(path), format="PNG")


def _rgb_uint8(image: Any, name: str) -> np.ndarray:
    """(H, W, 3) uint8 from (3|1, H, W) / (H, W, 3|1) / (H, W) arrays; floats are read as [0, 1] intensities."""
    array = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # channels-first (the loaders' layout) → (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{name} must be (3, H, W), (H, W, 3), (1, H, W) or (H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be numeric, got {array.dtype}")
    return np.clip(np.rint(np.asarray(array, np.float64) * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Event frames
# ---------------------------------------------------------------------------------------------------------------

EVENT_POSITIVE_COLOR = (255, 0, 0)  # red
EVENT_NEGATIVE_COLOR = (0, 0, 255)  # blue
_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def _polarity_maps(events: Any, kind: str, sensor_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) non-negative float maps (H, W) from Events / a histogram / a signed representation."""
    if not isinstance(events, np.ndarray) and not hasattr(events, "detach"):
        from .data.events import Events, to_histogram

        if isinstance(events, Events) or (isinstance(events, (tuple, list)) and len(events) == 4):
            events, kind = to_histogram(events, sensor_size=sensor_size), "histogram"
    array = _numpy(events, "events")
    if kind not in ("auto", "histogram", "signed"):
        raise ValueError(f"kind must be 'auto', 'histogram' or 'signed', got {kind!r}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or min(array.shape) == 0:
        raise ValueError(f"events must be Events, (x, y, t, p), (C, H, W) or (H, W), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("events representation contains NaN or inf")
    if kind == "auto":
        kind = "histogram" if array.shape[0] == 2 and array.min() >= 0 else "signed"
    if kind == "histogram":
        if array.shape[0] != 2 or array.min() < 0:
            raise ValueError(f"a histogram is (2, H, W) non-negative counts (positive, negative), got {array.shape}")
        return array[0], array[1]
    # A voxel grid or stacked frames: the signed sum over time bins is the net polarity at each pixel.
    signed = array.sum(axis=0)
    return np.maximum(signed, 0.0), np.maximum(-signed, 0.0)


def render_event_frame(
    events: Any,
    *,
    kind: str = "auto",
    sensor_size: tuple[int, int] | None = None,
    background: str = "white",
    clip_percentile: float = 99.0,
    save_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """An RGB picture of events: positive polarity red, negative blue, on a white or black background.

    Each pixel's colour mixes red and blue by the share of positive events, and its opacity grows with the event
    count up to the `clip_percentile` of the non-zero counts (so a few hot pixels do not wash everything out).

    Args:
        events: an `Events`, an `(x, y, t, p)` tuple (with `sensor_size`), a histogram `(2, H, W)` (positive,
            negative counts) or a signed representation `(C, H, W)` / `(H, W)` such as a voxel grid.
        kind: "histogram", "signed", or "auto" (a non-negative 2-channel input is a histogram).
        background: "white" or "black".
        clip_percentile: percentile of the non-zero magnitudes that maps to full opacity (100 = the maximum).
        save_path: also write the PNG there.

    Returns:
        `(H, W, 3)` uint8.
    """
    if background not in _BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(_BACKGROUNDS)}, got {background!r}")
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    positive, negative = _polarity_maps(events, kind, sensor_size)  # (H, W) each
    magnitude = positive + negative
    active = magnitude > 0
    scale = float(np.percentile(magnitude[active], clip_percentile)) if active.any() else 1.0
    alpha = np.clip(magnitude / max(scale, 1e-12), 0.0, 1.0)[..., None]  # (H, W, 1)
    share = np.divide(positive, magnitude, out=np.zeros_like(magnitude), where=active)[..., None]
    colour = share * np.array(EVENT_POSITIVE_COLOR) + (1.0 - share) * np.array(EVENT_NEGATIVE_COLOR)
    frame = (1.0 - alpha) * np.array(_BACKGROUNDS[background], dtype=np.float64) + alpha * colour
    frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)  # (H, W, 3)
    if save_path is not None:
        save_png(frame, save_path)
    return frame


# ---------------------------------------------------------------------------------------------------------------
# Segmentation overlays
# ---------------------------------------------------------------------------------------------------------------

# Colours follow the Cityscapes convention the DDD17 (Ev-SegNet grouping) and DSEC-Semantic releases use.
DDD17_PALETTE = np.array(
    [
        [128, 64, 128],  # flat
        [70, 70, 70],  # construction+sky
        [220, 220, 0],  # object
        [107, 142, 35],  # nature
        [220, 20, 60],  # human
        [0, 0, 142],  # vehicle
    ],
    dtype=np.uint8,
)
DSEC_PALETTE = np.array(
    [
        [0, 0, 0],  # background
        [70, 70, 70],  # building
        [190, 153, 153],  # fence
        [220, 20, 60],  # person
        [153, 153, 153],  # pole
        [128, 64, 128],  # road
        [244, 35, 232],  # sidewalk
        [107, 142, 35],  # vegetation
        [0, 0, 142],  # car
        [102, 102, 156],  # wall
        [220, 220, 0],  # traffic sign
    ],
    dtype=np.uint8,
)


def make_palette(num_classes: int, *, seed: int = 0) -> np.ndarray:
    """`(num_classes, 3)` uint8 colours for label sets without a published palette: evenly spaced hues."""
    import colorsys

    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    rng = np.random.default_rng(seed)
    hues = (np.arange(num_classes) / num_classes + rng.uniform(0, 1)) % 1.0
    # Alternating lightness keeps neighbouring hues apart when there are many classes.
    colours = [colorsys.hls_to_rgb(h, 0.45 + 0.15 * (i % 2), 0.75) for i, h in enumerate(hues)]
    return np.clip(np.rint(np.array(colours) * 255), 0, 255).astype(np.uint8)


def _palette(palette: Any, num_classes_needed: int) -> np.ndarray:
    if palette is None:
        return make_palette(max(num_classes_needed, 1))
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"palette must be (num_classes, 3) RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ValueError("palette values must be in [0, 255]")
        array = array.astype(np.uint8)
    return array


def _label_map(labels: Any) -> np.ndarray:
    array = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"label map must be (H, W) or (1, H, W), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise ValueError("label map must hold integer class indices, got non-integer floats")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"label map must be integer class indices, got {array.dtype}")
    return array.astype(np.int64)


def colorize_segmentation(
    labels: Any,
    palette: Any | None = None,
    *,
    ignore_index: int | None = 255,
    ignore_color: Sequence[int] = (0, 0, 0),
    save_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """`(H, W, 3)` uint8 colours of a label map `(H, W)`; `ignore_index` pixels get `ignore_color`.

    `palette` is `(num_classes, 3)` (e.g. `DDD17_PALETTE`, `DSEC_PALETTE`); by default `make_palette` is used.
    """
    label_map = _label_map(labels)
    ignored = label_map == ignore_index if ignore_index is not None else np.zeros(label_map.shape, dtype=bool)
    valid_labels = label_map[~ignored]
    colours = _palette(palette, int(valid_labels.max()) + 1 if valid_labels.size else 1)
    if valid_labels.size and (valid_labels.min() < 0 or valid_labels.max() >= len(colours)):
        raise ValueError(
            f"label map holds classes in [{valid_labels.min()}, {valid_labels.max()}] but the palette has "
            f"{len(colours)} colours (ignore_index={ignore_index})"
        )
    out = colours[np.where(ignored, 0, label_map)]  # (H, W, 3)
    out[ignored] = np.asarray(ignore_color, dtype=np.uint8)
    if save_path is not None:
        save_png(out, save_path)
    return out


def overlay_segmentation(
    image: Any,
    labels: Any,
    palette: Any | None = None,
    *,
    alpha: float = 0.5,
    ignore_index: int | None = 255,
    save_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Alpha-blend the colours of a label map over an image; ignored pixels show the image unchanged.

    Args:
        image: `(3, H, W)` / `(H, W, 3)` / `(H, W)` (floats in [0, 1] or uint8) — a camera/APS frame or the output
            of `render_event_frame`.
        labels: `(H, W)` class indices (ground truth, or the arg-max of the logits).
        palette: `(num_classes, 3)` colours; alpha: weight of the label colours in [0, 1].

    Returns:
        `(H, W, 3)` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _rgb_uint8(image, "image")
    label_map = _label_map(labels)
    if base.shape[:2] != label_map.shape:
        raise ValueError(f"image is {base.shape[:2]} (H, W) but the label map is {label_map.shape}")
    colours = colorize_segmentation(label_map, palette, ignore_index=ignore_index).astype(np.float64)
    weight = np.full(label_map.shape, alpha)
    if ignore_index is not None:
        weight[label_map == ignore_index] = 0.0
    blended = (1.0 - weight[..., None]) * base + weight[..., None] * colours
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if save_path is not None:
        save_png(out, save_path)
    return out


def segmentation_panel(
    image: Any,
    prediction: Any,
    labels: Any | None = None,
    palette: Any | None = None,
    *,
    alpha: float = 0.5,
    ignore_index: int | None = 255,
    gap: int = 4,
    save_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Side by side: the image, the prediction overlay and (when given) the ground-truth overlay, white gaps."""
    base = _rgb_uint8(image, "image")
    tiles = [base, overlay_segmentation(base, prediction, palette, alpha=alpha, ignore_index=ignore_index)]
    if labels is not None:
        tiles.append(overlay_segmentation(base, labels, palette, alpha=alpha, ignore_index=ignore_index))
    separator = np.full((base.shape[0], max(int(gap), 0), 3), 255, dtype=np.uint8)
    parts = [tiles[0]]
    for tile in tiles[1:]:
        parts += [separator, tile]
    panel = np.concatenate(parts, axis=1)
    if save_path is not None:
        save_png(panel, save_path)
    return panel


# ---------------------------------------------------------------------------------------------------------------
# Study results (UniDistill paths and loss curves)
# ---------------------------------------------------------------------------------------------------------------


def plot_study_paths(table: dict, *, metric: str = "NDS", ax=None, save_path: str | os.PathLike | None = None):
    """Bars per distillation path: teacher, student alone and distilled (mean over seeds, error bar = sample std).

    Args:
        table: the four-path table of `hf_crossdistill.experiments.aggregate_unidistill_paths` (its `"paths"`).
        metric: `"NDS"` or `"mAP"`.

    Returns:
        the matplotlib `Figure`.
    """
    if metric not in ("NDS", "mAP"):
        raise ValueError(f"plot_study_paths: metric must be 'NDS' or 'mAP', got {metric!r}")
    paths = table.get("paths") if isinstance(table, dict) else None
    if not paths:
        raise ValueError("plot_study_paths: the table has no finished path")
    fig, ax = _figure(ax, figsize=(2.2 * len(paths) + 2, 4))
    kinds = (("teacher", "teacher", "#888888"), ("student_alone", "student alone", "#4c72b0"))
    kinds += (("distilled", "distilled", "#dd8452"),)
    width = 0.26
    for k, (key, label, color) in enumerate(kinds):
        means, stds, xs = [], [], []
        for i, entry in enumerate(paths.values()):
            value = entry.get(key)
            if not value or value.get(metric) is None:
                continue
            values = value[metric] if isinstance(value[metric], list) else [value[metric]]
            xs.append(i + (k - 1) * width)
            means.append(float(np.mean(values)))
            stds.append(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=label, color=color)
    ax.set_xticks(range(len(paths)), list(paths))
    ax.set_ylabel(f"{metric} (val)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"UniDistill paths: {metric}, mean ± std over seeds")
    _save(fig, save_path)
    return fig


def plot_term_curves(
    curves: dict[str, list[dict]],
    *,
    terms: Sequence[str] = ("loss_det", "loss_feature", "loss_relation", "loss_response"),
    save_path: str | os.PathLike | None = None,
):
    """Each logged loss term over training steps, one panel per term, one line per run.

    Args:
        curves: run label → the run's logged entries (`{"step": int, "<term>": float, ...}`, e.g. the `curve` of a
            study result JSON).
        terms: the logged keys to draw (a term a run did not log is skipped for that run).

    Returns:
        the matplotlib `Figure`.
    """
    if not curves:
        raise ValueError("plot_term_curves: no run to draw")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2), squeeze=False)
    for ax, term in zip(axes[0], terms):
        for label, entries in curves.items():
            points = [(e["step"], e[term]) for e in entries if term in e and "step" in e]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=label, linewidth=1)
        ax.set_title(term)
        ax.set_xlabel("step")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    _save(fig, save_path)
    return fig

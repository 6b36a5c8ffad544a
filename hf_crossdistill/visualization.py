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

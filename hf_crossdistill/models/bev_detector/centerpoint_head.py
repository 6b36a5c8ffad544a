"""CenterPoint multi-task head: heatmaps + box regression on the high-level BEV, targets, losses, decoding.

Regression channels per task (R = 10): offset (2, in cells), height (1, box-centre z in metres), log size
(3: l, w, h), heading (2: sin, cos), velocity (2: vx, vy in m/s). Heatmap channels of all tasks are
concatenated in task order (= `config.class_names`).
"""

from __future__ import annotations

import torch
from torch import nn

from ...losses.unidistill import gaussian_radius  # one formula for heatmap targets and distillation masks
from .configuration_bev_detector import REGRESSION_CHANNELS, BEVDetectorConfig

_BRANCHES = (("offset", 2), ("height", 1), ("size", 3), ("heading", 2), ("velocity", 2))
HEATMAP_PRIOR_BIAS = -2.19  # sigmoid(-2.19) ≈ 0.1: the focal-loss prior of CenterNet / CenterPoint


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


def _branch(channels: int, out_channels: int, is_heatmap: bool = False) -> nn.Sequential:
    branch = nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, out_channels, 3, padding=1, bias=True),
    )
    # Read by `_init_weights`: output convs start near zero (heatmap logits at the focal prior bias) so the
    # first steps do not fight randomly confident predictions.
    branch[-1].is_head_output = True
    branch[-1].is_heatmap_output = is_heatmap
    return branch


class TaskHead(nn.Module):
    """One task: a heatmap branch and the regression branches (five, as in CenterPoint, or one shared)."""

    def __init__(self, channels: int, num_classes: int, shared_regression_branch: bool = False):
        super().__init__()
        self.heatmap = _branch(channels, num_classes, is_heatmap=True)
        if shared_regression_branch:
            # One conv trunk for all ten regression channels: 2 branch convs per task instead of 6, which is
            # most of the head's cost at small widths (the output channels are ordered as `_BRANCHES`).
            self.regression = _branch(channels, REGRESSION_CHANNELS)
        else:
            self.regression = nn.ModuleDict({name: _branch(channels, size) for name, size in _BRANCHES})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.regression, nn.ModuleDict):
            regression = torch.cat([self.regression[name](x) for name, _ in _BRANCHES], dim=1)  # (B, 10, H, W)
        else:
            regression = self.regression(x)  # (B, 10, H, W)
        return self.heatmap(x), regression


class CenterPointHead(nn.Module):
    """(B, C_high, H, W) → heatmap logits (B, num_classes, H, W), regression (B, num_tasks·10, H, W)."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        self.shared = nn.Sequential(
            nn.Conv2d(config.high_bev_channels, config.head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.head_channels),
            nn.ReLU(inplace=True),
        )
        self.tasks = nn.ModuleList(
            TaskHead(config.head_channels, len(task), config.shared_regression_branch) for task in config.tasks
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.shared(x)
        heatmaps, regressions = zip(*(task(x) for task in self.tasks))
        return torch.cat(heatmaps, dim=1), torch.cat(regressions, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------------------------


def box_centre_cells(
    gt_boxes: torch.Tensor, bev_range: tuple[float, float, float, float], cell_size: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M) integer column and row of each box centre (floor of the metric position)."""
    col = torch.floor((gt_boxes[..., 0] - bev_range[0]) / cell_size).long()
    row = torch.floor((gt_boxes[..., 1] - bev_range[1]) / cell_size).long()
    return col, row


def heatmap_targets(
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_mask: torch.Tensor,
    *,
    num_classes: int,
    bev_range: tuple[float, float, float, float],
    cell_size: float,
    bev_shape: tuple[int, int],
    min_overlap: float,
    min_radius: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian heatmap targets, batched over samples and boxes.

    Each valid box whose centre cell lies on the map draws exp(−(dx² + dy²) / (2σ²)), σ = (2r + 1) / 6, over its
    (2r + 1)² window (clipped at the border) into its class channel; boxes merge with max. Padded rows,
    boxes off the map and labels outside [0, num_classes) draw nothing.

    Returns:
        heatmap (B, num_classes, H, W) and the (B, M) bool mask of boxes that drew a peak.
    """
    batch, num_boxes = gt_mask.shape
    height, width = bev_shape
    col, row = box_centre_cells(gt_boxes, bev_range, cell_size)
    valid = (
        gt_mask.bool()
        & (col >= 0)
        & (col < width)
        & (row >= 0)
        & (row < height)
        & (gt_labels >= 0)
        & (gt_labels < num_classes)
        & (gt_boxes[..., 3] > 0)
        & (gt_boxes[..., 4] > 0)
    )
    heatmap = gt_boxes.new_zeros(batch * num_classes * height * width)
    if not bool(valid.any()):
        return heatmap.view(batch, num_classes, height, width), valid
    radius_f = gaussian_radius(gt_boxes[..., 3] / cell_size, gt_boxes[..., 4] / cell_size, min_overlap)
    radius = torch.clamp(torch.floor(radius_f).long(), min=min_radius)
    radius = torch.where(valid, radius, torch.zeros_like(radius))  # (B, M)
    r_max = int(radius.max())
    steps = torch.arange(-r_max, r_max + 1, device=gt_boxes.device)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    dy, dx = dy.reshape(1, 1, -1), dx.reshape(1, 1, -1)  # (1, 1, S)
    sigma = (2 * radius.float() + 1) / 6  # (B, M)
    values = torch.exp(-(dx**2 + dy**2).float() / (2 * sigma.unsqueeze(-1) ** 2))  # (B, M, S)
    rows, cols = row.unsqueeze(-1) + dy, col.unsqueeze(-1) + dx  # (B, M, S)
    r = radius.unsqueeze(-1)
    draw = (
        valid.unsqueeze(-1)
        & (dx.abs() <= r)
        & (dy.abs() <= r)
        & (rows >= 0)
        & (rows < height)
        & (cols >= 0)
        & (cols < width)
    )
    batch_index = torch.arange(batch, device=gt_boxes.device).view(-1, 1, 1)
    flat = (
        (batch_index * num_classes + gt_labels.clamp(0, num_classes - 1).unsqueeze(-1)) * height + rows
    ) * width + cols
    heatmap = heatmap.scatter_reduce(0, flat[draw], values[draw].to(heatmap.dtype), reduce="amax")
    return heatmap.view(batch, num_classes, height, width), valid


def regression_targets(
    gt_boxes: torch.Tensor, bev_range: tuple[float, float, float, float], cell_size: float
) -> torch.Tensor:
    """(B, M, 9) boxes → (B, M, 10) regression targets at their centre cell (garbage-free for any row)."""
    col, row = box_centre_cells(gt_boxes, bev_range, cell_size)
    offset_x = (gt_boxes[..., 0] - bev_range[0]) / cell_size - col
    offset_y = (gt_boxes[..., 1] - bev_range[1]) / cell_size - row
    log_size = torch.log(gt_boxes[..., 3:6].clamp(min=1e-3))
    yaw = gt_boxes[..., 6]
    velocity = gt_boxes[..., 7:9] if gt_boxes.shape[-1] >= 9 else gt_boxes.new_zeros(*gt_boxes.shape[:-1], 2)
    return torch.cat(
        [
            offset_x.unsqueeze(-1),
            offset_y.unsqueeze(-1),
            gt_boxes[..., 2:3],
            log_size,
            torch.sin(yaw).unsqueeze(-1),
            torch.cos(yaw).unsqueeze(-1),
            velocity,
        ],
        dim=-1,
    )  # (B, M, 10)


# ---------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, class_to_task: torch.Tensor) -> torch.Tensor:
    """CenterNet penalty-reduced focal loss (α = 2, β = 4), normalised per task by its peak count, summed."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos_term = torch.log(pred) * (1 - pred) ** 2 * positive
    neg_term = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - positive)
    per_class = -(pos_term + neg_term).sum(dim=(0, 2, 3))  # (K,)
    num_tasks = int(class_to_task.max()) + 1
    per_task = per_class.new_zeros(num_tasks).index_add(0, class_to_task, per_class)
    peaks = positive.sum(dim=(0, 2, 3))
    num_pos = peaks.new_zeros(num_tasks).index_add(0, class_to_task, peaks)
    return (per_task / num_pos.clamp(min=1)).sum()


def regression_l1_loss(
    regression: torch.Tensor,
    targets: torch.Tensor,
    centre_index: torch.Tensor,
    box_task: torch.Tensor,
    valid: torch.Tensor,
    code_weights: torch.Tensor,
    num_tasks: int,
) -> torch.Tensor:
    """Code-weighted L1 at each box's centre cell, normalised per task by its box count, summed over tasks.

    Args:
        regression: (B, T·10, H, W). targets: (B, M, 10). centre_index: (B, M) flat row·W + col.
        box_task: (B, M) task of each box. valid: (B, M) bool. code_weights: (10,).
    """
    batch, _, height, width = regression.shape
    per_task = regression.reshape(batch, num_tasks, REGRESSION_CHANNELS, height * width)  # (B, T, 10, HW)
    b = torch.arange(batch, device=regression.device).unsqueeze(1).expand_as(centre_index)
    task = box_task.clamp(0, num_tasks - 1)
    index = centre_index.clamp(0, height * width - 1)
    pred = per_task.permute(0, 1, 3, 2)[b, task, index]  # (B, M, 10)
    error = ((pred.float() - targets.float()).abs() * code_weights).sum(-1)  # (B, M)
    error = torch.where(valid, error, torch.zeros_like(error))
    per_task_sum = error.new_zeros(num_tasks).index_add(0, task[valid], error[valid])
    counts = error.new_zeros(num_tasks).index_add(0, task[valid], torch.ones_like(error[valid]))
    return (per_task_sum / counts.clamp(min=1)).sum()


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------


def circle_nms(centres: torch.Tensor, radius: float) -> torch.Tensor:
    """Greedy circle NMS on score-sorted centres (K, 2): keep mask (K,).

    A box is kept iff no kept higher-scoring box lies within `radius`. The greedy solution is the unique fixed
    point of that rule (the suppression relation is strictly triangular), reached by iterating it on the whole
    mask at once — at most K steps, usually a handful — instead of looping over boxes.
    """
    k = len(centres)
    if k == 0 or radius <= 0:
        return torch.ones(k, dtype=torch.bool, device=centres.device)
    close = torch.cdist(centres.double(), centres.double()) ** 2 < radius**2
    suppress = torch.triu(close, diagonal=1)  # suppress[i, j]: i scores higher than j and is close
    keep = torch.ones(k, dtype=torch.bool, device=centres.device)
    for _ in range(k):
        new_keep = ~(suppress & keep.unsqueeze(1)).any(0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def undo_bev_augmentation(boxes: torch.Tensor, bev_aug_matrix: torch.Tensor) -> torch.Tensor:
    """Map (K, 9) boxes from the augmented frame back to LIDAR_TOP with the inverse of the 4×4 matrix.

    The matrix may rotate, scale and flip: centres and velocities move by the inverse; the heading follows the
    transformed heading vector, and each size scales by how much the inverse stretches its axis.
    """
    inverse = torch.linalg.inv(bev_aug_matrix.double())
    linear, shift = inverse[:3, :3], inverse[:3, 3]
    b = boxes.double()
    centre = b[:, :3] @ linear.t() + shift
    cos, sin = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    zeros = torch.zeros_like(cos)
    heading = torch.stack([cos, sin, zeros], 1) @ linear.t()  # (K, 3)
    lateral = torch.stack([-sin, cos, zeros], 1) @ linear.t()
    up = linear[:, 2].norm()
    yaw = torch.atan2(heading[:, 1], heading[:, 0])
    size = torch.stack([b[:, 3] * heading.norm(dim=1), b[:, 4] * lateral.norm(dim=1), b[:, 5] * up], 1)
    velocity = torch.cat([b[:, 7:9], zeros.unsqueeze(1)], 1) @ linear.t()
    return torch.cat([centre, size, yaw.unsqueeze(1), velocity[:, :2]], 1).to(boxes.dtype)


def decode_boxes(
    heatmap_logits: torch.Tensor,
    regression: torch.Tensor,
    config: BEVDetectorConfig,
    *,
    score_threshold: float | None = None,
    bev_aug_matrix: torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Top-K per task → score threshold → circle NMS → boxes in the LIDAR_TOP frame.

    Returns one dict per sample: `boxes` (K, 9) `[x, y, z, l, w, h, yaw, vx, vy]`, `scores` (K,), `labels`
    (K,) int64 indices into `config.class_names`, sorted by score.
    """
    batch, num_classes, height, width = heatmap_logits.shape
    num_tasks = len(config.tasks)
    if num_classes != config.num_classes or regression.shape != (
        batch,
        num_tasks * REGRESSION_CHANNELS,
        height,
        width,
    ):
        raise ValueError(
            f"decode: heatmap {tuple(heatmap_logits.shape)} / regression {tuple(regression.shape)} do not match "
            f"{config.num_classes} classes and {num_tasks} tasks"
        )
    if bev_aug_matrix is not None and tuple(bev_aug_matrix.shape) != (batch, 4, 4):
        raise ValueError(f"decode: bev_aug_matrix must be ({batch}, 4, 4), got {tuple(bev_aug_matrix.shape)}")
    threshold = config.score_threshold if score_threshold is None else score_threshold
    x_min, y_min = config.bev_range[:2]
    cell = config.bev_cell_size
    per_sample: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(batch)]
    first_class = 0
    for t, task in enumerate(config.tasks):
        n = len(task)
        heat = torch.sigmoid(heatmap_logits[:, first_class : first_class + n].float()).reshape(batch, -1)
        k = min(config.max_objects, heat.shape[1])
        scores, index = heat.topk(k, dim=1)  # (B, k), sorted
        cls = index // (height * width) + first_class
        pixel = index % (height * width)
        row, col = pixel // width, pixel % width
        reg = (
            regression[:, t * REGRESSION_CHANNELS : (t + 1) * REGRESSION_CHANNELS]
            .float()
            .reshape(batch, REGRESSION_CHANNELS, -1)
        )
        reg = reg.gather(2, pixel.unsqueeze(1).expand(-1, REGRESSION_CHANNELS, -1)).transpose(1, 2)  # (B, k, 10)
        x = x_min + (col.float() + reg[..., 0]) * cell
        y = y_min + (row.float() + reg[..., 1]) * cell
        size = torch.exp(reg[..., 3:6].clamp(max=10))
        yaw = torch.atan2(reg[..., 6], reg[..., 7])
        boxes = torch.cat([x[..., None], y[..., None], reg[..., 2:3], size, yaw[..., None], reg[..., 8:10]], -1)
        for b in range(batch):  # NMS is per sample
            keep = scores[b] > threshold
            bx, sc, lb = boxes[b][keep], scores[b][keep], cls[b][keep]
            kept = circle_nms(bx[:, :2], config.nms_radii[t])
            bx, sc, lb = (
                bx[kept][: config.post_max_size],
                sc[kept][: config.post_max_size],
                lb[kept][: config.post_max_size],
            )
            per_sample[b].append((bx, sc, lb))
        first_class += n
    results = []
    for b in range(batch):
        boxes = torch.cat([p[0] for p in per_sample[b]])
        scores = torch.cat([p[1] for p in per_sample[b]])
        labels = torch.cat([p[2] for p in per_sample[b]])
        order = torch.argsort(scores, descending=True)[: config.max_objects]
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        if bev_aug_matrix is not None:
            boxes = undo_bev_augmentation(boxes, bev_aug_matrix[b])
        results.append({"boxes": boxes, "scores": scores, "labels": labels.long()})
    return results

"""UniDistill losses (Zhou et al., CVPR 2023, eq. 3–8): feature, relation and response distillation in BEV.

All functions are pure, batched torch on the input's device (no Python loops over boxes) and follow the BEV
convention of the package: maps are `(B, C, H, W)` with row = y and col = x; cell (row i, col j) covers
x ∈ [x_min + j·s_x, x_min + (j+1)·s_x), y ∈ [y_min + i·s_y, y_min + (i+1)·s_y); a value sits at its cell centre;
sampling outside the map gives 0. `bev_range = (x_min, y_min, x_max, y_max)` in metres and the cell size follows
from the map shape (`s_x = (x_max − x_min) / W`). Boxes are `(B, M, ≥7)` rows `[x, y, z, l, w, h, yaw, …]` in the
LIDAR_TOP frame with a bool `gt_mask (B, M)` of valid rows; padded rows contribute nothing anywhere.

Normalisers (number of valid boxes, mask sums) are global: they are all-reduced over ranks when torch.distributed
is initialised and the local numerator is scaled by the world size, so that DDP (which averages gradients over
ranks) gives the same loss and gradient as one process on the same global batch. The value returned on one rank is
therefore its share; the mean over ranks is the global loss. See `hf_crossdistill.losses._distributed`.

Unlike the authors' code, points are sampled at their true (x → column, y → row) position: a box at
(30 m, −20 m) on the paper grid (±54 m, 180 × 180) lies in row 56, column 140.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._distributed import global_sum, world_size

__all__ = [
    "CRUCIAL_POINT_NAMES",
    "FEATURE_NORMALIZATIONS",
    "bev_sample",
    "box_crucial_points",
    "feature_distillation_loss",
    "foreground_feature_distillation_loss",
    "gaussian_box_mask",
    "gaussian_radius",
    "relation_distillation_loss",
    "response_distillation_loss",
]

# Order of the 9 crucial points returned by `box_crucial_points`, in the box frame (u along the heading, v to
# its left): corners counter-clockwise from front-left, the centre, then edge midpoints counter-clockwise from
# the front edge.
CRUCIAL_POINT_NAMES = (
    "front_left",
    "rear_left",
    "rear_right",
    "front_right",
    "center",
    "front",
    "left",
    "rear",
    "right",
)
# (u, v) of each crucial point in units of (length, width).
_CRUCIAL_POINT_FACTORS = (
    (0.5, 0.5),
    (-0.5, 0.5),
    (-0.5, -0.5),
    (0.5, -0.5),
    (0.0, 0.0),
    (0.5, 0.0),
    (0.0, 0.5),
    (-0.5, 0.0),
    (0.0, -0.5),
)
_RELATION_EPS = 1e-8


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------------------


def _check_bev_range(bev_range: Sequence[float], where: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in bev_range)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{where}: bev_range must be 4 numbers (x_min, y_min, x_max, y_max), got {bev_range!r}"
        ) from err
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"{where}: bev_range must be 4 finite numbers (x_min, y_min, x_max, y_max), got {bev_range!r}"
        )
    x_min, y_min, x_max, y_max = values
    if not (x_max > x_min and y_max > y_min):
        raise ValueError(f"{where}: bev_range needs x_max > x_min and y_max > y_min, got {bev_range!r}")
    return values


def _check_map(name: str, tensor: torch.Tensor, where: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != 4:
        raise ValueError(f"{where}: {name} must be a (B, C, H, W) BEV map, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"{where}: {name} must be floating point, got {tensor.dtype}")


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, names: tuple[str, str], where: str) -> None:
    _check_map(names[0], student, where)
    _check_map(names[1], teacher, where)
    if student.shape != teacher.shape:
        raise ValueError(
            f"{where}: {names[0]} {tuple(student.shape)} and {names[1]} {tuple(teacher.shape)} must have the same "
            "(B, C, H, W); map student channels / grids to the teacher's with adaptive layers first"
        )
    if student.device != teacher.device:
        raise ValueError(f"{where}: {names[0]} is on {student.device} but {names[1]} is on {teacher.device}")


def _check_boxes(gt_boxes: torch.Tensor, gt_mask: torch.Tensor, batch_size: int | None, where: str) -> torch.Tensor:
    """Validate boxes and mask; return the boxes with padded rows zeroed (so NaN padding cannot leak)."""
    if not isinstance(gt_boxes, torch.Tensor) or not isinstance(gt_mask, torch.Tensor):
        raise TypeError(f"{where}: gt_boxes and gt_mask must be torch.Tensors")
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] < 7:
        raise ValueError(
            f"{where}: gt_boxes must be (B, M, >=7) [x, y, z, l, w, h, yaw, ...], got {tuple(gt_boxes.shape)}"
        )
    if not gt_boxes.is_floating_point():
        raise TypeError(f"{where}: gt_boxes must be floating point, got {gt_boxes.dtype}")
    if gt_mask.dtype != torch.bool:
        raise TypeError(f"{where}: gt_mask must be a bool tensor of valid rows, got {gt_mask.dtype}")
    if gt_mask.shape != gt_boxes.shape[:2]:
        raise ValueError(
            f"{where}: gt_mask {tuple(gt_mask.shape)} must match gt_boxes (B, M) {tuple(gt_boxes.shape[:2])}"
        )
    if batch_size is not None and gt_boxes.shape[0] != batch_size:
        raise ValueError(f"{where}: gt_boxes has batch size {gt_boxes.shape[0]} but the maps have {batch_size}")
    boxes = torch.where(
        gt_mask[..., None], gt_boxes[..., :7], torch.zeros((), dtype=gt_boxes.dtype, device=gt_boxes.device)
    )
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{where}: gt_boxes has NaN/inf values in valid rows (gt_mask == True)")
    if bool((boxes[..., 3:5] < 0).any()):
        raise ValueError(f"{where}: gt_boxes has negative length/width (columns 3, 4) in valid rows")
    return boxes


def _check_finite(name: str, tensor: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{where}: {name} contains NaN/inf values")


# ----------------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------------


def box_crucial_points(boxes: torch.Tensor) -> torch.Tensor:
    """The 9 crucial points of each box in BEV (paper, Sec. 3.2): 4 corners, the centre, 4 edge midpoints.

    Args:
        boxes (`torch.Tensor` of shape `(..., >=7)`):
            `[x, y, z, l, w, h, yaw, ...]` in metres / radians; `l` lies along the heading, `yaw` is
            counter-clockwise from +x.

    Returns:
        `torch.Tensor` of shape `(..., 9, 2)`: `(x, y)` in metres, ordered as `CRUCIAL_POINT_NAMES` — corners
        counter-clockwise from front-left (front-left, rear-left, rear-right, front-right), the centre, then the
        midpoints of the front, left, rear and right edges.
    """
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"box_crucial_points: boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] < 7 or not boxes.is_floating_point():
        raise ValueError(
            f"box_crucial_points: boxes must be floating (..., >=7) [x, y, z, l, w, h, yaw, ...], "
            f"got {tuple(boxes.shape)} {boxes.dtype}"
        )
    factors = torch.tensor(_CRUCIAL_POINT_FACTORS, dtype=boxes.dtype, device=boxes.device)  # (9, 2)
    size = boxes[..., None, 3:5]  # (..., 1, 2) = (l, w)
    local = factors * size  # (..., 9, 2) in the box frame
    cos = torch.cos(boxes[..., 6])[..., None]  # (..., 1)
    sin = torch.sin(boxes[..., 6])[..., None]
    u, v = local[..., 0], local[..., 1]  # (..., 9)
    x = boxes[..., 0, None] + cos * u - sin * v
    y = boxes[..., 1, None] + sin * u + cos * v
    return torch.stack((x, y), dim=-1)  # (..., 9, 2)


def bev_sample(feature_map: torch.Tensor, points_xy: torch.Tensor, bev_range: Sequence[float]) -> torch.Tensor:
    """Bilinearly sample a BEV map at metric points (`grid_sample(align_corners=False, padding_mode="zeros")`).

    Metric x maps to the continuous column `(x − x_min) / s_x − 0.5` (cell-centre units), y to the row the same way,
    so a point at a cell centre reads that cell exactly and points outside the map read 0 (fading to 0 over the
    last half cell).

    Args:
        feature_map (`torch.Tensor` of shape `(B, C, H, W)`): the BEV map (row = y, col = x).
        points_xy (`torch.Tensor` of shape `(B, *P, 2)`): metric `(x, y)` points, e.g. `(B, M, 9, 2)`.
        bev_range (`(x_min, y_min, x_max, y_max)`): metric extent of the map.

    Returns:
        `torch.Tensor` of shape `(B, *P, C)`, float32 for half-precision maps (sampling coordinates need float32).
    """
    where = "bev_sample"
    _check_map("feature_map", feature_map, where)
    x_min, y_min, x_max, y_max = _check_bev_range(bev_range, where)
    if not isinstance(points_xy, torch.Tensor) or points_xy.ndim < 2 or points_xy.shape[-1] != 2:
        raise ValueError(
            f"{where}: points_xy must be a (B, *P, 2) tensor, got {getattr(points_xy, 'shape', points_xy)}"
        )
    if points_xy.shape[0] != feature_map.shape[0]:
        raise ValueError(f"{where}: points_xy batch {points_xy.shape[0]} != feature_map batch {feature_map.shape[0]}")
    if feature_map.dtype in (torch.float16, torch.bfloat16):
        feature_map = feature_map.float()
    batch, channels = feature_map.shape[:2]
    point_shape = points_xy.shape[1:-1]
    points = points_xy.to(feature_map.dtype).reshape(batch, 1, -1, 2)  # (B, 1, N, 2)
    # align_corners=False: normalised −1 / +1 are the outer edges of the border cells, i.e. x_min / x_max.
    scale = points.new_tensor([2.0 / (x_max - x_min), 2.0 / (y_max - y_min)])
    offset = points.new_tensor([x_min, y_min])
    grid = (points - offset) * scale - 1.0  # (B, 1, N, 2), [..., 0] → columns (x), [..., 1] → rows (y)
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled[:, :, 0].transpose(1, 2)  # (B, N, C)
    return sampled.reshape(batch, *point_shape, channels)  # (B, *P, C)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """CornerNet / CenterPoint Gaussian radius of a box of `height × width` cells (element-wise).

    The smallest of the three radii of the CornerNet corner-shift cases, exactly as CenterPoint computes it (the
    reference formula, including its `/ 2` instead of `/ (2a)`), so masks match the usual heatmap targets.
    """
    if not 0.0 < float(min_overlap) < 1.0:
        raise ValueError(f"gaussian_radius: min_overlap must be in (0, 1), got {min_overlap}")
    overlap = float(min_overlap)
    size_sum = height + width
    area = height * width
    b1 = size_sum
    c1 = area * (1 - overlap) / (1 + overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * size_sum
    c2 = (1 - overlap) * area
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * overlap
    b3 = -2 * overlap * size_sum
    c3 = (overlap - 1) * area
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def gaussian_box_mask(
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    shape: tuple[int, int],
    *,
    min_overlap: float = 0.7,
    min_radius: int = 0,
) -> torch.Tensor:
    """Gaussian-like foreground mask of the response distillation (paper eq. 7, the CenterPoint heatmap recipe).

    For each valid box: size in cells `(l / s_x, w / s_y)`, radius `max(min_radius, floor(gaussian_radius))`,
    centre cell `(floor((x − x_min) / s_x), floor((y − y_min) / s_y))`, value `exp(−(dx² + dy²) / (2σ²))` with
    `σ = (2·radius + 1) / 6` over the `(2·radius + 1)²` window, clipped at the map border. Boxes whose centre cell is
    outside the map are skipped (as CenterPoint does); overlapping boxes are merged with max; padded rows
    (`gt_mask == False`) contribute nothing.

    Args:
        gt_boxes (`torch.Tensor` of shape `(B, M, >=7)`): boxes `[x, y, z, l, w, h, yaw, ...]`.
        gt_mask (`torch.Tensor` of shape `(B, M)`, bool): valid rows.
        bev_range (`(x_min, y_min, x_max, y_max)`): metric extent of the map.
        shape (`(H, W)`): the map size in cells.
        min_overlap (`float`): IoU target of `gaussian_radius` (the authors use 0.7; CenterPoint 0.1).
        min_radius (`int`): lower bound of the radius in cells (the authors use 0; CenterPoint 2).

    Returns:
        `torch.Tensor` of shape `(B, H, W)` in [0, 1], the dtype of `gt_boxes`.
    """
    where = "gaussian_box_mask"
    x_min, y_min, x_max, y_max = _check_bev_range(bev_range, where)
    if len(tuple(shape)) != 2 or any(int(n) != n or n <= 0 for n in shape):
        raise ValueError(f"{where}: shape must be (H, W) positive integers, got {shape!r}")
    if not 0.0 < float(min_overlap) < 1.0:
        raise ValueError(f"{where}: min_overlap must be in (0, 1), got {min_overlap}")
    if int(min_radius) != min_radius or min_radius < 0:
        raise ValueError(f"{where}: min_radius must be a non-negative integer, got {min_radius!r}")
    boxes = _check_boxes(gt_boxes, gt_mask, None, where)
    height, width = int(shape[0]), int(shape[1])
    batch = boxes.shape[0]
    cell_x = (x_max - x_min) / width
    cell_y = (y_max - y_min) / height
    device, dtype = boxes.device, boxes.dtype

    radius = gaussian_radius(boxes[..., 3] / cell_x, boxes[..., 4] / cell_y, min_overlap)  # (B, M)
    radius = torch.clamp(torch.floor(radius), min=float(min_radius)).to(torch.int64)
    # float64 so a centre exactly on a cell edge (30 m on the paper grid) lands in the cell that starts there.
    col = torch.floor((boxes[..., 0].double() - x_min) / cell_x).to(torch.int64)  # (B, M)
    row = torch.floor((boxes[..., 1].double() - y_min) / cell_y).to(torch.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    valid = gt_mask & inside  # (B, M)

    mask = torch.zeros(batch * height * width, dtype=dtype, device=device)
    # One host sync for the window size; everything else stays on the device.
    max_radius = int(torch.where(valid, radius, 0).max()) if valid.numel() else 0
    offsets = torch.arange(-max_radius, max_radius + 1, device=device)  # (K,)
    d_row = offsets.view(1, 1, -1, 1)  # (1, 1, K, 1)
    d_col = offsets.view(1, 1, 1, -1)  # (1, 1, 1, K)
    r = radius[..., None, None]  # (B, M, 1, 1)
    sigma = (2 * r + 1).to(dtype) / 6
    values = torch.exp(-(d_row**2 + d_col**2).to(dtype) / (2 * sigma**2))  # (B, M, K, K)
    rows = row[..., None, None] + d_row  # (B, M, K, 1)
    cols = col[..., None, None] + d_col  # (B, M, 1, K)
    keep = (
        valid[..., None, None]
        & (d_row.abs() <= r)
        & (d_col.abs() <= r)
        & (rows >= 0)
        & (rows < height)
        & (cols >= 0)
        & (cols < width)
    )  # (B, M, K, K)
    batch_offset = (torch.arange(batch, device=device) * height * width).view(-1, 1, 1, 1)
    index = batch_offset + rows * width + cols  # (B, M, K, K)
    index = torch.where(keep, index, 0).reshape(-1)
    values = torch.where(keep, values, 0).reshape(-1)
    # Dropped entries write 0 into cell 0 of the batch: harmless under amax since the mask is >= 0.
    mask.scatter_reduce_(0, index, values, reduce="amax", include_self=True)
    return mask.view(batch, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------


def _global_mean(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """`numerator / Σ_ranks denominator`, scaled by the world size so DDP's gradient mean is the global loss.

    The denominator is >= 1 whenever the numerator can be nonzero (counts of boxes; mask sums contain a centre
    cell of value 1 per box), so clamping it at 1 only turns 0 / 0 into 0 while keeping the graph.
    """
    total = global_sum(denominator.to(numerator.dtype))
    return numerator * world_size() / total.clamp_min(1.0)


def _box_mask_like(
    feature_map: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    min_overlap: float,
    min_radius: int,
) -> torch.Tensor:
    """`gaussian_box_mask` on the grid and device of a `(B, C, H, W)` map (float32 boxes)."""
    device = feature_map.device
    return gaussian_box_mask(
        gt_boxes.to(device).float(),
        gt_mask.to(device),
        bev_range,
        tuple(feature_map.shape[-2:]),
        min_overlap=min_overlap,
        min_radius=min_radius,
    )


def _sample_crucial_points(
    student: torch.Tensor,
    teacher: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    names: tuple[str, str],
    where: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair(student, teacher, names, where)
    _check_bev_range(bev_range, where)
    boxes = _check_boxes(gt_boxes.to(student.device), gt_mask.to(student.device), student.shape[0], where)
    points = box_crucial_points(boxes.float())  # (B, M, 9, 2)
    sampled_student = bev_sample(student, points, bev_range)  # (B, M, 9, C)
    sampled_teacher = bev_sample(teacher.detach(), points, bev_range)  # (B, M, 9, C)
    _check_finite(names[0] + " (at the crucial points)", sampled_student, where)
    _check_finite(names[1] + " (at the crucial points)", sampled_teacher, where)
    return sampled_student, sampled_teacher


FEATURE_NORMALIZATIONS = ("none", "layer", "channel")
_NORM_EPS = 1e-5


def _normalize_features(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-free features `(..., C)` for the feature terms; `weight` (broadcast to `(...)`) marks what counts."""
    if mode == "layer":
        # Each C-vector to zero mean, unit variance over its channels (layer norm without affine parameters).
        return (
            F.layer_norm(student, student.shape[-1:], eps=_NORM_EPS),
            F.layer_norm(teacher, teacher.shape[-1:], eps=_NORM_EPS),
        )
    # "channel": the teacher's per-channel mean / std over the weighted positions of the batch, applied to both.
    w = weight.to(teacher.dtype).expand(teacher.shape[:-1])[..., None]  # (..., 1)
    dims = tuple(range(teacher.ndim - 1))
    count = w.sum().clamp_min(1e-6)
    mean = (teacher * w).sum(dim=dims) / count  # (C,)
    var = (((teacher - mean) ** 2) * w).sum(dim=dims) / count  # (C,)
    scale = torch.rsqrt(var + _NORM_EPS)
    return (student - mean) * scale, (teacher - mean) * scale


def feature_distillation_loss(
    student_low: torch.Tensor,
    teacher_low: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    *,
    normalize: str = "none",
) -> torch.Tensor:
    """Feature distillation (paper eq. 3): L1 between low-level BEV features at the 9 crucial points of each box.

    Per box: mean over the 9 points and the C channels of `|F_T(p) − F_S(p)|`; averaged over the valid boxes of
    the global batch (0 when there is none). The teacher map is detached.

    `normalize` (not in the paper; for teachers and students whose feature scales differ, e.g. a LiDAR teacher's
    pillar features and a camera student's) compares scale-free features instead:
    - `"none"`: the paper's eq. 3 on raw features.
    - `"layer"`: every sampled C-vector of teacher and student is standardised over its channels,
      `(v − mean_c v) / sqrt(var_c v + 1e-5)`, so the term measures the pattern across channels and is O(1)
      whatever either network's scale.
    - `"channel"`: both are standardised with the teacher's per-channel mean and variance over the valid crucial
      points of the batch (on this rank), i.e. eq. 3 with channel c weighted by `1 / σ_T,c` — every teacher
      channel counts alike, whatever its scale. The statistics carry no gradient (the teacher is detached).

    Args:
        student_low, teacher_low (`torch.Tensor` of shape `(B, C, H, W)`): low-level BEV maps (same shape; apply
            adaptive layers to the student first when channels differ).
        gt_boxes (`torch.Tensor` of shape `(B, M, >=7)`), gt_mask (`torch.Tensor` of shape `(B, M)`, bool).
        bev_range (`(x_min, y_min, x_max, y_max)`).
        normalize (`str`): one of `FEATURE_NORMALIZATIONS`.

    Returns:
        Scalar tensor (this rank's share under torch.distributed, see the module docstring).
    """
    where = "feature_distillation_loss"
    if normalize not in FEATURE_NORMALIZATIONS:
        raise ValueError(f"{where}: normalize must be one of {FEATURE_NORMALIZATIONS}, got {normalize!r}")
    student, teacher = _sample_crucial_points(
        student_low, teacher_low, gt_boxes, gt_mask, bev_range, ("student_low", "teacher_low"), where
    )
    valid = gt_mask.to(student.device)
    if normalize != "none":
        student, teacher = _normalize_features(student, teacher, valid[..., None], normalize)
    per_box = (student - teacher).abs().mean(dim=(-2, -1))  # (B, M)
    numerator = torch.where(valid, per_box, 0).sum()
    return _global_mean(numerator, valid.sum())


def foreground_feature_distillation_loss(
    student_low: torch.Tensor,
    teacher_low: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    *,
    normalize: str = "none",
    min_overlap: float = 0.1,
    min_radius: int = 2,
) -> torch.Tensor:
    """Dense foreground feature imitation (after BEVDistill; a variant of eq. 3, not in UniDistill).

    Every cell of the low-level BEV counts with the weight `M` of a Gaussian box mask (`gaussian_box_mask` with
    CenterPoint's heatmap settings by default, so each object covers a few cells around its centre rather than the
    paper's nine sampled points):

        L = Σ_cells M · mean_c |F_T − F_S| / Σ M        (Σ M over the global batch; 0 without boxes on the map)

    `normalize` as in [`feature_distillation_loss`] ("channel" statistics are weighted by `M`). The teacher map is
    detached.

    Args:
        student_low, teacher_low (`torch.Tensor` of shape `(B, C, H, W)`): low-level BEV maps (same shape).
        gt_boxes (`torch.Tensor` of shape `(B, M, >=7)`), gt_mask (`torch.Tensor` of shape `(B, M)`, bool).
        bev_range (`(x_min, y_min, x_max, y_max)`).
        normalize (`str`): one of `FEATURE_NORMALIZATIONS`.
        min_overlap, min_radius: mask parameters, see [`gaussian_box_mask`].

    Returns:
        Scalar tensor (this rank's share under torch.distributed, see the module docstring).
    """
    where = "foreground_feature_distillation_loss"
    if normalize not in FEATURE_NORMALIZATIONS:
        raise ValueError(f"{where}: normalize must be one of {FEATURE_NORMALIZATIONS}, got {normalize!r}")
    _check_pair(student_low, teacher_low, ("student_low", "teacher_low"), where)
    _check_bev_range(bev_range, where)
    mask = _box_mask_like(student_low, gt_boxes, gt_mask, bev_range, min_overlap, min_radius)  # (B, H, W)
    student = student_low.float().permute(0, 2, 3, 1)  # (B, H, W, C)
    teacher = teacher_low.detach().float().permute(0, 2, 3, 1)
    if normalize != "none":
        student, teacher = _normalize_features(student, teacher, mask, normalize)
    per_cell = (student - teacher).abs().mean(dim=-1)  # (B, H, W)
    return _global_mean((per_cell * mask).sum(), mask.sum())


def _relation_matrix(vectors: torch.Tensor) -> torch.Tensor:
    normalised = vectors / (torch.linalg.vector_norm(vectors, dim=-1, keepdim=True) + _RELATION_EPS)  # (B, M, 9, C)
    return normalised @ normalised.transpose(-1, -2)  # (B, M, 9, 9)


def relation_distillation_loss(
    student_high: torch.Tensor,
    teacher_high: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
) -> torch.Tensor:
    """Relation distillation (paper eq. 4–5): L1 between the 9 × 9 cosine-similarity matrices of each box.

    The high-level vectors at the 9 crucial points are normalised as `v / (‖v‖ + 1e-8)` (a point outside the map
    reads a zero vector and so relates to nothing); per box the mean over the 81 entries of
    `|RelMat_T − RelMat_S|`, averaged over the valid boxes of the global batch (0 when there is none).

    Args:
        student_high, teacher_high (`torch.Tensor` of shape `(B, C, H, W)`): high-level BEV maps (same shape).
        gt_boxes (`torch.Tensor` of shape `(B, M, >=7)`), gt_mask (`torch.Tensor` of shape `(B, M)`, bool).
        bev_range (`(x_min, y_min, x_max, y_max)`).

    Returns:
        Scalar tensor (this rank's share under torch.distributed, see the module docstring).
    """
    where = "relation_distillation_loss"
    student, teacher = _sample_crucial_points(
        student_high, teacher_high, gt_boxes, gt_mask, bev_range, ("student_high", "teacher_high"), where
    )
    per_box = (_relation_matrix(student) - _relation_matrix(teacher)).abs().mean(dim=(-2, -1))  # (B, M)
    valid = gt_mask.to(per_box.device)
    numerator = torch.where(valid, per_box, 0).sum()
    return _global_mean(numerator, valid.sum())


def response_distillation_loss(
    student_heatmap: torch.Tensor,
    student_regression: torch.Tensor,
    teacher_heatmap: torch.Tensor,
    teacher_regression: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    bev_range: Sequence[float],
    *,
    teacher_temperature: float = 1.0,
    student_temperature: float = 1.0,
    min_overlap: float = 0.7,
    min_radius: int = 0,
) -> torch.Tensor:
    """Response distillation (paper eq. 6–7): L1 between response maps inside the Gaussian box mask.

    The class response is `max_k sigmoid(z_k / τ)` over the heatmap classes (eq. 6; the authors use τ_T = 2,
    τ_S = 1), the regression response is every regression channel. With `M` = [`gaussian_box_mask`]:

        L = Σ |cls_S − cls_T| · M / Σ M + Σ mean_c |reg_S − reg_T| · M / Σ M

    with Σ M over the global batch (0 when no valid box has its centre on the map). Teacher maps are detached.

    Args:
        student_heatmap, teacher_heatmap (`torch.Tensor` of shape `(B, K, H, W)`): heatmap logits.
        student_regression, teacher_regression (`torch.Tensor` of shape `(B, R, H, W)`): regression maps.
        gt_boxes (`torch.Tensor` of shape `(B, M, >=7)`), gt_mask (`torch.Tensor` of shape `(B, M)`, bool).
        bev_range (`(x_min, y_min, x_max, y_max)`).
        teacher_temperature, student_temperature (`float`, > 0): logit temperatures.
        min_overlap, min_radius: mask parameters, see [`gaussian_box_mask`].

    Returns:
        Scalar tensor (this rank's share under torch.distributed, see the module docstring).
    """
    where = "response_distillation_loss"
    _check_pair(student_heatmap, teacher_heatmap, ("student_heatmap", "teacher_heatmap"), where)
    _check_pair(student_regression, teacher_regression, ("student_regression", "teacher_regression"), where)
    batch, _, height, width = student_heatmap.shape
    if student_regression.shape[0] != batch or student_regression.shape[-2:] != (height, width):
        raise ValueError(
            f"{where}: regression maps {tuple(student_regression.shape)} must share (B, ·, H, W) with the heatmaps "
            f"{tuple(student_heatmap.shape)}"
        )
    for name, value in (("teacher_temperature", teacher_temperature), ("student_temperature", student_temperature)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {name} must be a positive number, got {value!r}")
    for name, tensor in (
        ("student_heatmap", student_heatmap),
        ("teacher_heatmap", teacher_heatmap),
        ("student_regression", student_regression),
        ("teacher_regression", teacher_regression),
    ):
        _check_finite(name, tensor, where)
    mask = _box_mask_like(student_heatmap, gt_boxes, gt_mask, bev_range, min_overlap, min_radius)  # (B, H, W)
    student_cls = torch.sigmoid(student_heatmap.float() / student_temperature).amax(dim=1)  # (B, H, W)
    teacher_cls = torch.sigmoid(teacher_heatmap.detach().float() / teacher_temperature).amax(dim=1)
    reg_diff = (student_regression.float() - teacher_regression.detach().float()).abs().mean(dim=1)  # (B, H, W)
    numerator = (((student_cls - teacher_cls).abs() + reg_diff) * mask).sum()
    return _global_mean(numerator, mask.sum())

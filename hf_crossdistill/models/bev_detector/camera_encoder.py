"""Camera encoder (BEVDet / Lift-Splat-Shoot): multi-view images → low-level BEV map `(B, C_low, H, W)`.

Image backbone (any transformers `AutoBackbone`) → FPN-style neck → 1×1 conv to D depth logits + C context
channels → frustum points in the (augmented) LIDAR_TOP frame → BEV pooling.

BEV pooling never materialises the (pixels × D × C) depth ⊗ context volume: with one frustum point per
(pixel, depth bin), each BEV cell receives Σ depth_weight · context[pixel], so the pooled map is
S @ X with S a sparse (cells × pixels) matrix holding the depth weights and X the dense (pixels × C) context.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone

from .configuration_bev_detector import BEVDetectorConfig

# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------


def frustum_points(
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    image_aug_matrix: torch.Tensor,
    camera_to_lidar: torch.Tensor,
    bev_aug_matrix: torch.Tensor,
) -> torch.Tensor:
    """Frustum points in the augmented LIDAR_TOP frame.

    A feature cell (i, j) sits at the input-image pixel centre it covers; a point at depth d is
    `bev_aug @ camera_to_lidar @ [inv(K) @ inv(image_aug) @ (u·d, v·d, d)]` (the shared batch contract).

    Args:
        feature_size: (h, w) of the depth / context map.
        image_size: (H_in, W_in) of the network input.
        depths: (D,) depth of each bin in metres.
        intrinsics: (B, N, 3, 3) original camera intrinsics.
        image_aug_matrix: (B, N, 3, 3) original pixels → augmented input pixels.
        camera_to_lidar: (B, N, 4, 4) camera → un-augmented LIDAR_TOP.
        bev_aug_matrix: (B, 4, 4) un-augmented → augmented LIDAR_TOP.

    Returns:
        (B, N, h, w, D, 3) xyz in metres.
    """
    h, w = feature_size
    height, width = image_size
    device = intrinsics.device
    u = (torch.arange(w, device=device, dtype=torch.float64) + 0.5) * (width / w) - 0.5
    v = (torch.arange(h, device=device, dtype=torch.float64) + 0.5) * (height / h) - 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pixels = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1)  # (h, w, 3) homogeneous augmented pixels

    # Compose in float64: inv(K) of a 1600×900 camera loses ~1e-4 m in float32 at 58 m depth.
    bev_rot = bev_aug_matrix[:, None, :3, :3].double()  # (B, 1, 3, 3)
    cam2lidar = camera_to_lidar.double()
    rays = (
        bev_rot
        @ cam2lidar[..., :3, :3]
        @ torch.linalg.inv(intrinsics.double())
        @ torch.linalg.inv(image_aug_matrix.double())
    )  # (B, N, 3, 3)
    origin = (bev_rot @ cam2lidar[..., :3, 3:]).squeeze(-1) + bev_aug_matrix[:, None, :3, 3].double()  # (B, N, 3)
    directions = torch.einsum("bnij,hwj->bnhwi", rays, pixels)  # (B, N, h, w, 3)
    points = directions.unsqueeze(4) * depths.double().view(1, 1, 1, 1, -1, 1) + origin[:, :, None, None, None, :]
    return points.float()  # (B, N, h, w, D, 3)


def frustum_cells(
    points: torch.Tensor,
    point_cloud_range: list[float] | tuple[float, ...],
    cell_size: float,
    bev_shape: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat BEV cell of each frustum point and whether it lies inside the range (x, y and z).

    Args:
        points: (B, N, h, w, D, 3).

    Returns:
        cells (B, N, h, w, D) int64 in [0, B·H·W) (garbage where invalid), valid (B, N, h, w, D) bool.
    """
    x_min, y_min, z_min, x_max, y_max, z_max = point_cloud_range
    height, width = bev_shape
    x, y, z = points.unbind(-1)
    col = torch.floor((x - x_min) / cell_size).long()
    row = torch.floor((y - y_min) / cell_size).long()
    valid = (col >= 0) & (col < width) & (row >= 0) & (row < height) & (z >= z_min) & (z < z_max)
    batch = torch.arange(points.shape[0], device=points.device).view(-1, 1, 1, 1, 1)
    cells = (batch * height + row) * width + col
    return cells, valid


# ---------------------------------------------------------------------------------------------------------------
# BEV pooling
# ---------------------------------------------------------------------------------------------------------------


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


class _SparseSplat(torch.autograd.Function):
    """out = S @ X for S (cells × pixels) given by pixel-major non-zeros; gradients for both factors."""

    @staticmethod
    def forward(ctx, values, context, cells, pixels, order, num_cells):
        num_pixels = context.shape[0]
        crow = torch.ops.aten._convert_indices_from_coo_to_csr(cells[order], num_cells)
        crow_t = torch.ops.aten._convert_indices_from_coo_to_csr(pixels, num_pixels)  # pixels are sorted
        col = pixels[order]
        ctx.save_for_backward(values, context, crow, col, crow_t, cells, order)
        ctx.shape = (num_cells, num_pixels)
        return _csr(crow, col, values[order], (num_cells, num_pixels)) @ context

    @staticmethod
    def backward(ctx, grad_out):
        values, context, crow, col, crow_t, cells, order = ctx.saved_tensors
        num_cells, num_pixels = ctx.shape
        grad_out = grad_out.contiguous()
        grad_values = grad_context = None
        if ctx.needs_input_grad[1]:
            grad_context = _csr(crow_t, cells, values, (num_pixels, num_cells)) @ grad_out  # S^T @ dOut
        if ctx.needs_input_grad[0]:
            # d out[c] / d S[c, p] = X[p]: the dense dOut @ X^T sampled at S's non-zeros.
            pattern = _csr(crow, col, torch.zeros_like(values), (num_cells, num_pixels))
            sampled = torch.sparse.sampled_addmm(pattern, grad_out, context.t().contiguous(), beta=0.0).values()
            grad_values = torch.empty_like(values)
            grad_values[order] = sampled
        return grad_values, grad_context, None, None, None, None


def bev_pool(
    depth: torch.Tensor, context: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor, num_cells: int
) -> torch.Tensor:
    """Sum of depth-weighted context over the frustum points falling in each BEV cell.

    out[cell, :] = Σ_{(pixel, d) → cell} depth[pixel, d] · context[pixel, :]

    Args:
        depth: (P, D) depth weights per pixel (P = B·N·h·w pixels, any order).
        context: (P, C) context vector per pixel.
        cells: (P, D) int64 flat BEV cell of each frustum point.
        valid: (P, D) bool, frustum point inside the BEV range.
        num_cells: number of output cells (B·H·W).

    Returns:
        (num_cells, C) pooled features.
    """
    if depth.shape != cells.shape or depth.shape != valid.shape or depth.shape[0] != context.shape[0]:
        raise ValueError(
            f"bev_pool: depth {tuple(depth.shape)}, cells {tuple(cells.shape)}, valid {tuple(valid.shape)} and "
            f"context {tuple(context.shape)} must share (P, D) / P"
        )
    out_dtype = context.dtype
    num_pixels, num_bins = depth.shape
    pixels = torch.arange(num_pixels, device=depth.device).unsqueeze(1).expand(-1, num_bins)  # (P, D)
    flat_valid = valid.reshape(-1)
    values = depth.reshape(-1)[flat_valid].float()  # pixel-major non-zeros
    cell_ids = cells.reshape(-1)[flat_valid]
    pixel_ids = pixels.reshape(-1)[flat_valid]
    order = torch.argsort(cell_ids, stable=True)
    # Sparse kernels run in float32 whatever autocast says.
    with torch.autocast(device_type=depth.device.type, enabled=False):
        out = _SparseSplat.apply(values, context.float().contiguous(), cell_ids, pixel_ids, order, num_cells)
    return out.to(out_dtype)


def bev_pool_reference(
    depth: torch.Tensor, context: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor, num_cells: int
) -> torch.Tensor:
    """Plain reference: materialise depth ⊗ context and `index_add_` it into the cells."""
    volume = depth.unsqueeze(-1) * context.unsqueeze(1)  # (P, D, C)
    out = context.new_zeros(num_cells, context.shape[1])
    return out.index_add(0, cells[valid], volume[valid])


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ImageNeck(nn.Module):
    """FPN-style neck: upsample every backbone level to the finest one, concat, two 3×3 convs."""

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.convs = nn.Sequential(
            *_conv_bn_relu(sum(in_channels), out_channels), *_conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        resized = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        return self.convs(torch.cat(resized, dim=1))


class CameraBEVEncoder(nn.Module):
    """BEVDet / LSS camera encoder. The number of cameras comes from the input."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        self.backbone = AutoBackbone.from_config(config.image_backbone_config)
        self.neck = ImageNeck(list(self.backbone.channels), config.neck_channels)
        self.num_depth_bins = config.num_depth_bins
        self.context_channels = config.low_bev_channels
        self.depth_net = nn.Conv2d(config.neck_channels, self.num_depth_bins + self.context_channels, 1)
        self.point_cloud_range = list(config.point_cloud_range)
        self.cell_size = config.bev_cell_size
        self.bev_shape = config.bev_shape
        d_min, _, step = config.depth_bins
        self.register_buffer(
            "depths", d_min + step * torch.arange(self.num_depth_bins, dtype=torch.float32), persistent=False
        )
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)

    def reset_buffers(self, config: BEVDetectorConfig) -> dict[str, torch.Tensor]:
        """Values of the non-persistent buffers (rebuilt by `_init_weights` after `from_pretrained`)."""
        d_min, _, step = config.depth_bins
        return {
            "depths": d_min + step * torch.arange(self.num_depth_bins, dtype=torch.float32),
            "image_mean": torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1),
            "image_std": torch.tensor(config.image_std, dtype=torch.float32).view(1, 3, 1, 1),
        }

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3, H, W) → depth logits (B, N, D, h, w) and context (B, N, C, h, w)."""
        b, n, _, height, width = images.shape
        x = images.reshape(b * n, 3, height, width)  # (B·N, 3, H, W)
        x = (x - self.image_mean.to(x.dtype)) / self.image_std.to(x.dtype)
        feats = self.neck(list(self.backbone(x).feature_maps))
        out = self.depth_net(feats)  # (B·N, D + C, h, w)
        h, w = out.shape[-2:]
        depth_logits = out[:, : self.num_depth_bins].reshape(b, n, self.num_depth_bins, h, w)
        context = out[:, self.num_depth_bins :].reshape(b, n, self.context_channels, h, w)
        return depth_logits, context

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        camera_to_lidar: torch.Tensor,
        image_aug_matrix: torch.Tensor | None = None,
        bev_aug_matrix: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the BEV map (B, C, H, W) and the depth logits (B, N, D, h, w)."""
        check_camera_inputs(images, intrinsics, camera_to_lidar, image_aug_matrix, bev_aug_matrix)
        b, n, _, height, width = images.shape
        if image_aug_matrix is None:
            image_aug_matrix = torch.eye(3, device=images.device).expand(b, n, 3, 3)
        if bev_aug_matrix is None:
            bev_aug_matrix = torch.eye(4, device=images.device).expand(b, 4, 4)
        depth_logits, context = self.image_features(images)
        h, w = depth_logits.shape[-2:]
        with torch.no_grad():
            points = frustum_points(
                (h, w), (height, width), self.depths, intrinsics, image_aug_matrix, camera_to_lidar, bev_aug_matrix
            )  # (B, N, h, w, D, 3)
            cells, valid = frustum_cells(points, self.point_cloud_range, self.cell_size, self.bev_shape)
        depth = depth_logits.softmax(dim=2).permute(0, 1, 3, 4, 2).reshape(-1, self.num_depth_bins)  # (B·N·h·w, D)
        context = context.permute(0, 1, 3, 4, 2).reshape(-1, self.context_channels)  # (B·N·h·w, C)
        rows, cols = self.bev_shape
        pooled = bev_pool(
            depth,
            context,
            cells.reshape(-1, self.num_depth_bins),
            valid.reshape(-1, self.num_depth_bins),
            b * rows * cols,
        )  # (B·H·W, C)
        bev = pooled.reshape(b, rows, cols, self.context_channels).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
        return bev, depth_logits


# ---------------------------------------------------------------------------------------------------------------
# Depth supervision from LiDAR (BEVDepth-style; optional, `config.depth_loss_weight`)
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def lidar_depth_targets(
    points: torch.Tensor,
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    depth_bins: tuple[float, float, float] | list[float],
    intrinsics: torch.Tensor,
    camera_to_lidar: torch.Tensor,
    image_aug_matrix: torch.Tensor | None = None,
    bev_aug_matrix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth bin of the nearest LiDAR point seen by each depth-map cell: the target of `depth_loss`.

    Every point is projected into every camera of its sample (the inverse of `frustum_points`: un-augmented
    LIDAR_TOP → camera → original pixel → augmented input pixel → feature cell); the cell keeps the smallest
    camera depth, whose target is the frustum depth `d_min + k · step` nearest to it.

    Args:
        points: (P, ≥4) `[batch_index, x, y, z, ...]` in the augmented LIDAR_TOP frame.
        feature_size: (h, w) of the depth map; image_size: (H_in, W_in) of the network input.
        depth_bins: `[d_min, d_max, step]` as in the config.
        intrinsics (B, N, 3, 3), camera_to_lidar (B, N, 4, 4), image_aug_matrix (B, N, 3, 3),
        bev_aug_matrix (B, 4, 4): the batch's camera geometry (augmentations default to identity).

    Returns:
        (B, N, h, w) int64 bin index, -1 where no point lands in the cell or its depth is outside the bins.
    """
    if points.ndim != 2 or points.shape[1] < 4:
        raise ValueError(f"points must be (P, ≥4) [batch_index, x, y, z, ...], got {tuple(points.shape)}")
    b, n = intrinsics.shape[:2]
    h, w = feature_size
    height, width = image_size
    d_min, d_max, step = (float(x) for x in depth_bins)
    num_bins = round((d_max - d_min) / step)
    device = intrinsics.device
    if image_aug_matrix is None:
        image_aug_matrix = torch.eye(3, device=device).expand(b, n, 3, 3)
    if bev_aug_matrix is None:
        bev_aug_matrix = torch.eye(4, device=device).expand(b, 4, 4)

    # Augmented LIDAR_TOP → camera (B, N, 4, 4), then → augmented pixels (B, N, 3, 4); composed in float64.
    to_camera = torch.linalg.inv(camera_to_lidar.double()) @ torch.linalg.inv(bev_aug_matrix.double())[:, None]
    to_pixels = image_aug_matrix.double() @ intrinsics.double() @ to_camera[..., :3, :]
    projection = torch.cat([to_pixels, to_camera[..., 2:3, :]], dim=2).float()  # (B, N, 4, 4): u·z, v·z, z', z

    batch_index = points[:, 0].long()  # (P,)
    if len(points) and (batch_index.min() < 0 or batch_index.max() >= b):
        raise ValueError(f"points carry batch indices outside [0, {b})")
    xyz1 = torch.cat([points[:, 1:4], torch.ones_like(points[:, :1])], dim=1).float()  # (P, 4)
    # One GEMM per sample (B is the batch size, not a point loop): gathering a (4, 4) matrix per point and
    # camera would move P·N·16 floats.
    projected = torch.empty(len(points), n, 4, device=device)  # (P, N, 4)
    with torch.autocast(device_type=device.type, enabled=False):  # geometry stays float32 under mixed precision
        for sample in range(b):
            rows = batch_index == sample
            projected[rows] = (xyz1[rows] @ projection[sample].reshape(n * 4, 4).T).reshape(-1, n, 4)
    depth = projected[..., 3]  # (P, N) camera z
    front = depth > 1e-3
    safe = torch.where(front, projected[..., 2], torch.ones_like(depth))
    u = projected[..., 0] / safe  # augmented input pixel (pixel centres at integers)
    v = projected[..., 1] / safe
    col = torch.floor((u + 0.5) * (w / width)).long()
    row = torch.floor((v + 0.5) * (h / height)).long()
    inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)

    camera = torch.arange(n, device=device).expand_as(depth)  # (P, N)
    flat = ((batch_index[:, None] * n + camera) * h + row) * w + col  # (P, N) into B·N·h·w
    nearest = torch.full((b * n * h * w,), float("inf"), device=device)
    nearest.scatter_reduce_(0, flat[inside], depth[inside], reduce="amin")
    target = torch.round((nearest - d_min) / step)  # inf stays inf
    target = torch.where(torch.isfinite(target) & (target >= 0) & (target < num_bins), target, -1.0)
    return target.long().reshape(b, n, h, w)


def depth_loss(depth_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the depth distribution against `lidar_depth_targets` over the cells that have one.

    Args:
        depth_logits: (B, N, D, h, w); target: (B, N, h, w) int64, -1 = no target.

    Returns:
        Scalar; zero (still connected to the graph) when no cell has a target.
    """
    if depth_logits.ndim != 5 or tuple(target.shape) != (*depth_logits.shape[:2], *depth_logits.shape[3:]):
        raise ValueError(
            f"depth_loss: depth_logits (B, N, D, h, w) {tuple(depth_logits.shape)} and target (B, N, h, w) "
            f"{tuple(target.shape)} do not agree"
        )
    logits = depth_logits.float().permute(0, 1, 3, 4, 2).reshape(-1, depth_logits.shape[2])  # (B·N·h·w, D)
    total = F.cross_entropy(logits, target.reshape(-1), ignore_index=-1, reduction="sum")
    # Mean over the cells with a target, without a host sync; 0 (still in the graph) when there is none.
    return total / (target >= 0).sum().clamp(min=1)


def check_camera_inputs(
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    camera_to_lidar: torch.Tensor,
    image_aug_matrix: torch.Tensor | None,
    bev_aug_matrix: torch.Tensor | None,
) -> None:
    """Validate the camera part of the batch contract (shapes agree on B and N_cam)."""
    if images is None or intrinsics is None or camera_to_lidar is None:
        raise ValueError("a camera detector needs `images`, `intrinsics` and `camera_to_lidar`")
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (B, N_cam, 3, H, W), got {tuple(images.shape)}")
    b, n = images.shape[:2]
    expected = {"intrinsics": (b, n, 3, 3), "camera_to_lidar": (b, n, 4, 4)}
    given = {"intrinsics": intrinsics, "camera_to_lidar": camera_to_lidar}
    if image_aug_matrix is not None:
        expected["image_aug_matrix"], given["image_aug_matrix"] = (b, n, 3, 3), image_aug_matrix
    if bev_aug_matrix is not None:
        expected["bev_aug_matrix"], given["bev_aug_matrix"] = (b, 4, 4), bev_aug_matrix
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(
                f"{name} must be {shape} for images {tuple(images.shape)}, got {tuple(given[name].shape)}"
            )

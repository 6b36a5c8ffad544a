"""LiDAR encoders: point cloud → low-level BEV map `(B, C_low, H, W)`.

- `VoxelLidarEncoder` — CenterPoint-Voxel: spconv `PointToVoxel`, mean VFE, sparse 3D ResNet (submanifold +
  strided sparse convs), height compression.
- `PillarLidarEncoder` — PointPillars-style dense encoder (no spconv needed): point MLP, max per pillar,
  2D convs.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .configuration_bev_detector import BEVDetectorConfig
from .sparse_conv import SparseConv3d, SparseVoxels, SubmanifoldConv3d


def check_points(points: torch.Tensor, batch_size: int, num_point_features: int) -> None:
    """Validate the contract's `points` (P, 1 + F) `[batch_index, x, y, z, intensity, Δt, ...]`."""
    if not torch.is_tensor(points) or points.ndim != 2 or points.shape[1] != 1 + num_point_features:
        shape = tuple(points.shape) if torch.is_tensor(points) else type(points).__name__
        raise ValueError(
            f"points must be a (P, {1 + num_point_features}) tensor [batch_index, x, y, z, intensity, Δt], got {shape}"
        )
    if len(points) and (points[:, 0].min() < 0 or points[:, 0].max() >= batch_size):
        raise ValueError(f"points[:, 0] (batch index) must lie in [0, {batch_size}), got values outside")


def mean_voxel_features(voxels: torch.Tensor, num_points: torch.Tensor) -> torch.Tensor:
    """Mean VFE: (N, max_points, F) zero-padded voxels, (N,) counts → (N, F) mean point feature."""
    return voxels.sum(dim=1) / num_points.clamp(min=1).to(voxels.dtype).unsqueeze(1)


def _require_spconv():
    try:
        with warnings.catch_warnings():
            # spconv's build helper calls the deprecated locale.getdefaultlocale at import time.
            warnings.simplefilter("ignore", DeprecationWarning)
            from spconv.pytorch.utils import PointToVoxel
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The voxel LiDAR encoder needs spconv for voxelisation: `pip install hf_crossdistill[sparse]` "
            "(GPU users: spconv-cu12x), or use BEVDetectorConfig(lidar_encoder='pillar')."
        ) from err
    return PointToVoxel


class Voxelizer:
    """Groups points into voxels with spconv's `PointToVoxel` (per sample; first points win when full)."""

    def __init__(self, config: BEVDetectorConfig):
        self.point_to_voxel_cls = _require_spconv()
        self.voxel_size = list(config.voxel_size)
        self.point_cloud_range = list(config.point_cloud_range)
        self.num_point_features = config.num_point_features
        self.max_points = config.max_points_per_voxel
        self.max_voxels = config.max_voxels
        self._generators: dict[str, object] = {}

    def _generator(self, device: torch.device):
        key = str(device)
        if key not in self._generators:
            self._generators[key] = self.point_to_voxel_cls(
                vsize_xyz=self.voxel_size,
                coors_range_xyz=self.point_cloud_range,
                num_point_features=self.num_point_features,
                max_num_voxels=self.max_voxels,
                max_num_points_per_voxel=self.max_points,
                device=device,
            )
        return self._generators[key]

    @torch.no_grad()
    def __call__(self, points: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P, 1 + F) points → voxels (N, max_points, F), coords (N, 4) int64 [b, z, y, x], counts (N,)."""
        generator = self._generator(points.device)
        batch_index = points[:, 0].long()
        all_voxels, all_coords, all_counts = [], [], []
        for b in range(batch_size):  # spconv voxelises one cloud at a time
            cloud = points[batch_index == b, 1:].contiguous()
            voxels, coords, counts = generator(cloud)
            all_voxels.append(voxels)
            all_coords.append(torch.cat([coords.new_full((len(coords), 1), b), coords], dim=1).long())
            all_counts.append(counts)
        return torch.cat(all_voxels), torch.cat(all_coords), torch.cat(all_counts)


class SparseBatchNormReLU(nn.Module):
    def __init__(self, channels: int, relu: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)
        self.relu = relu

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        features = self.norm(voxels.features)
        return voxels.replace_features(torch.relu(features) if self.relu else features)


class SparseBasicBlock(nn.Module):
    """Submanifold residual block: (SubM 3³ → BN → ReLU → SubM 3³ → BN) + identity → ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = SubmanifoldConv3d(channels, channels, 3, bias=False)
        self.bn1 = SparseBatchNormReLU(channels)
        self.conv2 = SubmanifoldConv3d(channels, channels, 3, bias=False)
        self.bn2 = SparseBatchNormReLU(channels, relu=False)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        out = self.bn2(self.conv2(self.bn1(self.conv1(voxels))))
        return out.replace_features(torch.relu(out.features + voxels.features))


class SparseResNet3d(nn.Module):
    """Sparse 3D ResNet: stride-1 stem, stride-2 stages, then a (3, 1, 1)/(2, 1, 1) conv before height collapse."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        channels, blocks = config.sparse_channels, config.sparse_blocks
        self.stem = nn.ModuleList(
            [
                SubmanifoldConv3d(config.num_point_features, channels[0], 3, bias=False),
                SparseBatchNormReLU(channels[0]),
            ]
        )
        self.stages = nn.ModuleList()
        for i, (width, depth) in enumerate(zip(channels, blocks)):
            layers: list[nn.Module] = []
            if i > 0:
                layers += [SparseConv3d(channels[i - 1], width, 3, stride=2, padding=1), SparseBatchNormReLU(width)]
            layers += [SparseBasicBlock(width) for _ in range(depth)]
            self.stages.append(nn.ModuleList(layers))
        z = config.voxel_grid_shape[0]
        for _ in range(len(channels) - 1):
            z = (z + 2 - 3) // 2 + 1
        kz = min(3, z)
        self.compress = nn.ModuleList(
            [SparseConv3d(channels[-1], channels[-1], (kz, 1, 1), stride=(2, 1, 1)), SparseBatchNormReLU(channels[-1])]
        )

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        for layer in self.stem:
            voxels = layer(voxels)
        for stage in self.stages:
            for layer in stage:
                voxels = layer(voxels)
        for layer in self.compress:
            voxels = layer(voxels)
        return voxels


class VoxelLidarEncoder(nn.Module):
    """CenterPoint-Voxel encoder: voxelise → mean VFE → sparse 3D ResNet → height compression."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        self.voxelizer = Voxelizer(config)
        self.backbone = SparseResNet3d(config)
        self.grid_shape = config.voxel_grid_shape
        self.num_point_features = config.num_point_features

    def forward(self, points: torch.Tensor, batch_size: int) -> torch.Tensor:
        check_points(points, batch_size, self.num_point_features)
        voxels, coords, counts = self.voxelizer(points.float(), batch_size)
        features = mean_voxel_features(voxels, counts)  # (N, F)
        sparse = SparseVoxels.create(features, coords, self.grid_shape, batch_size)
        dense = self.backbone(sparse).dense()  # (B, C, Z', Y', X')
        b, c, z, y, x = dense.shape
        return dense.reshape(b, c * z, y, x)  # (B, C·Z', H, W), row = y, col = x


class PillarLidarEncoder(nn.Module):
    """PointPillars-style encoder: per-point MLP on decorated points, max per pillar, dense 2D convs."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        self.num_point_features = config.num_point_features
        self.upsample = config.pillar_upsample
        height, width = config.bev_shape
        self.pillar_shape = (height * self.upsample, width * self.upsample)
        self.pillar_size = config.bev_cell_size / self.upsample
        self.point_cloud_range = tuple(config.point_cloud_range)
        c = config.pillar_channels
        # Point features + offsets from the pillar's point mean (3) and from the pillar centre (2).
        self.point_net = nn.Linear(config.num_point_features + 5, c, bias=False)
        self.point_norm = nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)
        out = config.low_bev_channels
        stride = self.upsample
        self.convs = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
            nn.Conv2d(out, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
        )

    def forward(self, points: torch.Tensor, batch_size: int) -> torch.Tensor:
        check_points(points, batch_size, self.num_point_features)
        x_min, y_min, z_min, x_max, y_max, z_max = self.point_cloud_range
        xyz = points[:, 1:4]
        inside = (
            (xyz[:, 0] >= x_min)
            & (xyz[:, 0] < x_max)
            & (xyz[:, 1] >= y_min)
            & (xyz[:, 1] < y_max)
            & (xyz[:, 2] >= z_min)
            & (xyz[:, 2] < z_max)
        )
        points = points[inside].float()
        rows_n, cols_n = self.pillar_shape
        col = ((points[:, 1] - x_min) / self.pillar_size).long().clamp(0, cols_n - 1)
        row = ((points[:, 2] - y_min) / self.pillar_size).long().clamp(0, rows_n - 1)
        pillar = (points[:, 0].long() * rows_n + row) * cols_n + col  # (P,) flat pillar id
        num_pillars = batch_size * rows_n * cols_n

        counts = torch.zeros(num_pillars, device=points.device).index_add_(
            0, pillar, torch.ones_like(col, dtype=torch.float)
        )
        sums = points.new_zeros(num_pillars, 3).index_add_(0, pillar, points[:, 1:4])
        mean = sums[pillar] / counts[pillar].unsqueeze(1)  # (P, 3)
        centre = torch.stack(
            [x_min + (col.float() + 0.5) * self.pillar_size, y_min + (row.float() + 0.5) * self.pillar_size], dim=1
        )
        decorated = torch.cat([points[:, 1:], points[:, 1:4] - mean, points[:, 1:3] - centre], dim=1)  # (P, F + 5)
        features = torch.relu(self.point_norm(self.point_net(decorated)))  # (P, C)

        c = features.shape[1]
        grid = features.new_zeros(num_pillars, c)
        grid = grid.scatter_reduce(0, pillar.unsqueeze(1).expand(-1, c), features, reduce="amax", include_self=False)
        grid = grid.reshape(batch_size, rows_n, cols_n, c).permute(0, 3, 1, 2)  # (B, C, H·u, W·u)
        return self.convs(grid.contiguous())


def build_lidar_encoder(config: BEVDetectorConfig) -> nn.Module:
    if config.lidar_encoder == "voxel":
        return VoxelLidarEncoder(config)
    return PillarLidarEncoder(config)

"""Sparse 3D convolutions in plain torch (gather → GEMM → scatter over a rulebook).

spconv's CPU build runs forward passes but its backward asks for a CUDA stream, so it cannot train on a
CPU-only torch. These layers compute exactly what spconv's `SubMConv3d` / `SparseConv3d` compute (same
weight layout `(C_out, kz, ky, kx, C_in)`, same output sites), with autograd from torch itself, on any
device. The only Python loop is over the kernel offsets (27 for a 3×3×3 kernel), never over voxels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class SparseVoxels:
    """Active sites of a batched sparse 3D grid.

    Attributes:
        features: (N, C) float features of the active sites.
        coords: (N, 4) int64 `[batch, z, y, x]`.
        spatial_shape: `(Z, Y, X)` of the grid.
        batch_size: number of samples.
        rulebooks: cache of submanifold neighbour pairs, shared by the convs of one resolution.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    rulebooks: dict = field(default_factory=dict)

    def replace_features(self, features: torch.Tensor) -> SparseVoxels:
        return SparseVoxels(features, self.coords, self.spatial_shape, self.batch_size, self.rulebooks)

    def dense(self) -> torch.Tensor:
        """(B, C, Z, Y, X) dense tensor, zeros at inactive sites."""
        z, y, x = self.spatial_shape
        c = self.features.shape[1]
        out = self.features.new_zeros(self.batch_size, z, y, x, c)
        b, zi, yi, xi = self.coords.unbind(1)
        out = out.index_put((b, zi, yi, xi), self.features)
        return out.permute(0, 4, 1, 2, 3).contiguous()  # (B, C, Z, Y, X)


def _linear_keys(coords: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    z, y, x = shape
    return ((coords[:, 0] * z + coords[:, 1]) * y + coords[:, 2]) * x + coords[:, 3]


def _kernel_offsets(kernel_size: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    axes = [torch.arange(k, device=device) for k in kernel_size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (K, 3) kz, ky, kx


def _lookup(query_keys: torch.Tensor, sorted_keys: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Row index of each query key in the site list (−1 when absent)."""
    pos = torch.searchsorted(sorted_keys, query_keys).clamp(max=max(len(sorted_keys) - 1, 0))
    if len(sorted_keys) == 0:
        return torch.full_like(query_keys, -1)
    found = sorted_keys[pos] == query_keys
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def submanifold_rulebook(voxels: SparseVoxels, kernel_size: tuple[int, int, int]) -> list[tuple[torch.Tensor, ...]]:
    """Per kernel offset: (input rows, output rows) pairs of a stride-1 'same' conv on the active sites."""
    key = ("subm", voxels.spatial_shape, kernel_size)
    if key in voxels.rulebooks:
        return voxels.rulebooks[key]
    coords = voxels.coords
    keys = _linear_keys(coords, voxels.spatial_shape)
    sorted_keys, order = torch.sort(keys)
    bounds = torch.tensor(voxels.spatial_shape, device=coords.device)
    centre = torch.tensor([k // 2 for k in kernel_size], device=coords.device)
    rows = torch.arange(len(coords), device=coords.device)
    pairs = []
    for offset in _kernel_offsets(kernel_size, coords.device):
        neighbour = coords[:, 1:] + (offset - centre)  # (N, 3) zyx
        inside = ((neighbour >= 0) & (neighbour < bounds)).all(1)
        query = torch.cat([coords[:, :1], neighbour], 1)
        src = _lookup(_linear_keys(query, voxels.spatial_shape), sorted_keys, order)
        hit = inside & (src >= 0)
        pairs.append((src[hit], rows[hit]))
    voxels.rulebooks[key] = pairs
    return pairs


def strided_rulebook(
    voxels: SparseVoxels,
    kernel_size: tuple[int, int, int],
    stride: tuple[int, int, int],
    padding: tuple[int, int, int],
) -> tuple[torch.Tensor, tuple[int, int, int], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Output sites and per-offset pairs of a regular sparse conv: out[o] += W[k] · in[o·s − p + k]."""
    coords = voxels.coords
    device = coords.device
    shape_in = torch.tensor(voxels.spatial_shape, device=device)
    ks, st, pd = (torch.tensor(v, device=device) for v in (kernel_size, stride, padding))
    out_shape = tuple(int(v) for v in (shape_in + 2 * pd - ks) // st + 1)
    bounds = torch.tensor(out_shape, device=device)
    candidates, sources, offset_ids = [], [], []
    rows = torch.arange(len(coords), device=device)
    offsets = _kernel_offsets(kernel_size, device)
    for k, offset in enumerate(offsets):
        shifted = coords[:, 1:] + pd - offset  # (N, 3) = o·s
        out = torch.div(shifted, st, rounding_mode="floor")
        ok = ((shifted % st) == 0).all(1) & (out >= 0).all(1) & (out < bounds).all(1)
        candidates.append(torch.cat([coords[ok, :1], out[ok]], 1))
        sources.append(rows[ok])
        offset_ids.append(torch.full((int(ok.sum()),), k, device=device))
    cand = torch.cat(candidates)  # (P, 4)
    out_keys, inverse = torch.unique(_linear_keys(cand, out_shape), return_inverse=True)
    # Output coordinates back from the sorted unique keys.
    z, y, x = out_shape
    out_coords = torch.stack(
        [out_keys // (z * y * x), (out_keys // (y * x)) % z, (out_keys // x) % y, out_keys % x], dim=1
    )
    src, off = torch.cat(sources), torch.cat(offset_ids)
    pairs = [(src[off == k], inverse[off == k]) for k in range(len(offsets))]
    return out_coords, out_shape, pairs


def _apply_rulebook(
    features: torch.Tensor, weight: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]], num_out: int
) -> torch.Tensor:
    c_out, c_in = weight.shape[0], weight.shape[-1]
    kernels = weight.reshape(c_out, -1, c_in)  # (C_out, K, C_in)
    out = features.new_zeros(num_out, c_out)
    for k, (src, dst) in enumerate(pairs):
        if len(src):
            out = out.index_add(0, dst, features.index_select(0, src) @ kernels[:, k].t())
    return out


class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int], bias: bool):
        super().__init__()
        self.kernel_size = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        fan_in = in_channels * math.prod(self.kernel_size)
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_in))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class SubmanifoldConv3d(_SparseConvBase):
    """Stride-1 sparse conv whose output sites are exactly the input sites (spconv `SubMConv3d`)."""

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        pairs = submanifold_rulebook(voxels, self.kernel_size)
        out = _apply_rulebook(voxels.features, self.weight, pairs, len(voxels.coords))
        if self.bias is not None:
            out = out + self.bias
        return voxels.replace_features(out)


class SparseConv3d(_SparseConvBase):
    """Regular sparse conv: every output site reached by an input site is active (spconv `SparseConv3d`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
        bias: bool = False,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.padding = (padding,) * 3 if isinstance(padding, int) else tuple(padding)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        out_coords, out_shape, pairs = strided_rulebook(voxels, self.kernel_size, self.stride, self.padding)
        out = _apply_rulebook(voxels.features, self.weight, pairs, len(out_coords))
        if self.bias is not None:
            out = out + self.bias
        return SparseVoxels(out, out_coords, out_shape, voxels.batch_size)

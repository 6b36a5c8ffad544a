"""Sparse 3D convolutions in plain torch (rulebook → gather → per-tap GEMM → scatter).

spconv's CPU build runs forward passes but its backward asks for a CUDA stream, so it cannot train on a
CPU-only torch. These layers compute exactly what spconv's `SubMConv3d` / `SparseConv3d` compute (same
weight layout `(C_out, kz, ky, kx, C_in)`, same output sites), with autograd from torch itself, on any
device.

The rulebook lists the (input site, output site) pairs of every kernel tap, found with one `searchsorted`
of all taps' neighbour keys in the sorted site keys (built once per resolution). A conv is then, per kernel
tap (27 for a 3×3×3 kernel), a gather of its contiguous slice of pairs, one GEMM and one `index_add`; taps that
hit empty space cost nothing, unlike a dense (sites × 27) im2col. No Python loop runs over sites.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class SparseVoxels:
    """Active sites of a batched sparse 3D grid, sorted by their linear key (batch, z, y, x).

    Attributes:
        features: (N, C) float features of the active sites.
        coords: (N, 4) int64 `[batch, z, y, x]`, sorted lexicographically (use `SparseVoxels.create`).
        spatial_shape: `(Z, Y, X)` of the grid.
        batch_size: number of samples.
        tables: cache of submanifold rulebooks, shared by the convs of one resolution.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    tables: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls, features: torch.Tensor, coords: torch.Tensor, spatial_shape: tuple[int, int, int], batch_size: int
    ) -> SparseVoxels:
        """Sort unsorted, duplicate-free sites by key."""
        if features.ndim != 2 or coords.shape != (len(features), 4):
            raise ValueError(f"SparseVoxels: features (N, C) and coords (N, 4), got {features.shape}, {coords.shape}")
        order = torch.argsort(_linear_keys(coords.long(), spatial_shape))
        return cls(features[order], coords.long()[order], tuple(spatial_shape), batch_size)

    def replace_features(self, features: torch.Tensor) -> SparseVoxels:
        return SparseVoxels(features, self.coords, self.spatial_shape, self.batch_size, self.tables)

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
    return ((coords[..., 0] * z + coords[..., 1]) * y + coords[..., 2]) * x + coords[..., 3]


def _kernel_offsets(kernel_size: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    axes = [torch.arange(k, device=device) for k in kernel_size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (K, 3) kz, ky, kx


def _in_bounds(zyx: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    z, y, x = zyx.unbind(-1)
    return (z >= 0) & (z < shape[0]) & (y >= 0) & (y < shape[1]) & (x >= 0) & (x < shape[2])


@dataclass
class Rulebook:
    """Conv pairs sorted by kernel tap: input rows `src`, output rows `dst`, and the pair count of each tap."""

    src: torch.Tensor
    dst: torch.Tensor
    counts: list[int]
    num_out: int

    @classmethod
    def from_table(cls, table: torch.Tensor) -> Rulebook:
        """From an (N_out, K) table of input rows (−1 = no input under that tap)."""
        tap, dst = torch.nonzero(table.t() >= 0, as_tuple=True)  # tap-major order
        src = table.t()[tap, dst]
        counts = torch.bincount(tap, minlength=table.shape[1]).tolist()
        return cls(src, dst, counts, table.shape[0])


def submanifold_rulebook(voxels: SparseVoxels, kernel_size: tuple[int, int, int]) -> Rulebook:
    """Pairs of a stride-1 'same' conv on the active sites (cached on `voxels` for its resolution)."""
    key = ("subm", kernel_size)
    if key in voxels.tables:
        return voxels.tables[key]
    coords = voxels.coords
    keys = _linear_keys(coords, voxels.spatial_shape)  # sorted
    centre = torch.tensor([k // 2 for k in kernel_size], device=coords.device)
    offsets = _kernel_offsets(kernel_size, coords.device) - centre  # (K, 3)
    neighbour = coords[:, None, 1:] + offsets[None]  # (N, K, 3)
    query = torch.cat([coords[:, None, :1].expand(-1, len(offsets), 1), neighbour], dim=-1)  # (N, K, 4)
    table = _lookup(_linear_keys(query, voxels.spatial_shape), keys)
    table = torch.where(_in_bounds(neighbour, voxels.spatial_shape), table, torch.full_like(table, -1))
    voxels.tables[key] = Rulebook.from_table(table)
    return voxels.tables[key]


def _lookup(query: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Index of each query key in `sorted_keys` (−1 when absent)."""
    if len(sorted_keys) == 0:
        return torch.full_like(query, -1)
    pos = torch.searchsorted(sorted_keys, query.reshape(-1)).reshape(query.shape).clamp(max=len(sorted_keys) - 1)
    return torch.where(sorted_keys[pos] == query, pos, torch.full_like(pos, -1))


def strided_rulebook(
    voxels: SparseVoxels,
    kernel_size: tuple[int, int, int],
    stride: tuple[int, int, int],
    padding: tuple[int, int, int],
) -> tuple[torch.Tensor, tuple[int, int, int], Rulebook]:
    """Output sites of a regular sparse conv (out[o] += W[k] · in[o·s − p + k]) and its rulebook."""
    coords = voxels.coords
    device = coords.device
    ks, st, pd = (torch.tensor(v, device=device) for v in (kernel_size, stride, padding))
    out_shape = tuple(int(v) for v in (torch.tensor(voxels.spatial_shape, device=device) + 2 * pd - ks) // st + 1)
    offsets = _kernel_offsets(kernel_size, device)  # (K, 3)
    shifted = coords[:, None, 1:] + pd - offsets[None]  # (N, K, 3) = o·s
    out = torch.div(shifted, st, rounding_mode="floor")
    hit = ((shifted % st) == 0).all(-1) & _in_bounds(out, out_shape)  # (N, K)
    src, tap = torch.nonzero(hit, as_tuple=True)
    candidate = torch.cat([coords[src, :1], out[src, tap]], dim=1)  # (P, 4)
    out_keys, inverse = torch.unique(_linear_keys(candidate, out_shape), return_inverse=True)  # sorted keys
    z, y, x = out_shape
    out_coords = torch.stack(
        [out_keys // (z * y * x), (out_keys // (y * x)) % z, (out_keys // x) % y, out_keys % x], dim=1
    )
    order = torch.argsort(tap, stable=True)
    counts = torch.bincount(tap, minlength=len(offsets)).tolist()
    return out_coords, out_shape, Rulebook(src[order], inverse[order], counts, len(out_keys))


def _apply_rulebook(features: torch.Tensor, weight: torch.Tensor, rulebook: Rulebook) -> torch.Tensor:
    """(N_in, C_in) features, (C_out, kz, ky, kx, C_in) weight → (N_out, C_out)."""
    c_out, c_in = weight.shape[0], weight.shape[-1]
    kernels = weight.reshape(c_out, -1, c_in)  # (C_out, K, C_in)
    out = features.new_zeros(rulebook.num_out, c_out)
    for k, (src, dst) in enumerate(zip(rulebook.src.split(rulebook.counts), rulebook.dst.split(rulebook.counts))):
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
        out = _apply_rulebook(voxels.features, self.weight, submanifold_rulebook(voxels, self.kernel_size))
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
        out_coords, out_shape, rulebook = strided_rulebook(voxels, self.kernel_size, self.stride, self.padding)
        out = _apply_rulebook(voxels.features, self.weight, rulebook)
        if self.bias is not None:
            out = out + self.bias
        return SparseVoxels(out, out_coords, out_shape, voxels.batch_size)

"""BEVFusion-style fuser: concat LiDAR and camera BEV → channel attention → 3×3 conv + BN + ReLU."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttentionFuser(nn.Module):
    """Fuse per-modality BEV maps of equal size into one `(B, out_channels, H, W)` map.

    The channel attention is a squeeze-and-excitation gate without reduction: global average pool → 1×1
    conv → sigmoid, multiplied onto the concatenated maps.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.attention = nn.Conv2d(in_channels, in_channels, 1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        shapes = {tuple(m.shape[-2:]) for m in maps} | {m.shape[0] for m in maps}
        if len(shapes) != 2:
            raise ValueError(f"fuser inputs must share batch size and BEV size, got {[tuple(m.shape) for m in maps]}")
        x = torch.cat(maps, dim=1)  # (B, ΣC, H, W)
        x = x * torch.sigmoid(self.attention(x.mean(dim=(2, 3), keepdim=True)))
        return torch.relu(self.norm(self.conv(x)))

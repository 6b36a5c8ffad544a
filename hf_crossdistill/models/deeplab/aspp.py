"""DeepLabV3+ parts: atrous spatial pyramid pooling (ASPP) and the low-level decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """k x k convolution (optionally dilated), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPPImagePooling(nn.Module):
    """Image-level branch: global average, 1x1 conv, ReLU, broadcast back to the map size.

    No batch norm on this branch: its statistics would come from one value per image and channel, which
    fails at batch size 1 in training and is noisy at small batches.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        pooled = self.activation(self.conv(pooled))
        return pooled.expand(-1, -1, features.shape[2], features.shape[3])


class ASPP(nn.Module):
    """1x1 branch + one dilated 3x3 branch per rate + image pooling, concatenated and projected."""

    def __init__(self, in_channels: int, out_channels: int, atrous_rates: list[int], dropout: float):
        super().__init__()
        branches = [ConvBNReLU(in_channels, out_channels, kernel_size=1)]
        branches += [ConvBNReLU(in_channels, out_channels, kernel_size=3, dilation=r) for r in atrous_rates]
        self.branches = nn.ModuleList(branches)
        self.image_pooling = ASPPImagePooling(in_channels, out_channels)
        num_branches = len(branches) + 1
        self.project = ConvBNReLU(num_branches * out_channels, out_channels, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = [branch(features) for branch in self.branches] + [self.image_pooling(features)]
        return self.dropout(self.project(torch.cat(outputs, dim=1)))  # (B, out, h, w)


class DeepLabV3PlusDecoder(nn.Module):
    """Upsample the ASPP output to the low-level stride, concatenate a 48-ch projection, two 3x3 convs."""

    def __init__(
        self,
        low_level_in: int,
        low_level_channels: int,
        aspp_channels: int,
        decoder_channels: int,
        dropout: list[float],
    ):
        super().__init__()
        self.low_level_project = ConvBNReLU(low_level_in, low_level_channels, kernel_size=1)
        self.fuse = nn.Sequential(
            ConvBNReLU(aspp_channels + low_level_channels, decoder_channels, kernel_size=3),
            nn.Dropout(dropout[0]),
            ConvBNReLU(decoder_channels, decoder_channels, kernel_size=3),
            nn.Dropout(dropout[1]),
        )

    def forward(self, encoder_features: torch.Tensor, low_level_features: torch.Tensor) -> torch.Tensor:
        low = self.low_level_project(low_level_features)  # (B, 48, H/4, W/4)
        high = F.interpolate(encoder_features, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([high, low], dim=1))  # (B, decoder_channels, H/4, W/4)


__all__ = ["ASPP", "ASPPImagePooling", "ConvBNReLU", "DeepLabV3PlusDecoder"]

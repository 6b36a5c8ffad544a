"""SECOND-style 2D BEV backbone: strided conv levels, each deconvolved back to stride 1, concatenated."""

from __future__ import annotations

import torch
from torch import nn

from .configuration_bev_detector import BEVDetectorConfig


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    ]


class SECONDBackbone(nn.Module):
    """Low-level BEV `(B, C_low, H, W)` → high-level BEV `(B, C_high, H, W)`.

    Level i: an entry 3×3 conv with stride `bev_backbone_strides[i]`, then `bev_backbone_layers[i]` 3×3 convs
    (each + BN + ReLU); a transposed conv brings it back to stride 1 with `bev_upsample_channels[i]` channels.
    """

    def __init__(self, config: BEVDetectorConfig):
        super().__init__()
        self.levels = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        cin = config.low_bev_channels
        for depth, stride, width, up, up_width in zip(
            config.bev_backbone_layers,
            config.bev_backbone_strides,
            config.bev_backbone_channels,
            config.bev_upsample_strides,
            config.bev_upsample_channels,
        ):
            layers = _conv_bn_relu(cin, width, stride)
            for _ in range(depth):
                layers += _conv_bn_relu(width, width)
            self.levels.append(nn.Sequential(*layers))
            self.upsamples.append(
                nn.Sequential(
                    nn.ConvTranspose2d(width, up_width, up, stride=up, bias=False),
                    nn.BatchNorm2d(up_width, eps=1e-3, momentum=0.01),
                    nn.ReLU(inplace=True),
                )
            )
            cin = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for level, upsample in zip(self.levels, self.upsamples):
            x = level(x)
            outs.append(upsample(x))
        return torch.cat(outs, dim=1)  # (B, ΣC_up, H, W)

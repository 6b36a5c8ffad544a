"""BMR generators, PatchGAN discriminators and the modality classifier h (EvDistill Sec. 3.2–3.3).

Training-only modules: none of them runs at inference (the event student alone does), but they are
`PreTrainedModel`s so a distillation run can save and resume them with `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_translation import BMRGeneratorConfig, ModalityClassifierConfig, PatchGANDiscriminatorConfig


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


@dataclass
class BMRGeneratorOutput(ModelOutput):
    """
    Args:
        generated (`torch.FloatTensor` of shape `(B, out_channels, H, W)`): the translated modality, same size as
            the input.
    """

    generated: torch.FloatTensor | None = None


@dataclass
class PatchGANOutput(ModelOutput):
    """
    Args:
        logits (`torch.FloatTensor` of shape `(B, 1, h, w)`): real-vs-generated logit per patch.
    """

    logits: torch.FloatTensor | None = None


@dataclass
class ModalityClassifierOutput(ModelOutput):
    """
    Args:
        logits (`torch.FloatTensor` of shape `(B, 1, H, W)`): per-pixel logit of "comes from the target modality".
    """

    logits: torch.FloatTensor | None = None


class _TranslationPreTrainedModel(PreTrainedModel):
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # N(0, 0.02) convolutions and N(1, 0.02) norm scales: the pix2pix / CycleGAN initialisation.
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            if module.weight is not None:
                init.normal_(module.weight, mean=1.0, std=self.config.init_std)
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
            if getattr(module, "num_batches_tracked", None) is not None:
                init.zeros_(module.num_batches_tracked)

    def _check_input(self, pixel_values: torch.Tensor, channels: int) -> None:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != channels:
            raise ValueError(
                f"{type(self).__name__}: pixel_values must be (B, {channels}, H, W), got {tuple(pixel_values.shape)}"
            )


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=norm == "none"),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=norm == "none"),
            _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class BMRGenerator(_TranslationPreTrainedModel):
    """ResNet-style encoder-decoder translating one modality into the other (any input size).

    Stem (7x7) → `num_downsampling` stride-2 3x3 convs → residual blocks → as many (bilinear upsampling, 3x3 conv)
    stages (no transposed convolutions: they leave checkerboard artefacts) → 7x7 conv to `out_channels`.
    Inputs whose size is not a multiple of 2**num_downsampling are reflection-padded and cropped back.
    """

    config: BMRGeneratorConfig
    config_class = BMRGeneratorConfig

    def __init__(self, config: BMRGeneratorConfig):
        super().__init__(config)
        c, norm, bias = config.base_channels, config.norm, config.norm == "none"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(config.in_channels, c, 7, bias=bias),
            _norm(norm, c),
            nn.ReLU(inplace=True),
        ]
        for _ in range(config.num_downsampling):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), _norm(norm, 2 * c), nn.ReLU(True)]
            c *= 2
        layers += [_ResidualBlock(c, norm) for _ in range(config.num_residual_blocks)]
        for _ in range(config.num_downsampling):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c, c // 2, 3, padding=1, bias=bias),
                _norm(norm, c // 2),
                nn.ReLU(True),
            ]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, config.out_channels, 7)]
        self.layers = nn.Sequential(*layers)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> BMRGeneratorOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, in_channels, H, W)`): the input modality.
        """
        self._check_input(pixel_values, self.config.in_channels)
        height, width = pixel_values.shape[-2:]
        multiple = 2**self.config.num_downsampling
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = pixel_values
        if pad_h or pad_w:
            # Reflection needs pad < size; replicate covers tiny inputs.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out = self.layers(x)[..., :height, :width]  # (B, out_channels, H, W)
        if self.config.output_activation == "tanh":
            out = torch.tanh(out)
        elif self.config.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return BMRGeneratorOutput(generated=out) if return_dict else (out,)


class PatchGANDiscriminator(_TranslationPreTrainedModel):
    """PatchGAN: 4x4 stride-2 convolutions with LeakyReLU(0.2), one logit per patch."""

    config: PatchGANDiscriminatorConfig
    config_class = PatchGANDiscriminatorConfig

    def __init__(self, config: PatchGANDiscriminatorConfig):
        super().__init__(config)
        c, norm, bias = config.base_channels, config.norm, config.norm == "none"
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for i in range(1, config.num_layers + 1):
            out_c = config.base_channels * min(2**i, 8)
            stride = 2 if i < config.num_layers else 1
            layers += [nn.Conv2d(c, out_c, 4, stride=stride, padding=1, bias=bias), _norm(norm, out_c)]
            layers += [nn.LeakyReLU(0.2, True)]
            c = out_c
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> PatchGANOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, in_channels, H, W)`): real or generated samples.
        """
        self._check_input(pixel_values, self.config.in_channels)
        logits = self.layers(pixel_values)  # (B, 1, h, w)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return PatchGANOutput(logits=logits) if return_dict else (logits,)


class ModalityClassifier(_TranslationPreTrainedModel):
    """EvDistill's distribution classifier h (eq. 6): 1x1 convolutions, one modality logit per pixel."""

    config: ModalityClassifierConfig
    config_class = ModalityClassifierConfig
    main_input_name = "features"

    def __init__(self, config: ModalityClassifierConfig):
        super().__init__(config)
        c = config.in_channels
        layers: list[nn.Module] = []
        for _ in range(config.num_hidden_layers):
            layers += [nn.Conv2d(c, config.hidden_channels, 1), nn.LeakyReLU(0.2, True)]
            c = config.hidden_channels
        layers.append(nn.Conv2d(c, 1, 1))
        self.layers = nn.Sequential(*layers)
        self.post_init()

    def forward(self, features: torch.Tensor, return_dict: bool | None = None, **kwargs) -> ModalityClassifierOutput:
        r"""
        Args:
            features (`torch.FloatTensor` of shape `(B, in_channels, H, W)`): (conditional) pixel features.
        """
        self._check_input(features, self.config.in_channels)
        logits = self.layers(features)  # (B, 1, H, W)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return ModalityClassifierOutput(logits=logits) if return_dict else (logits,)


__all__ = [
    "BMRGenerator",
    "BMRGeneratorOutput",
    "ModalityClassifier",
    "ModalityClassifierOutput",
    "PatchGANDiscriminator",
    "PatchGANOutput",
]

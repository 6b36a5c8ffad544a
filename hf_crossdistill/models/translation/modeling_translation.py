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

from .configuration_translation import (
    BMRGeneratorConfig,
    ModalityClassifierConfig,
    PatchGANDiscriminatorConfig,
    is_positive_odd_int,
)


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


_LOG_EPS = 1e-2  # log(L + eps): keeps the log finite on black pixels (dark-current floor of the log pixel)
_PEAK_FLOOR = 1e-3  # log-luminance change per pixel below which an image counts as flat
_PRIOR_CLAMP = 1e-2  # the prior is clamped to [δ, 1 - δ] before the inverse sigmoid / tanh (finite logits)


def log_gradient_event_prior(pixel_values: torch.Tensor, spread: int = 3) -> torch.Tensor:
    """Event-count prior of images: where the log intensity changes when the sensor moves over the scene.

    An event fires whenever the log intensity at a pixel changes by the contrast threshold; under a small motion
    v the change is ∇log L · v, so the event count image of a saccade recording is about |∇log L| spread along the
    motion. This computes the Sobel magnitude of log(luminance + 0.01), box-averages it over `spread` × `spread`
    pixels and divides every image by its own maximum (as the max-normalised count representation does; at least
    1e-3 per pixel, so that a nearly flat image stays near 0).
    Differentiable; a constant image gives 0.

    Args:
        pixel_values (`torch.Tensor` of shape `(B, C, H, W)`): images with values in [0, 1] (negative values are
            clamped to 0); 3 channels are read as RGB (Rec. 601 luma), other counts by their mean.
        spread (`int`, *optional*, defaults to 3): odd box-filter side, about the sensor motion in pixels.

    Returns:
        `torch.Tensor` of shape `(B, 1, H, W)` with values in [0, 1].
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] < 1:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"log_gradient_event_prior: pixel_values must be (B, C, H, W), got {shape}")
    if not pixel_values.is_floating_point():
        raise ValueError(f"log_gradient_event_prior: pixel_values must be floating point, got {pixel_values.dtype}")
    if not is_positive_odd_int(spread):
        raise ValueError(f"log_gradient_event_prior: spread must be a positive odd int, got {spread!r}")
    x = pixel_values.clamp(min=0.0)
    if x.shape[1] == 3:
        luma = x.new_tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
        luminance = (x * luma).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    else:
        luminance = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    log_l = torch.log(luminance + _LOG_EPS)
    # Sobel as separable slices (central difference, [1, 2, 1] / 8 smoothing across it): exactly 0 on flat regions.
    padded = F.pad(log_l, (1, 1, 1, 1), mode="replicate")  # (B, 1, H + 2, W + 2), a border is no edge
    dx = padded[..., :, 2:] - padded[..., :, :-2]  # (B, 1, H + 2, W)
    dy = padded[..., 2:, :] - padded[..., :-2, :]  # (B, 1, H, W + 2)
    gx = (dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8.0  # (B, 1, H, W)
    gy = (dy[..., :-2] + 2.0 * dy[..., 1:-1] + dy[..., 2:]) / 8.0  # (B, 1, H, W)
    square = gx.square() + gy.square()  # (B, 1, H, W)
    # Exactly 0 where the image is flat, with a zero (not infinite) gradient there.
    magnitude = torch.where(square > 0, square.clamp(min=1e-12).sqrt(), torch.zeros_like(square))
    if spread > 1:
        magnitude = F.avg_pool2d(magnitude, spread, stride=1, padding=spread // 2, count_include_pad=False)
    # Max-normalised; the floor keeps a nearly flat image (log contrast far below any event threshold) near 0.
    peak = magnitude.amax(dim=(2, 3), keepdim=True).clamp(min=_PEAK_FLOOR)  # (B, 1, 1, 1)
    return (magnitude / peak).clamp(0.0, 1.0)


class BMRGenerator(_TranslationPreTrainedModel):
    """ResNet-style encoder-decoder translating one modality into the other (any input size).

    Stem (7x7) → `num_downsampling` stride-2 3x3 convs → residual blocks → as many (bilinear upsampling, 3x3 conv)
    stages (no transposed convolutions: they leave checkerboard artefacts) → 7x7 conv to `out_channels`.
    Inputs whose size is not a multiple of 2**num_downsampling are reflection-padded and cropped back.

    With `config.edge_prior="log_gradient"` (image → events), the layers learn a residual on the fixed prior
    `log_gradient_event_prior(pixel_values)`: `generated = activation(layers(x) + activation⁻¹(prior))`, the
    prior clamped to [0.01, 0.99] first for the sigmoid / tanh inverses (with `"tanh"` the prior's [0, 1] maps to
    [-1, 1], with `"none"` it is added as is).
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
        if self.config.edge_prior == "log_gradient":
            prior = log_gradient_event_prior(pixel_values, self.config.edge_prior_spread)  # (B, 1, H, W)
            out = out + self._pre_activation(prior)  # broadcast over the output channels (both polarities)
        if self.config.output_activation == "tanh":
            out = torch.tanh(out)
        elif self.config.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return BMRGeneratorOutput(generated=out) if return_dict else (out,)

    def _pre_activation(self, prior: torch.Tensor) -> torch.Tensor:
        """The value before the output activation that the activation maps to `prior` (in [0, 1])."""
        activation = self.config.output_activation
        if activation == "none":
            return prior
        p = prior.clamp(_PRIOR_CLAMP, 1.0 - _PRIOR_CLAMP)
        return torch.logit(p) if activation == "sigmoid" else torch.atanh(2.0 * p - 1.0)


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
    "log_gradient_event_prior",
]

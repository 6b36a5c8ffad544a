"""DeepLabV3+ on any transformers AutoBackbone: the EvDistill teacher T and students S_ev / S_aps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.backbone_utils import load_backbone
from transformers.utils import ModelOutput

from .aspp import ASPP, DeepLabV3PlusDecoder
from .configuration_deeplab import DeepLabV3PlusConfig
from .dilated_resnet import dilate_resnet_backbone


@dataclass
class DeepLabV3PlusOutput(ModelOutput):
    """
    Output of [`DeepLabV3PlusForSemanticSegmentation`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Pixel-wise cross-entropy, labels equal to `config.ignore_index` ignored.
        logits (`torch.FloatTensor` of shape `(B, num_labels, H, W)`):
            Class scores upsampled (bilinear) to the input size.
        encoder_features (`torch.FloatTensor` of shape `(B, aspp_channels, H / os, W / os)`):
            The ASPP output (high-level features; EvDistill's DA and AG terms use it).
        decoder_features (`torch.FloatTensor` of shape `(B, decoder_channels, H / 4, W / 4)`):
            The decoder output right before the 1x1 classifier.
        low_level_features (`torch.FloatTensor` of shape `(B, C_low, H / 4, W / 4)`):
            The backbone's low-level feature (first `out_features` entry).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    encoder_features: torch.FloatTensor | None = None
    decoder_features: torch.FloatTensor | None = None
    low_level_features: torch.FloatTensor | None = None


class DeepLabV3PlusPreTrainedModel(PreTrainedModel):
    config: DeepLabV3PlusConfig
    config_class = DeepLabV3PlusConfig
    base_model_prefix = "deeplab"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Kaiming for convolutions (the default std-0.02 normal starves deep ReLU CNNs of signal).
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            if getattr(module, "num_batches_tracked", None) is not None:
                init.zeros_(module.num_batches_tracked)


class DeepLabV3PlusForSemanticSegmentation(DeepLabV3PlusPreTrainedModel):
    """DeepLabV3+ (backbone → ASPP → decoder with low-level projection → 1x1 classifier) for any input channels.

    The backbone is built with `AutoBackbone.from_config(config.backbone_config)`; ResNet backbones get their
    trailing stages dilated to `config.output_stride`.
    """

    def __init__(self, config: DeepLabV3PlusConfig):
        super().__init__(config)
        self.backbone = load_backbone(config)
        if config.output_stride is not None:
            self.output_stride = dilate_resnet_backbone(self.backbone, config.output_stride)
        else:
            self.output_stride = None
        channels = list(self.backbone.channels)
        self.aspp = ASPP(channels[-1], config.aspp_channels, config.atrous_rates, config.aspp_dropout)
        self.decoder = DeepLabV3PlusDecoder(
            channels[0],
            config.low_level_channels,
            config.aspp_channels,
            config.decoder_channels,
            config.decoder_dropout,
        )
        self.classifier = nn.Conv2d(config.decoder_channels, config.num_labels, kernel_size=1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeepLabV3PlusOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, num_channels, H, W)`):
                Images, APS frames or event representations.
            labels (`torch.LongTensor` of shape `(B, H, W)`, *optional*):
                Class indices in `[0, num_labels)`, or `config.ignore_index` for pixels without a label.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"{type(self).__name__}: pixel_values must be (B, {self.config.num_channels}, H, W), "
                f"got {tuple(pixel_values.shape)}"
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        feature_maps = self.backbone(pixel_values).feature_maps
        low_level, high_level = feature_maps[0], feature_maps[-1]
        encoder_features = self.aspp(high_level)  # (B, aspp, H/os, W/os)
        decoder_features = self.decoder(encoder_features, low_level)  # (B, dec, H/4, W/4)
        logits = self.classifier(decoder_features)
        logits = F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)

        loss = None
        if labels is not None:
            if labels.shape != (pixel_values.shape[0], *pixel_values.shape[-2:]):
                raise ValueError(
                    f"{type(self).__name__}: labels must be (B, H, W) = "
                    f"{(pixel_values.shape[0], *pixel_values.shape[-2:])}, got {tuple(labels.shape)}"
                )
            loss = _segmentation_cross_entropy(logits, labels.long(), self.config.ignore_index)

        if not return_dict:
            out = (logits, encoder_features, decoder_features, low_level)
            return ((loss,) + out) if loss is not None else out
        return DeepLabV3PlusOutput(
            loss=loss,
            logits=logits,
            encoder_features=encoder_features,
            decoder_features=decoder_features,
            low_level_features=low_level,
        )


def _segmentation_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    # A batch whose pixels are all ignored gives 0 with a graph (not NaN), so it can be summed with other terms.
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


__all__ = ["DeepLabV3PlusForSemanticSegmentation", "DeepLabV3PlusOutput", "DeepLabV3PlusPreTrainedModel"]

"""DeepLabV3+ configuration: any transformers AutoBackbone, ASPP with image pooling, low-level decoder."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# ResNet-101 (bottleneck, depths 3-4-23-3): the backbone of the EvDistill teacher and students.
RESNET101_BACKBONE = {
    "model_type": "resnet",
    "layer_type": "bottleneck",
    "depths": [3, 4, 23, 3],
    "hidden_sizes": [256, 512, 1024, 2048],
    "embedding_size": 64,
    "out_features": ["stage1", "stage4"],
}


class DeepLabV3PlusConfig(PreTrainedConfig):
    r"""
    Configuration of [`DeepLabV3PlusForSemanticSegmentation`] (Chen et al., ECCV 2018), the segmentation network of
    the EvDistill teacher T and students S_ev / S_aps.

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any transformers backbone (`AutoBackbone.from_config`). Its `out_features` name the
            low-level feature (first, stride 4 for the decoder) and the high-level feature (last, fed to ASPP).
            Defaults to ResNet-101 with `out_features=["stage1", "stage4"]`.
        num_channels (`int`, *optional*, defaults to 3):
            Input channels: 3 for images, 1 or 3 for APS frames, the representation's channels for events. It is
            written into `backbone_config.num_channels` (this value wins).
        output_stride (`int`, *optional*, defaults to 16):
            Input size / high-level feature size. For ResNet backbones the trailing stages are dilated instead
            of strided until this stride is reached (8, 16 or the native stride). Other backbones must keep
            their native stride: pass `None`.
        aspp_channels (`int`, *optional*, defaults to 256):
            Channels of every ASPP branch and of the ASPP output (`encoder_features`).
        atrous_rates (`list[int]`, *optional*, defaults to `[6, 12, 18]`):
            Dilation rates of the 3x3 ASPP branches (for output stride 16; use doubled rates for 8).
        aspp_dropout (`float`, *optional*, defaults to 0.5):
            Dropout after the ASPP projection.
        low_level_channels (`int`, *optional*, defaults to 48):
            Channels of the 1x1 projection of the low-level feature in the decoder.
        decoder_channels (`int`, *optional*, defaults to 256):
            Channels of the two 3x3 decoder convolutions (`decoder_features`).
        decoder_dropout (`list[float]`, *optional*, defaults to `[0.5, 0.1]`):
            Dropout after the first and the second decoder convolution.
        ignore_index (`int`, *optional*, defaults to 255):
            Label ignored by the cross-entropy loss.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Kept for transformers compatibility; convolutions use Kaiming initialisation.

    Example:

    ```python
    >>> from hf_crossdistill.models.deeplab import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
    >>> config = DeepLabV3PlusConfig(num_channels=2, num_labels=6)  # an event student on 2-channel event images
    >>> model = DeepLabV3PlusForSemanticSegmentation(config)
    ```
    """

    model_type = "deeplabv3plus"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="resnet",
            init_kwargs={k: v for k, v in RESNET101_BACKBONE.items() if k != "model_type"},
        ),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    num_channels: int = 3
    output_stride: int | None = 16
    aspp_channels: int = 256
    atrous_rates: list[int] | tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.5
    low_level_channels: int = 48
    decoder_channels: int = 256
    decoder_dropout: list[float] | tuple[float, ...] = (0.5, 0.1)
    ignore_index: int = 255
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.atrous_rates = [int(r) for r in self.atrous_rates]
        self.decoder_dropout = [float(p) for p in self.decoder_dropout]
        if self.num_channels < 1:
            raise ValueError(f"DeepLabV3PlusConfig: num_channels must be >= 1, got {self.num_channels}")
        if hasattr(self.backbone_config, "num_channels"):
            self.backbone_config.num_channels = self.num_channels
        out_features = getattr(self.backbone_config, "out_features", None)
        if not out_features or len(out_features) < 2:
            raise ValueError(
                "DeepLabV3PlusConfig: backbone_config.out_features must name at least two features (low-level "
                f"first, high-level last), got {out_features}"
            )
        if self.output_stride is not None and self.output_stride not in (8, 16, 32):
            raise ValueError(f"DeepLabV3PlusConfig: output_stride must be 8, 16, 32 or None, got {self.output_stride}")
        if self.output_stride is not None and self.backbone_config.model_type != "resnet":
            raise ValueError(
                "DeepLabV3PlusConfig: output_stride can only be changed for ResNet backbones (dilated last stages); "
                f"pass output_stride=None for a {self.backbone_config.model_type!r} backbone"
            )
        if len(self.atrous_rates) == 0 or min(self.atrous_rates) < 1:
            raise ValueError(f"DeepLabV3PlusConfig: atrous_rates must be positive integers, got {self.atrous_rates}")
        if len(self.decoder_dropout) != 2 or not all(0.0 <= p < 1.0 for p in self.decoder_dropout):
            raise ValueError(
                f"DeepLabV3PlusConfig: decoder_dropout must be two probabilities in [0, 1), got {self.decoder_dropout}"
            )
        if not 0.0 <= self.aspp_dropout < 1.0:
            raise ValueError(f"DeepLabV3PlusConfig: aspp_dropout must be in [0, 1), got {self.aspp_dropout}")
        for name in ("aspp_channels", "low_level_channels", "decoder_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"DeepLabV3PlusConfig: {name} must be >= 1, got {getattr(self, name)}")


__all__ = ["DeepLabV3PlusConfig", "RESNET101_BACKBONE"]

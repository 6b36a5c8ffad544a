"""Turn a transformers ResNet backbone's trailing strided stages into dilated ones (output stride 8 / 16).

transformers' ResNet has no dilation option, but dilating a stage only changes stride, dilation and padding
of its existing convolutions: weight shapes stay the same, so pretrained ResNet weights still load and the
change is re-applied deterministically from the config at every construction (from_pretrained included).
"""

from __future__ import annotations

from torch import nn


def resnet_stage_strides(backbone_config) -> list[int]:
    """Stride of each ResNet stage (stage1 is strided only with `downsample_in_first_stage`)."""
    first = 2 if getattr(backbone_config, "downsample_in_first_stage", False) else 1
    return [first] + [2] * (len(backbone_config.depths) - 1)


def _dilate_stage(stage: nn.Module, previous_dilation: int, dilation: int) -> None:
    """Remove the stride of `stage` and dilate its 3x3 convolutions (first layer keeps `previous_dilation`)."""
    for layer_index, layer in enumerate(stage.layers):
        rate = previous_dilation if layer_index == 0 else dilation
        for conv in layer.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            if conv.stride != (1, 1):
                conv.stride = (1, 1)
            if conv.kernel_size[0] > 1:
                conv.dilation = (rate, rate)
                conv.padding = (rate * (conv.kernel_size[0] // 2), rate * (conv.kernel_size[1] // 2))


def dilate_resnet_backbone(backbone: nn.Module, output_stride: int) -> int:
    """Dilate the trailing stages of a transformers `ResNetBackbone` in place until it has `output_stride`.

    Args:
        backbone: a `transformers.ResNetBackbone` (has `embedder` and `encoder.stages`).
        output_stride: wanted input size / last-stage size (a power of two, at most the native stride).

    Returns:
        The output stride reached (the native one when it is already <= `output_stride`).
    """
    if not hasattr(backbone, "encoder") or not hasattr(backbone.encoder, "stages"):
        raise TypeError(
            f"dilate_resnet_backbone: expected a transformers ResNetBackbone, got {type(backbone).__name__}"
        )
    strides = resnet_stage_strides(backbone.config)
    native = 4  # the stem: 7x7 stride-2 convolution then stride-2 max pooling
    for s in strides:
        native *= s
    current = native
    # Walk from the last stage backwards, trading strides for dilation until the wanted stride is reached.
    to_dilate = []
    for index in range(len(strides) - 1, -1, -1):
        if current <= output_stride:
            break
        if strides[index] == 2:
            to_dilate.append(index)
            current //= 2
    if current != output_stride and current > output_stride:
        raise ValueError(f"dilate_resnet_backbone: cannot reach output stride {output_stride} (native {native})")
    dilation = 1
    for index in sorted(to_dilate):
        previous = dilation
        dilation *= 2
        _dilate_stage(backbone.encoder.stages[index], previous, dilation)
    return current


__all__ = ["dilate_resnet_backbone", "resnet_stage_strides"]

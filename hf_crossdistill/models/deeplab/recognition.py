"""Recognition networks for EvDistill (N-Caltech101): transformers' ResNet classifier with any input channels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import ResNetConfig, ResNetForImageClassification


def resnet_classifier_config(
    preset: str | Path | dict[str, Any] | ResNetConfig | None = None,
    *,
    num_channels: int | None = None,
    num_labels: int | None = None,
    **overrides: Any,
) -> ResNetConfig:
    """A `ResNetConfig` for an image teacher or event student classifier.

    Args:
        preset: a `config.json`-style file (e.g. `hub_configs/models/resnet34_events_ncaltech.json`), its dict,
            a `ResNetConfig`, or None for ResNet-34 (basic blocks, depths 3-4-6-3).
        num_channels: input channels (3 for images, the event representation's channels for events).
        num_labels: number of classes.
        **overrides: any other `ResNetConfig` field.
    """
    if isinstance(preset, ResNetConfig):
        kwargs = preset.to_dict()
    elif isinstance(preset, dict):
        kwargs = dict(preset)
    elif preset is None:
        kwargs = {"layer_type": "basic", "depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512]}
    else:
        path = Path(preset)
        if not path.is_file():
            raise FileNotFoundError(f"resnet_classifier_config: preset file {path} does not exist")
        kwargs = json.loads(path.read_text())
    model_type = kwargs.pop("model_type", "resnet")
    if model_type != "resnet":
        raise ValueError(f"resnet_classifier_config: preset {preset!r} has model_type {model_type!r}, not 'resnet'")
    for key in ("transformers_version", "architectures"):
        kwargs.pop(key, None)
    if num_channels is not None:
        if num_channels < 1:
            raise ValueError(f"resnet_classifier_config: num_channels must be >= 1, got {num_channels}")
        kwargs["num_channels"] = num_channels
    if num_labels is not None:
        if num_labels < 2:
            raise ValueError(f"resnet_classifier_config: num_labels must be >= 2, got {num_labels}")
        kwargs.pop("id2label", None)
        kwargs.pop("label2id", None)
        kwargs["num_labels"] = num_labels
    kwargs.update(overrides)
    return ResNetConfig(**kwargs)


def build_resnet_classifier(
    preset: str | Path | dict[str, Any] | ResNetConfig | None = None,
    *,
    num_channels: int | None = None,
    num_labels: int | None = None,
    **overrides: Any,
) -> ResNetForImageClassification:
    """A randomly initialised `ResNetForImageClassification` (see `resnet_classifier_config` for the arguments)."""
    return ResNetForImageClassification(
        resnet_classifier_config(preset, num_channels=num_channels, num_labels=num_labels, **overrides)
    )


__all__ = ["build_resnet_classifier", "resnet_classifier_config"]

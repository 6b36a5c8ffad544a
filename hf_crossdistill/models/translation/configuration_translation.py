"""Configurations of EvDistill's bidirectional modality reconstruction (BMR) modules (training only)."""

from __future__ import annotations

from transformers import PreTrainedConfig

NORMS = ("instance", "batch", "none")
OUTPUT_ACTIVATIONS = ("none", "tanh", "sigmoid")
EDGE_PRIORS = ("none", "log_gradient")


def is_positive_odd_int(value) -> bool:
    """Whether `value` is an int (not a bool) ≥ 1 and odd: a centred box filter's side (`edge_prior_spread`)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value % 2 == 1


def _check_positive(config: PreTrainedConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{type(config).__name__}: {name} must be >= 1, got {getattr(config, name)}")


def _check_choice(config: PreTrainedConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise ValueError(f"{type(config).__name__}: {name} must be one of {choices}, got {getattr(config, name)!r}")


class BMRGeneratorConfig(PreTrainedConfig):
    r"""
    Configuration of [`BMRGenerator`], a ResNet-style encoder-decoder (CycleGAN generator layout) translating
    one modality into the other: G_T→S (event representation → image-like frame) or G_S→T (image → event
    representation), EvDistill Sec. 3.2.

    Args:
        in_channels (`int`, *optional*, defaults to 2): channels of the input modality.
        out_channels (`int`, *optional*, defaults to 3): channels of the generated modality.
        base_channels (`int`, *optional*, defaults to 64): channels after the 7x7 stem (doubled per downsampling).
        num_downsampling (`int`, *optional*, defaults to 2): stride-2 convolutions (and as many upsamplings).
        num_residual_blocks (`int`, *optional*, defaults to 9): residual blocks at the lowest resolution.
        norm (`str`, *optional*, defaults to `"instance"`): `"instance"`, `"batch"` or `"none"`.
        output_activation (`str`, *optional*, defaults to `"none"`): `"tanh"` for outputs in [-1, 1],
            `"sigmoid"` for [0, 1] (max-normalised event counts), `"none"` for unbounded outputs (standardised
            images, voxel grids).
        init_std (`float`, *optional*, defaults to 0.02): std of the normal initialisation of convolutions.
        edge_prior (`str`, *optional*, defaults to `"none"`): a fixed, differentiable event prior for an
            image → event generator (G_S→T). `"log_gradient"`: events fire where the log intensity changes under
            the sensor's motion, so an event count image is about the spatial gradient magnitude of the log
            luminance, spread along the motion. The generator computes that map (Sobel magnitude of the log
            luminance, box-averaged over `edge_prior_spread` pixels, divided by its per-image maximum like the
            max-normalised count representation) and its learned layers add a residual to it before the output
            activation (at a zero residual the output is the prior). The branch has no parameters, so the state
            dict is the same with or without it. Expects images with values in [0, 1]. `"none"`: no prior.
        edge_prior_spread (`int`, *optional*, defaults to 3): odd side of the box filter spreading the edge map
            over the sensor motion (about the saccade amplitude in pixels; 1: no spreading).
    """

    model_type = "bmr_generator"

    in_channels: int = 2
    out_channels: int = 3
    base_channels: int = 64
    num_downsampling: int = 2
    num_residual_blocks: int = 9
    norm: str = "instance"
    output_activation: str = "none"
    init_std: float = 0.02
    edge_prior: str = "none"
    edge_prior_spread: int = 3

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_positive(self, "in_channels", "out_channels", "base_channels")
        if self.num_downsampling < 0 or self.num_residual_blocks < 0:
            raise ValueError(
                "BMRGeneratorConfig: num_downsampling and num_residual_blocks must be >= 0, got "
                f"{self.num_downsampling} and {self.num_residual_blocks}"
            )
        _check_choice(self, "norm", NORMS)
        _check_choice(self, "output_activation", OUTPUT_ACTIVATIONS)
        _check_choice(self, "edge_prior", EDGE_PRIORS)
        if not is_positive_odd_int(self.edge_prior_spread):
            raise ValueError(
                f"BMRGeneratorConfig: edge_prior_spread must be a positive odd int, got {self.edge_prior_spread!r}"
            )


class PatchGANDiscriminatorConfig(PreTrainedConfig):
    r"""
    Configuration of [`PatchGANDiscriminator`] (Isola et al. 2017): a fully convolutional real/fake classifier
    whose output is one logit per overlapping patch (70x70 receptive field with the defaults).

    Args:
        in_channels (`int`, *optional*, defaults to 3): channels of the modality it judges.
        base_channels (`int`, *optional*, defaults to 64): channels of the first convolution.
        num_layers (`int`, *optional*, defaults to 3): stride-2 convolutions after the first one.
        norm (`str`, *optional*, defaults to `"instance"`): `"instance"`, `"batch"` or `"none"`.
        init_std (`float`, *optional*, defaults to 0.02): std of the normal initialisation of convolutions.
    """

    model_type = "patchgan_discriminator"

    in_channels: int = 3
    base_channels: int = 64
    num_layers: int = 3
    norm: str = "instance"
    init_std: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_positive(self, "in_channels", "base_channels", "num_layers")
        _check_choice(self, "norm", NORMS)


class ModalityClassifierConfig(PreTrainedConfig):
    r"""
    Configuration of [`ModalityClassifier`], EvDistill's distribution classifier h (eq. 6): per pixel, it
    predicts whether a (conditional) feature comes from the source (0) or the target (1) modality.

    Args:
        in_channels (`int`, *optional*, defaults to 1536): channels of the conditional features it reads
            (feature channels x classes for the outer-product conditioning, see
            `hf_crossdistill.losses.evdistill.conditional_features`).
        hidden_channels (`int`, *optional*, defaults to 256): width of the hidden 1x1 convolutions.
        num_hidden_layers (`int`, *optional*, defaults to 2): hidden 1x1 convolutions (LeakyReLU between).
        init_std (`float`, *optional*, defaults to 0.02): std of the normal initialisation of convolutions.
    """

    model_type = "modality_classifier"

    in_channels: int = 1536
    hidden_channels: int = 256
    num_hidden_layers: int = 2
    init_std: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_positive(self, "in_channels", "hidden_channels")
        if self.num_hidden_layers < 0:
            raise ValueError(f"ModalityClassifierConfig: num_hidden_layers must be >= 0, got {self.num_hidden_layers}")


__all__ = ["BMRGeneratorConfig", "ModalityClassifierConfig", "PatchGANDiscriminatorConfig"]

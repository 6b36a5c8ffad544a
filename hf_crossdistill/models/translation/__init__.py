"""EvDistill's BMR generators, PatchGAN discriminators and modality classifier h (training-only modules).

Importing this package registers their configs with `AutoConfig` and the models with `AutoModel`.
"""

from transformers import AutoConfig, AutoModel

from .configuration_translation import BMRGeneratorConfig, ModalityClassifierConfig, PatchGANDiscriminatorConfig
from .modeling_translation import (
    BMRGenerator,
    BMRGeneratorOutput,
    ModalityClassifier,
    ModalityClassifierOutput,
    PatchGANDiscriminator,
    PatchGANOutput,
    log_gradient_event_prior,
)

for _config, _model in (
    (BMRGeneratorConfig, BMRGenerator),
    (PatchGANDiscriminatorConfig, PatchGANDiscriminator),
    (ModalityClassifierConfig, ModalityClassifier),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)

__all__ = [
    "BMRGenerator",
    "BMRGeneratorConfig",
    "BMRGeneratorOutput",
    "ModalityClassifier",
    "ModalityClassifierConfig",
    "ModalityClassifierOutput",
    "PatchGANDiscriminator",
    "PatchGANDiscriminatorConfig",
    "PatchGANOutput",
    "log_gradient_event_prior",
]

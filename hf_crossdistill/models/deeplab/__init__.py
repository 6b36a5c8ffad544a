"""DeepLabV3+ on any AutoBackbone (image teacher, event / APS students) and ResNet recognition helpers.

Importing this package registers `DeepLabV3PlusConfig` with `AutoConfig` and the model with `AutoModel` and
`AutoModelForSemanticSegmentation`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation

from .configuration_deeplab import DeepLabV3PlusConfig
from .modeling_deeplab import DeepLabV3PlusForSemanticSegmentation, DeepLabV3PlusOutput, DeepLabV3PlusPreTrainedModel
from .recognition import build_resnet_classifier, resnet_classifier_config

AutoConfig.register(DeepLabV3PlusConfig.model_type, DeepLabV3PlusConfig, exist_ok=True)
AutoModel.register(DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, exist_ok=True)
AutoModelForSemanticSegmentation.register(DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, exist_ok=True)

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusForSemanticSegmentation",
    "DeepLabV3PlusOutput",
    "DeepLabV3PlusPreTrainedModel",
    "build_resnet_classifier",
    "resnet_classifier_config",
]

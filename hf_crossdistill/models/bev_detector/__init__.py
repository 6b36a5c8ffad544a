"""UniDistill BEV detectors (LiDAR, camera, fusion), registered with the transformers Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForObjectDetection

from .configuration_bev_detector import BEVDetectorConfig
from .modeling_bev_detector import (
    BEVDetectorForObjectDetection,
    BEVDetectorModel,
    BEVDetectorModelOutput,
    BEVDetectorOutput,
    BEVDetectorPreTrainedModel,
)

AutoConfig.register(BEVDetectorConfig.model_type, BEVDetectorConfig, exist_ok=True)
AutoModel.register(BEVDetectorConfig, BEVDetectorModel, exist_ok=True)
AutoModelForObjectDetection.register(BEVDetectorConfig, BEVDetectorForObjectDetection, exist_ok=True)

__all__ = [
    "BEVDetectorConfig",
    "BEVDetectorForObjectDetection",
    "BEVDetectorModel",
    "BEVDetectorModelOutput",
    "BEVDetectorOutput",
    "BEVDetectorPreTrainedModel",
]

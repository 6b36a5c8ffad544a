"""models."""

from .bev_detector import (
    BEVDetectorConfig,
    BEVDetectorForObjectDetection,
    BEVDetectorModel,
    BEVDetectorModelOutput,
    BEVDetectorOutput,
)

__all__ = [
    "BEVDetectorConfig",
    "BEVDetectorForObjectDetection",
    "BEVDetectorModel",
    "BEVDetectorModelOutput",
    "BEVDetectorOutput",
]

"""hf_crossdistill: cross-modal knowledge distillation for the Hugging Face ecosystem.

Two method families share one machinery:

- UniDistill (CVPR 2023): BEV 3D object detection on nuScenes; LiDAR, camera and fusion detectors that
  all expose the same BEV outputs, so any of them can teach any other.
- EvDistill (CVPR 2021): event-camera students (segmentation, recognition) learned from an image teacher
  on unpaired, unlabeled events.

Importing the package registers every config and model with `AutoConfig` / `AutoModel` (and the task Auto
classes). Everything else is imported on first use, so `import hf_crossdistill` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

# Model packages are imported eagerly: importing them is what registers them with the Auto classes.
from .models.bev_detector import (
    BEVDetectorConfig,
    BEVDetectorForObjectDetection,
    BEVDetectorModel,
    BEVDetectorOutput,
)
from .models.deeplab import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    DeepLabV3PlusOutput,
    build_resnet_classifier,
)
from .models.translation import (
    BMRGenerator,
    BMRGeneratorConfig,
    ModalityClassifier,
    ModalityClassifierConfig,
    PatchGANDiscriminator,
    PatchGANDiscriminatorConfig,
)

# name -> submodule, resolved lazily by __getattr__ (these pull in datasets, the nuScenes devkit, h5py ...).
_LAZY = {
    "UniDistillConfig": "distill",
    "UniDistillTrainer": "distill",
    "UniDistillModel": "distill",
    "load_matching_weights": "distill",
    "load_pretrained_strict": "distill",
    "NuScenesEvaluation": "distill",
    "EvDistillConfig": "distill",
    "EvDistillTrainer": "distill",
    "run_evdistill": "distill.evdistill_runner",
    "evaluate_event_model": "distill.evdistill_runner",
    "BEVAdaptiveLayers": "models.adaptive",
    "NUSCENES_CLASSES": "data.nuscenes",
    "nuscenes_detection_dataset": "data.nuscenes",
    "collate_bev_batch": "data.nuscenes",
    "Events": "data.events",
    "EventFormatError": "data.events",
    "read_events": "data.events",
    "write_events": "data.events",
    "to_voxel_grid": "data.events",
    "to_histogram": "data.events",
    "to_stacked_frames": "data.events",
    "event_segmentation_dataset": "data.events",
    "event_recognition_dataset": "data.events",
    "labeled_image_dataset": "data.events",
    "make_synthetic_nuscenes": "data.synthetic",
    "simulate_events": "data.synthetic",
    "evaluate_nuscenes": "evaluation",
    "SegmentationMetric": "evaluation",
    "ClassificationMetric": "evaluation",
    "segmentation_metrics": "evaluation",
    "make_model_card": "hub",
    "save_for_hub": "hub",
    "push_folder_to_hub": "hub",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "BEVDetectorConfig",
    "BEVDetectorForObjectDetection",
    "BEVDetectorModel",
    "BEVDetectorOutput",
    "BMRGenerator",
    "BMRGeneratorConfig",
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusForSemanticSegmentation",
    "DeepLabV3PlusOutput",
    "ModalityClassifier",
    "ModalityClassifierConfig",
    "PatchGANDiscriminator",
    "PatchGANDiscriminatorConfig",
    "build_resnet_classifier",
    *_LAZY,
]

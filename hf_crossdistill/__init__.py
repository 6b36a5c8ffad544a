"""hf_crossdistill: cross-modal knowledge distillation for the Hugging Face ecosystem.

Two method families share one machinery:

- UniDistill (CVPR 2023): BEV 3D object detection on nuScenes; LiDAR, camera and fusion detectors that
  all expose the same BEV outputs, so any of them can teach any other.
- EvDistill (CVPR 2021): event-camera students (segmentation, recognition) learned from an image teacher
  on unpaired, unlabeled events.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

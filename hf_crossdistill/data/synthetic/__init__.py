"""Simulated worlds written in the real dataset formats.

- `make_synthetic_nuscenes`: a nuScenes v1.0-mini / v1.0-trainval dataroot (LiDAR ray casting, 6 rendered
  cameras, all v1.0 tables) that the official nuscenes-devkit loads and scores.
- `simulate_events`: the ESIM / v2e event-camera model on rendered frames.
- `make_synthetic_ddd17`, `make_synthetic_dsec`, `make_synthetic_mvsec`, `make_source_images`,
  `make_synthetic_ncaltech`, `make_recognition_source_images`: event recordings and unpaired labeled image
  sets for EvDistill.
"""

from .event_render import DDD17_CLASSES, DSEC_CLASSES, DSEC_TO_DDD17
from .event_simulator import EventSimulator, simulate_events
from .event_worlds import (
    RECOGNITION_CLASSES,
    DavisApsModel,
    make_recognition_source_images,
    make_source_images,
    make_synthetic_ddd17,
    make_synthetic_dsec,
    make_synthetic_mvsec,
    make_synthetic_ncaltech,
)
from .nuscenes_generator import make_synthetic_nuscenes

__all__ = [
    "DDD17_CLASSES",
    "DSEC_CLASSES",
    "DSEC_TO_DDD17",
    "DavisApsModel",
    "EventSimulator",
    "RECOGNITION_CLASSES",
    "make_recognition_source_images",
    "make_source_images",
    "make_synthetic_ddd17",
    "make_synthetic_dsec",
    "make_synthetic_mvsec",
    "make_synthetic_ncaltech",
    "make_synthetic_nuscenes",
    "simulate_events",
]

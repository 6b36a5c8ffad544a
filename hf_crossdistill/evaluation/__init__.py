"""Evaluation: the official nuScenes detection metrics for LIDAR_TOP-frame predictions."""

from .nuscenes_eval import (
    ATTRIBUTE_BY_MOTION,
    attribute_names,
    boxes_to_global,
    build_submission,
    evaluate_nuscenes,
    gather_predictions,
    lidar_to_global,
    merge_predictions,
    validate_prediction,
)

__all__ = [
    "ATTRIBUTE_BY_MOTION",
    "attribute_names",
    "boxes_to_global",
    "build_submission",
    "evaluate_nuscenes",
    "gather_predictions",
    "lidar_to_global",
    "merge_predictions",
    "validate_prediction",
]

"""Evaluation: the official nuScenes detection metrics for LIDAR_TOP-frame predictions; mIoU / accuracy."""

from .detector import evaluate_detector
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
from .segmentation import (
    ClassificationComputeMetrics,
    ClassificationMetric,
    SegmentationComputeMetrics,
    SegmentationMetric,
    all_reduce_sum,
    classification_metrics,
    confusion_matrix,
    segmentation_metrics,
    top1_accuracy,
)

__all__ = [
    "ATTRIBUTE_BY_MOTION",
    "attribute_names",
    "boxes_to_global",
    "build_submission",
    "evaluate_detector",
    "evaluate_nuscenes",
    "gather_predictions",
    "lidar_to_global",
    "merge_predictions",
    "validate_prediction",
    "ClassificationComputeMetrics",
    "ClassificationMetric",
    "SegmentationComputeMetrics",
    "SegmentationMetric",
    "all_reduce_sum",
    "classification_metrics",
    "confusion_matrix",
    "segmentation_metrics",
    "top1_accuracy",
]

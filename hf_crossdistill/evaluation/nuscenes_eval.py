"""Official nuScenes detection evaluation of LIDAR_TOP-frame predictions.

Predictions are moved from each key frame's LIDAR_TOP frame to the global frame, written as a nuScenes submission
(every sample of the split present, attributes chosen by speed per class) and scored by the devkit's own
`DetectionEval` with the `detection_cvpr_2019` configuration, so the numbers are those of the leaderboard code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..data.nuscenes import (
    NUSCENES_CLASSES,
    load_nuscenes,
    pose_matrix,
    split_sample_tokens,
    split_scene_names,
)

# (attribute when moving, attribute when still) per class, the usual CenterPoint / mmdet3d choice: a box
# faster than the threshold is moving; buses that stand still are usually stopped at a stop, other vehicles parked.
ATTRIBUTE_BY_MOTION = {
    "car": ("vehicle.moving", "vehicle.parked"),
    "truck": ("vehicle.moving", "vehicle.parked"),
    "construction_vehicle": ("vehicle.moving", "vehicle.parked"),
    "bus": ("vehicle.moving", "vehicle.stopped"),
    "trailer": ("vehicle.moving", "vehicle.parked"),
    "barrier": ("", ""),
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing"),
    "traffic_cone": ("", ""),
}

METRIC_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}


# ---------------------------------------------------------------------------------------------------------------
# Validation and frame changes
# ---------------------------------------------------------------------------------------------------------------


def _to_numpy(value: Any, name: str, token: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"predictions[{token!r}][{name!r}] is not numeric: {err}") from err


def validate_prediction(token: str, prediction: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check one sample's prediction dict and return (boxes (K, 9), scores (K,), labels (K,) int64) as numpy."""
    if not isinstance(prediction, Mapping):
        raise TypeError(f"predictions[{token!r}] must be a dict with boxes, scores, labels, got {type(prediction)}")
    missing = [key for key in ("boxes", "scores", "labels") if key not in prediction]
    if missing:
        raise KeyError(f"predictions[{token!r}] lacks {missing}")
    boxes = _to_numpy(prediction["boxes"], "boxes", token)
    scores = _to_numpy(prediction["scores"], "scores", token).reshape(-1)
    labels = _to_numpy(prediction["labels"], "labels", token).reshape(-1)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 9)
    if boxes.ndim != 2 or boxes.shape[1] != 9:
        raise ValueError(
            f"predictions[{token!r}]['boxes'] must be (K, 9) [x, y, z, l, w, h, yaw, vx, vy], got {boxes.shape}"
        )
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(
            f"predictions[{token!r}]: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels (lengths differ)"
        )
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(f"predictions[{token!r}] holds NaN or infinite boxes / scores")
    if (boxes[:, 3:6] <= 0).any():
        raise ValueError(f"predictions[{token!r}]['boxes'] has non-positive sizes (l, w, h)")
    if ((labels != np.round(labels)) | (labels < 0) | (labels >= len(NUSCENES_CLASSES))).any():
        raise ValueError(f"predictions[{token!r}]['labels'] must be integers in [0, {len(NUSCENES_CLASSES)})")
    return boxes, scores, labels.astype(np.int64)


def lidar_to_global(nusc, sample_token: str) -> np.ndarray:
    """4×4 transform from a key frame's LIDAR_TOP frame to the global frame (calibrated sensor, then ego pose)."""
    sample = nusc.get("sample", sample_token)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return pose_matrix(pose["translation"], pose["rotation"]) @ pose_matrix(cs["translation"], cs["rotation"])


def boxes_to_global(boxes: np.ndarray, lidar_to_global_matrix: np.ndarray) -> dict[str, np.ndarray]:
    """LIDAR_TOP boxes (K, 9) → global `translation` (K, 3), `size` (K, 3) as nuScenes' [w, l, h],
    `rotation` (K, 4) quaternions [w, x, y, z] about +z, and `velocity` (K, 2)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    rotation = lidar_to_global_matrix[:3, :3]
    translation = boxes[:, :3] @ rotation.T + lidar_to_global_matrix[:3, 3]
    zeros = np.zeros(len(boxes))
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), zeros], axis=1) @ rotation.T  # (K, 3)
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    quaternion = np.stack([np.cos(yaw / 2), zeros, zeros, np.sin(yaw / 2)], axis=1)
    velocity = np.stack([boxes[:, 7], boxes[:, 8], zeros], axis=1) @ rotation.T
    return {
        "translation": translation,
        "size": boxes[:, [4, 3, 5]],
        "rotation": quaternion,
        "velocity": velocity[:, :2],
    }


def attribute_names(labels: np.ndarray, velocity: np.ndarray, speed_threshold: float = 0.2) -> list[str]:
    """Attribute name per box from its class and speed (moving above `speed_threshold` m/s)."""
    moving = np.hypot(velocity[:, 0], velocity[:, 1]) > speed_threshold
    return [ATTRIBUTE_BY_MOTION[NUSCENES_CLASSES[k]][0 if m else 1] for k, m in zip(labels.tolist(), moving.tolist())]


# ---------------------------------------------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------------------------------------------


def build_submission(
    predictions: Mapping[str, Any],
    nusc,
    eval_set: str,
    *,
    max_boxes_per_sample: int = 500,
    speed_threshold: float = 0.2,
    meta: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """A nuScenes detection submission (`{"meta": ..., "results": {token: [box dicts]}}`) for `eval_set`.

    Every sample of the split gets an entry (empty when the predictions have none). A sample with more than
    `max_boxes_per_sample` boxes keeps its highest-scoring ones (the devkit rejects larger submissions).
    Tokens that are not key frames of the split raise a `ValueError`.
    """
    if not isinstance(predictions, Mapping):
        raise TypeError(f"predictions must be a dict sample_token → prediction dict, got {type(predictions)}")
    split_scene_names(nusc.version, eval_set)  # validates version / split
    tokens = split_sample_tokens(nusc, eval_set)
    unknown = sorted(set(predictions) - set(tokens))
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction token(s) are not key frames of split {eval_set!r} of {nusc.dataroot}: "
            f"{unknown[:3]}{' ...' if len(unknown) > 3 else ''}"
        )
    results: dict[str, list[dict[str, Any]]] = {}
    for token in tokens:
        if token not in predictions:
            results[token] = []
            continue
        boxes, scores, labels = validate_prediction(token, predictions[token])
        if len(boxes) > max_boxes_per_sample:
            keep = np.argsort(-scores, kind="stable")[:max_boxes_per_sample]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        world = boxes_to_global(boxes, lidar_to_global(nusc, token))
        attributes = attribute_names(labels, world["velocity"], speed_threshold)
        results[token] = [
            {
                "sample_token": token,
                "translation": world["translation"][i].tolist(),
                "size": world["size"][i].tolist(),
                "rotation": world["rotation"][i].tolist(),
                "velocity": world["velocity"][i].tolist(),
                "detection_name": NUSCENES_CLASSES[labels[i]],
                "detection_score": float(scores[i]),
                "attribute_name": attributes[i],
            }
            for i in range(len(boxes))
        ]
    default_meta = {
        "use_camera": False,
        "use_lidar": True,
        "use_radar": False,
        "use_map": False,
        "use_external": False,
    }
    return {"meta": {**default_meta, **(meta or {})}, "results": results}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------


def metrics_without_detections() -> dict[str, float]:
    """The official metrics of a submission without a single box: AP 0 for every class and every true-positive
    error at its cap of 1 (the devkit's value for a class without true positives), hence NDS 0."""
    metrics = {"mAP": 0.0, "NDS": 0.0}
    metrics.update(dict.fromkeys(METRIC_NAMES.values(), 1.0))
    metrics.update({f"AP_{name}": 0.0 for name in NUSCENES_CLASSES})
    return metrics


def evaluate_nuscenes(
    predictions: Mapping[str, Any],
    dataroot: str | os.PathLike,
    version: str,
    eval_set: str,
    *,
    output_dir: str | os.PathLike | None = None,
    nusc=None,
    config_name: str = "detection_cvpr_2019",
    speed_threshold: float = 0.2,
    meta: Mapping[str, bool] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """Score LIDAR_TOP-frame predictions with the official nuScenes detection evaluation.

    Args:
        predictions: `{sample_token: {"boxes": (K, 9) [x, y, z, l, w, h, yaw, vx, vy], "scores": (K,),
            "labels": (K,) indices into NUSCENES_CLASSES}}` (numpy, tensors or lists), in the un-augmented key
            LIDAR_TOP frame. Samples of the split without an entry count as "no detections".
        dataroot, version, eval_set: the dataroot, its version and a devkit split of it (e.g. "mini_val").
        output_dir: where `submission.json` and `metrics_summary.json` are written (a temporary folder if None).
        nusc: an already loaded `NuScenes` for this dataroot (skips loading the tables again).
        config_name: the devkit evaluation configuration.
        speed_threshold: m/s above which a box gets its class's "moving" attribute.
        meta: submission meta flags (`use_camera`, `use_lidar`, ...).

    Returns:
        `mAP`, `NDS`, `mATE`, `mASE`, `mAOE`, `mAVE`, `mAAE` and `AP_<class>` for every class (floats).
    """
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    split_scene_names(version, eval_set)
    if nusc is None:
        nusc = load_nuscenes(dataroot, version)
    elif nusc.version != version:
        raise ValueError(f"nusc holds version {nusc.version!r} but version={version!r} was requested")
    submission = build_submission(predictions, nusc, eval_set, speed_threshold=speed_threshold, meta=meta)
    if not any(submission["results"].values()):
        # The devkit cannot load a submission without a single box; the official scores of one are known.
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, "submission.json"), "w") as f:
                json.dump(submission, f)
        return metrics_without_detections()

    with tempfile.TemporaryDirectory() as scratch:
        out = os.fspath(output_dir) if output_dir is not None else scratch
        os.makedirs(out, exist_ok=True)
        result_path = os.path.join(out, "submission.json")
        with open(result_path, "w") as f:
            json.dump(submission, f)
        evaluator = DetectionEval(
            nusc,
            config=config_factory(config_name),
            result_path=result_path,
            eval_set=eval_set,
            output_dir=out,
            verbose=verbose,
        )
        metrics, _ = evaluator.evaluate()
        summary = metrics.serialize()
        with open(os.path.join(out, "metrics_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)

    result = {"mAP": float(summary["mean_ap"]), "NDS": float(summary["nd_score"])}
    for key, name in METRIC_NAMES.items():
        result[name] = float(summary["tp_errors"][key])
    for name in NUSCENES_CLASSES:
        result[f"AP_{name}"] = float(summary["mean_dist_aps"][name])
    return result


# ---------------------------------------------------------------------------------------------------------------
# Distributed gathering
# ---------------------------------------------------------------------------------------------------------------


def _detach(prediction: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {
        key: (value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value))
        for key, value in prediction.items()
    }


def merge_predictions(parts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Merge per-rank prediction dicts, keeping each sample token once.

    Distributed samplers pad the last batch by repeating samples, so a token may come back from several ranks;
    the first copy wins (all copies are predictions of the same input).
    """
    merged: dict[str, dict[str, np.ndarray]] = {}
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise TypeError(f"part {i} of the gathered predictions is a {type(part).__name__}, expected a dict")
        for token, prediction in part.items():
            if token not in merged:
                merged[str(token)] = _detach(prediction)
    return merged


def gather_predictions(predictions: Mapping[str, Any], accelerator=None) -> dict[str, dict[str, np.ndarray]]:
    """All ranks' predictions merged on every rank (`accelerate` when given, else `torch.distributed` when
    initialised, else this process's only), with no sample lost or duplicated."""
    local = {str(token): _detach(prediction) for token, prediction in predictions.items()}
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        # gather_object concatenates lists, so each rank contributes a one-element list.
        return merge_predictions(gather_object([local]))
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
        return merge_predictions(parts)
    return local

"""Official nuScenes metrics of a trained BEV detector, through the one evaluation path (`Trainer.evaluate`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["evaluate_detector"]


def evaluate_detector(
    model,
    dataroot: str | os.PathLike,
    version: str,
    split: str,
    *,
    batch_size: int = 4,
    num_sweeps: int | None = None,
    score_threshold: float | None = None,
    output_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Score a BEV detector on a devkit split with the official nuScenes detection metrics.

    The same path as the end-of-training evaluation: the split streams through `nuscenes_detection_dataset` (no
    augmentation), `UniDistillTrainer.evaluate` decodes the boxes (`post_process`) and `evaluate_nuscenes` scores
    them.

    Args:
        model: a `BEVDetectorForObjectDetection`, or the path of its `save_pretrained` folder (loaded strictly).
        dataroot, version, split: the nuScenes dataroot, its version and a devkit split of it.
        batch_size: evaluation batch size.
        num_sweeps: LiDAR sweeps per sample (default: the model config's).
        score_threshold: decoding threshold (default: the config's `score_threshold`).
        output_dir: where the devkit's submission and metrics go (default: a temporary folder, removed).

    Returns:
        `{"mAP", "NDS", "mATE", ..., per-class APs, "nuscenes_samples"}` (without the `eval_` prefix).
    """
    from ..data.nuscenes import loader_options, nuscenes_detection_dataset
    from ..distill import NuScenesEvaluation, UniDistillConfig, UniDistillTrainer, load_pretrained_strict
    from ..distill._arguments import has_accelerator
    from ..models.bev_detector import BEVDetectorForObjectDetection

    if isinstance(model, (str, os.PathLike)):
        model = load_pretrained_strict(BEVDetectorForObjectDetection, model)
    if not callable(getattr(model, "post_process", None)) or not hasattr(getattr(model, "config", None), "bev_range"):
        raise TypeError(f"evaluate_detector: {type(model).__name__} is not a BEV detector with post_process")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate_detector: batch_size must be an int >= 1, got {batch_size!r}")
    options = loader_options(model.config)
    if num_sweeps is not None:
        options["num_sweeps"] = num_sweeps
    dataset = nuscenes_detection_dataset(
        dataroot, version, split, augment=False, point_cloud_range=model.config.point_cloud_range, **options
    )
    with tempfile.TemporaryDirectory(prefix="evaluate_detector-") as scratch:
        out = Path(output_dir) if output_dir is not None else Path(scratch)
        args = UniDistillConfig(
            output_dir=str(out),
            per_device_eval_batch_size=batch_size,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not has_accelerator(),
        )
        evaluation = NuScenesEvaluation(
            dataroot=str(dataroot), version=version, eval_set=split, score_threshold=score_threshold
        )
        trainer = UniDistillTrainer(model=model, args=args, eval_dataset=dataset, nuscenes_evaluation=evaluation)
        metrics = trainer.evaluate()
    return {k[len("eval_") :]: v for k, v in metrics.items() if k.startswith("eval_")}

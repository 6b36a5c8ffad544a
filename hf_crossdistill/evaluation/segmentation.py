"""Semantic segmentation and recognition metrics: confusion matrices accumulated over a whole split.

mIoU is computed from ONE confusion matrix summed over every pixel of the split (and over every rank), never as a
mean of per-image IoUs: that is the convention of the DDD17 / MVSEC segmentation results EvDistill reports
(Tables 1–3) and of the Cityscapes tooling they inherit. Pixels labelled `ignore_index` (255) do not count.

- `confusion_matrix` / `segmentation_metrics`: pure functions (tensors in, numbers out).
- `SegmentationMetric` / `ClassificationMetric`: accumulators with `update` / `compute` / `reset`, on any device,
  summed across ranks by `all_reduce_sum` when `torch.distributed` is initialised.
- `SegmentationComputeMetrics` / `ClassificationComputeMetrics`: `compute_metrics` callables for
  `transformers.Trainer`, with a `preprocess_logits_for_metrics` that keeps only the arg-max so evaluation never
  stores a split's worth of logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
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


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _as_tensor(value: Any, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], (torch.Tensor, np.ndarray)):
        # Trainer hands over every model output when no `preprocess_logits_for_metrics` ran: logits come first.
        value = value[0]
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be a tensor or array, got {type(value).__name__}: {err}") from err
    return tensor.to(device) if device is not None else tensor


def _check_num_classes(num_classes: Any, name: str = "num_classes") -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{name} must be a positive int, got {num_classes!r}")
    return int(num_classes)


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries for num_classes={num_classes}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}")
    return names


def _labels_from_predictions(predictions: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    """Class indices from `predictions`: already indices (same shape as labels) or scores with a class dim 1."""
    if predictions.shape == labels.shape:
        if predictions.is_floating_point():
            if not torch.equal(predictions, predictions.round()):
                raise ValueError(f"{name}: predictions shaped like labels {tuple(labels.shape)} are not integer")
            predictions = predictions.long()
        return predictions
    if predictions.ndim == labels.ndim + 1 and predictions.shape[0] == labels.shape[0]:
        if predictions.shape[2:] != labels.shape[1:]:
            raise ValueError(
                f"{name}: logits {tuple(predictions.shape)} do not match labels {tuple(labels.shape)} "
                "(resize the logits to the label size first, e.g. with preprocess_logits_for_metrics)"
            )
        return predictions.argmax(dim=1)
    raise ValueError(
        f"{name}: predictions must be class indices shaped like labels {tuple(labels.shape)} or scores "
        f"(B, C, ...), got {tuple(predictions.shape)}"
    )


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks when `torch.distributed` is initialised (a new tensor); itself otherwise.

    NCCL only reduces CUDA tensors, so a CPU tensor travels to the current CUDA device and back; gloo reduces CPU
    tensors in place. Every rank must call this (it is a collective).
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"all_reduce_sum expects a torch.Tensor, got {type(tensor).__name__}")
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    if torch.distributed.get_world_size() == 1:
        return tensor.clone()
    backend = torch.distributed.get_backend()
    work = tensor.clone()
    if backend == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    torch.distributed.all_reduce(work, op=torch.distributed.ReduceOp.SUM)
    return work.to(tensor.device)


# ---------------------------------------------------------------------------------------------------------------
# Confusion matrix and the metrics derived from it (pure functions)
# ---------------------------------------------------------------------------------------------------------------


def confusion_matrix(
    predictions: Any, labels: Any, num_classes: int, *, ignore_index: int | None = 255
) -> torch.Tensor:
    """Confusion matrix `(num_classes, num_classes)` int64, row = ground truth, column = prediction.

    Args:
        predictions: class indices shaped like `labels`, or scores `(B, C, ...)` (arg-max over dim 1).
        labels: ground-truth class indices in `[0, num_classes)`. Pixels equal to `ignore_index` and negative
            labels (the `-100` Trainer pads with) are skipped.
        num_classes: number of classes C.
        ignore_index: label value that does not count (255 for DDD17 / DSEC / Cityscapes style maps).

    Returns:
        the counts on the device of `labels`.
    """
    num_classes = _check_num_classes(num_classes)
    labels = _as_tensor(labels, "labels")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must hold integer class indices, got non-integer floats")
        labels = labels.long()
    predictions = _as_tensor(predictions, "predictions", device=labels.device)
    predictions = _labels_from_predictions(predictions, labels, "confusion_matrix")
    labels, predictions = labels.reshape(-1).long(), predictions.reshape(-1).long()
    valid = labels >= 0
    if ignore_index is not None:
        valid &= labels != ignore_index
    labels, predictions = labels[valid], predictions[valid]
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels contain class {int(labels.max())} but num_classes={num_classes} (ignore_index={ignore_index})"
        )
    if predictions.numel() and (int(predictions.min()) < 0 or int(predictions.max()) >= num_classes):
        raise ValueError(
            f"predictions at labelled pixels must be in [0, {num_classes}), got range "
            f"[{int(predictions.min())}, {int(predictions.max())}]"
        )
    flat = torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)  # (C_gt, C_pred)


def _check_confusion(confusion: Any) -> np.ndarray:
    matrix = _as_tensor(confusion, "confusion").cpu().numpy()
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {matrix.shape}")
    if np.any(matrix < 0):
        raise ValueError("confusion must hold non-negative counts")
    return matrix.astype(np.float64)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def segmentation_metrics(confusion: Any, *, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and mean class accuracy of a confusion matrix (row = ground truth).

    IoU_c = TP_c / (TP_c + FP_c + FN_c). A class absent from both the ground truth and the predictions has an
    undefined IoU (NaN) and is left out of the mean; a class present in only one of them has IoU 0.
    Class accuracy (recall) is NaN for classes without ground-truth pixels and left out of the mean.

    Returns:
        `mean_iou`, `pixel_accuracy`, `mean_accuracy`, `frequency_weighted_iou` (floats, NaN when nothing was
        counted), `per_class_iou`, `per_class_accuracy` (float64 arrays `(C,)`), and `iou_<name>` floats when
        `class_names` are given.
    """
    matrix = _check_confusion(confusion)
    names = _class_names(class_names, matrix.shape[0])
    true_positive = np.diag(matrix)
    ground_truth = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    union = ground_truth + predicted - true_positive
    total = matrix.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        accuracy = np.where(ground_truth > 0, true_positive / ground_truth, np.nan)
    frequency = ground_truth / total if total > 0 else np.zeros_like(ground_truth)
    metrics: dict[str, Any] = {
        "mean_iou": _nanmean(iou),
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": _nanmean(accuracy),
        "frequency_weighted_iou": float(np.nansum(frequency * iou)) if total > 0 else float("nan"),
        "per_class_iou": iou,
        "per_class_accuracy": accuracy,
    }
    if names is not None:
        metrics.update({f"iou_{name}": float(value) for name, value in zip(names, iou)})
    return metrics


def classification_metrics(confusion: Any, *, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Top-1 accuracy, mean class accuracy and per-class accuracy of a recognition confusion matrix."""
    matrix = _check_confusion(confusion)
    names = _class_names(class_names, matrix.shape[0])
    ground_truth = matrix.sum(axis=1)
    total = matrix.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(ground_truth > 0, np.diag(matrix) / ground_truth, np.nan)
    metrics: dict[str, Any] = {
        "accuracy": float(np.trace(matrix) / total) if total > 0 else float("nan"),
        "mean_accuracy": _nanmean(accuracy),
        "per_class_accuracy": accuracy,
    }
    if names is not None:
        metrics.update({f"accuracy_{name}": float(value) for name, value in zip(names, accuracy)})
    return metrics


def top1_accuracy(predictions: Any, labels: Any, *, ignore_index: int | None = -100) -> float:
    """Fraction of samples whose arg-max (or given class index) equals the label; `ignore_index` labels skipped.

    Args:
        predictions: logits `(N, C)` or class indices `(N,)`.
        labels: `(N,)` class indices.
    """
    labels = _as_tensor(labels, "labels").reshape(-1)
    predictions = _as_tensor(predictions, "predictions", device=labels.device)
    if predictions.ndim == 2 and labels.numel() == predictions.shape[0]:
        predictions = predictions.argmax(dim=1)
    predictions = _labels_from_predictions(predictions.reshape(-1), labels, "top1_accuracy")
    keep = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    if not bool(keep.any()):
        raise ValueError("top1_accuracy: no labelled sample (all labels equal ignore_index)")
    return float((predictions[keep] == labels[keep]).double().mean())


# ---------------------------------------------------------------------------------------------------------------
# Accumulators
# ---------------------------------------------------------------------------------------------------------------


class SegmentationMetric:
    """Accumulates a confusion matrix over a split; `compute()` sums it over ranks and returns `segmentation_metrics`.

    Example:

    ```python
    metric = SegmentationMetric(num_classes=6)
    for batch in loader:
        metric.update(model(batch["pixel_values"]).logits, batch["labels"])
    print(metric.compute()["mean_iou"])
    ```

    Args:
        num_classes: number of classes C.
        ignore_index: label value that does not count (255).
        class_names: optional names; adds `iou_<name>` entries to the results.
        device: where the matrix lives (default: the device of the first `update`).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = ignore_index
        self.class_names = _class_names(class_names, self.num_classes)
        self._device = torch.device(device) if device is not None else None
        self.confusion: torch.Tensor | None = None

    def reset(self) -> None:
        self.confusion = None

    def _batch_confusion(self, predictions: Any, labels: Any) -> torch.Tensor:
        return confusion_matrix(predictions, labels, self.num_classes, ignore_index=self.ignore_index)

    @torch.no_grad()
    def update(self, predictions: Any, labels: Any) -> torch.Tensor:
        """Add a batch (scores `(B, C, H, W)` or indices `(B, H, W)` vs labels `(B, H, W)`); returns its matrix."""
        batch = self._batch_confusion(predictions, labels)
        if self.confusion is None:
            self.confusion = torch.zeros_like(batch, device=self._device or batch.device)
        self.confusion += batch.to(self.confusion.device)
        return batch

    def merge(self, other: SegmentationMetric) -> SegmentationMetric:
        """Add another accumulator's counts (same task, same number of classes) into this one."""
        if type(other) is not type(self) or other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {type(other).__name__}({other.num_classes}) into {self!r}")
        if other.confusion is not None:
            if self.confusion is None:
                self.confusion = other.confusion.clone()
            else:
                self.confusion += other.confusion.to(self.confusion.device)
        return self

    def total_confusion(self, *, sync: bool = True) -> torch.Tensor:
        """The accumulated matrix, summed across ranks when `sync` and `torch.distributed` is initialised."""
        confusion = self.confusion
        if confusion is None:
            confusion = torch.zeros(
                self.num_classes, self.num_classes, dtype=torch.int64, device=self._device or "cpu"
            )
        return all_reduce_sum(confusion) if sync else confusion.clone()

    def compute(self, *, sync: bool = True) -> dict[str, Any]:
        return segmentation_metrics(self.total_confusion(sync=sync), class_names=self.class_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})"


class ClassificationMetric(SegmentationMetric):
    """Recognition accumulator: top-1 (and optional top-k) accuracy, mean class accuracy, summed across ranks.

    Args:
        num_classes: number of classes C.
        top_k: extra k values to report as `top<k>_accuracy` (needs logits, or top-k indices `(N, k)` sorted by
            score, in `update`).
        ignore_index: label value that does not count (-100, the transformers convention).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        top_k: Sequence[int] = (),
        ignore_index: int | None = -100,
        class_names: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index, class_names=class_names, device=device)
        self.top_k = tuple(int(k) for k in top_k)
        if any(k < 1 or k > self.num_classes for k in self.top_k):
            raise ValueError(f"top_k values must be in [1, {self.num_classes}], got {tuple(top_k)}")
        self._top_k_hits: torch.Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self._top_k_hits = None

    @torch.no_grad()
    def update(self, predictions: Any, labels: Any) -> torch.Tensor:
        """Add one batch: logits `(N, C)`, top-k indices `(N, k)` or indices `(N,)`, against labels `(N,)`."""
        labels = _as_tensor(labels, "labels").reshape(-1).long()
        predictions = _as_tensor(predictions, "predictions", device=labels.device)
        if predictions.ndim != 2 and self.top_k:
            raise ValueError(f"top_k={self.top_k} needs logits (N, C) or top-k indices (N, k)")
        if predictions.ndim == 2 and predictions.shape[0] != labels.numel():
            raise ValueError(f"predictions {tuple(predictions.shape)} do not match labels ({labels.numel()},)")
        ranked = None
        if predictions.ndim == 2:
            if predictions.is_floating_point() and predictions.shape[1] == self.num_classes:
                ranked = predictions.topk(max(self.top_k, default=1), dim=1).indices  # (N, k)
            else:
                ranked = predictions.long()  # already top-k indices, best first
            if self.top_k and ranked.shape[1] < max(self.top_k):
                raise ValueError(f"top_k={self.top_k} needs ≥ {max(self.top_k)} ranked predictions per sample")
            predictions = ranked[:, 0]
        batch = super().update(predictions, labels)
        if self.top_k:
            keep = labels >= 0 if self.ignore_index is None else (labels != self.ignore_index) & (labels >= 0)
            hits = torch.stack([(ranked[keep, :k] == labels[keep, None]).any(1).sum() for k in self.top_k])
            self._top_k_hits = hits if self._top_k_hits is None else self._top_k_hits + hits.to(self._top_k_hits)
        return batch

    def compute(self, *, sync: bool = True) -> dict[str, Any]:
        confusion = self.total_confusion(sync=sync)
        metrics = classification_metrics(confusion, class_names=self.class_names)
        if self.top_k:
            hits = self._top_k_hits if self._top_k_hits is not None else torch.zeros(len(self.top_k), dtype=torch.long)
            hits = all_reduce_sum(hits) if sync else hits
            total = float(confusion.sum())
            for k, hit in zip(self.top_k, hits.tolist()):
                metrics[f"top{k}_accuracy"] = hit / total if total > 0 else float("nan")
        return metrics


# ---------------------------------------------------------------------------------------------------------------
# transformers.Trainer adaptors
# ---------------------------------------------------------------------------------------------------------------


def _scalars(metrics: dict[str, Any], class_names: list[str] | None, per_class_key: str, prefix: str) -> dict:
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, np.ndarray)}
    if class_names is None:
        # Without names the per-class values are still logged, keyed by class index.
        out.update({f"{prefix}_{i}": float(v) for i, v in enumerate(metrics[per_class_key])})
    return out


class SegmentationComputeMetrics:
    """`compute_metrics` for `transformers.Trainer` on semantic segmentation, with bounded memory.

    Pass `preprocess_logits_for_metrics=metric.preprocess_logits_for_metrics` so only the arg-max `(B, H, W)` of
    each batch is kept (not `(B, C, H, W)` logits). Works with `batch_eval_metrics=True` (nothing is stored at all:
    the matrix accumulates per batch) and without it (one call on the whole split). Trainer already gathers
    predictions from every rank before calling this, so no all-reduce happens here (it would count twice).

    ```python
    metric = SegmentationComputeMetrics(num_classes=6, class_names=DDD17_CLASSES)
    Trainer(..., compute_metrics=metric, preprocess_logits_for_metrics=metric.preprocess_logits_for_metrics)
    ```
    """

    _per_class_key, _prefix = "per_class_iou", "iou"

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = 255, class_names: Sequence[str] | None = None
    ) -> None:
        self.metric = self._make_metric(num_classes, ignore_index=ignore_index, class_names=class_names)

    def _make_metric(self, num_classes, **kwargs) -> SegmentationMetric:
        return SegmentationMetric(num_classes, **kwargs)

    @staticmethod
    def preprocess_logits_for_metrics(logits: Any, labels: torch.Tensor | None) -> torch.Tensor:
        """Arg-max over classes of `(B, C, h, w)` logits, bilinearly resized to the labels' `(H, W)` first."""
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
            shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
            raise ValueError(f"preprocess_logits_for_metrics expects logits (B, C, H, W), got {shape}")
        if labels is not None and tuple(labels.shape[-2:]) != tuple(logits.shape[-2:]):
            logits = torch.nn.functional.interpolate(
                logits.float(), size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False
            )
        return logits.argmax(dim=1)  # (B, H, W)

    def __call__(self, eval_prediction: Any, compute_result: bool = True) -> dict[str, float]:
        try:
            predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        except AttributeError:
            predictions, labels = eval_prediction
        if labels is None:
            raise ValueError(f"{type(self).__name__}: the EvalPrediction has no label_ids")
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        self.metric.update(predictions, labels)
        if not compute_result:
            return {}
        metrics = self.metric.compute(sync=False)
        self.metric.reset()
        return _scalars(metrics, self.metric.class_names, self._per_class_key, self._prefix)


class ClassificationComputeMetrics(SegmentationComputeMetrics):
    """`compute_metrics` for `transformers.Trainer` on recognition: `accuracy` (top-1), `mean_accuracy`, top-k.

    Its `preprocess_logits_for_metrics` keeps the top-k class indices `(N, k)` (arg-max when k = 1).
    """

    _per_class_key, _prefix = "per_class_accuracy", "accuracy"

    def __init__(
        self,
        num_classes: int,
        *,
        top_k: Sequence[int] = (),
        ignore_index: int | None = -100,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self._top_k = tuple(top_k)
        super().__init__(num_classes, ignore_index=ignore_index, class_names=class_names)

    def _make_metric(self, num_classes, **kwargs) -> ClassificationMetric:
        return ClassificationMetric(num_classes, top_k=self._top_k, **kwargs)

    def preprocess_logits_for_metrics(self, logits: Any, labels: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
            raise ValueError(f"preprocess_logits_for_metrics expects logits (N, C), got {shape}")
        return logits.topk(max(self._top_k, default=1), dim=1).indices  # (N, k)

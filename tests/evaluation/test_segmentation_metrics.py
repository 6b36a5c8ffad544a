"""mIoU / accuracy metrics on hand-built confusion matrices and label maps, the Trainer adaptors, and DDP sums."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from hf_crossdistill.evaluation import (
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


def test_confusion_matrix_counts_rows_gt_columns_prediction_and_skips_ignore():
    labels = torch.tensor([[0, 0, 1, 1], [2, 255, 2, 255]])
    predictions = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 7]])  # 7 sits on an ignored pixel: never checked
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(confusion_matrix(predictions, labels, 3), expected)
    # The same from logits (B, C, H, W) and from numpy.
    logits = torch.nn.functional.one_hot(predictions.clamp(max=2), 3).permute(2, 0, 1)[None].float()
    assert torch.equal(confusion_matrix(logits, labels[None], 3), expected)
    assert torch.equal(confusion_matrix(predictions.numpy(), labels.numpy(), 3), expected)
    # Trainer pads with -100: negative labels never count either.
    assert int(confusion_matrix(torch.tensor([5, 0]), torch.tensor([-100, 0]), 3).sum()) == 1


def test_segmentation_metrics_known_values():
    confusion = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    m = segmentation_metrics(confusion, class_names=["road", "car", "sky"])
    # IoU: class 0 = 3 / (4 + 3 - 3) = 0.75; class 1 = 2 / (4 + 3 - 2) = 0.4; class 2 = 0 / (0 + 2 - 0) = 0.
    np.testing.assert_allclose(m["per_class_iou"], [0.75, 0.4, 0.0])
    assert m["mean_iou"] == pytest.approx((0.75 + 0.4 + 0.0) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 8)
    # Class 2 has no ground truth: its accuracy is NaN and left out of the mean.
    assert math.isnan(m["per_class_accuracy"][2])
    assert m["mean_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert m["frequency_weighted_iou"] == pytest.approx(0.5 * 0.75 + 0.5 * 0.4)
    assert m["iou_car"] == pytest.approx(0.4)


def test_absent_class_is_nan_and_excluded_from_mean_iou():
    m = segmentation_metrics(torch.tensor([[5, 0, 0], [0, 0, 0], [0, 0, 5]]))
    assert math.isnan(m["per_class_iou"][1])
    assert m["mean_iou"] == 1.0 and m["pixel_accuracy"] == 1.0 and m["mean_accuracy"] == 1.0
    empty = segmentation_metrics(np.zeros((2, 2)))
    assert math.isnan(empty["mean_iou"]) and math.isnan(empty["pixel_accuracy"])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="square"):
        segmentation_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels contain class 4"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 4]), 3)
    with pytest.raises(ValueError, match="predictions at labelled pixels"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="do not match labels"):
        confusion_matrix(torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetric(0)
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        SegmentationMetric(3, class_names=["a", "b"])


def test_metric_over_a_split_equals_the_metric_of_the_concatenation_not_the_mean_of_batches():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (6, 8, 8), generator=generator)
    labels[:, :2] = 255
    logits = torch.randn(6, 4, 8, 8, generator=generator)
    whole = segmentation_metrics(confusion_matrix(logits, labels, 4))
    metric = SegmentationMetric(4)
    per_batch = []
    for i in range(0, 6, 2):
        batch = metric.update(logits[i : i + 2], labels[i : i + 2])
        per_batch.append(segmentation_metrics(batch)["mean_iou"])
    assert metric.compute()["mean_iou"] == pytest.approx(whole["mean_iou"])
    assert metric.compute()["mean_iou"] != pytest.approx(float(np.mean(per_batch)))
    # Two "ranks" holding half the split each, summed, give the same numbers (what all_reduce_sum does).
    rank0, rank1 = SegmentationMetric(4), SegmentationMetric(4)
    rank0.update(logits[:3], labels[:3])
    rank1.update(logits[3:], labels[3:])
    torch.testing.assert_close(rank0.merge(rank1).compute()["per_class_iou"], whole["per_class_iou"])
    metric.reset()
    assert math.isnan(metric.compute()["mean_iou"])


def test_all_reduce_sum_without_a_process_group_is_the_identity():
    tensor = torch.arange(4)
    assert all_reduce_sum(tensor) is tensor
    with pytest.raises(ValueError, match="torch.Tensor"):
        all_reduce_sum([1, 2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, result_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 5, 5), generator=generator)
    logits = torch.randn(4, 3, 5, 5, generator=generator)
    metric = SegmentationMetric(3)
    metric.update(logits[rank * 2 : rank * 2 + 2], labels[rank * 2 : rank * 2 + 2])  # each rank: half the split
    classification = ClassificationMetric(3, top_k=(1, 2))
    classification.update(logits[rank * 2 : rank * 2 + 2, :, 0, 0], labels[rank * 2 : rank * 2 + 2, 0, 0])
    torch.save(
        {"seg": metric.compute()["per_class_iou"], "cls": classification.compute()},
        os.path.join(result_dir, f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


@pytest.mark.multiprocess
def test_two_process_gloo_sum_matches_one_process(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 5, 5), generator=generator)
    logits = torch.randn(4, 3, 5, 5, generator=generator)
    expected = segmentation_metrics(confusion_matrix(logits, labels, 3))["per_class_iou"]
    single = ClassificationMetric(3, top_k=(1, 2))
    single.update(logits[:, :, 0, 0], labels[:, 0, 0])
    expected_cls = single.compute()
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        np.testing.assert_allclose(result["seg"], expected)
        for key in ("accuracy", "mean_accuracy", "top1_accuracy", "top2_accuracy"):
            assert result["cls"][key] == pytest.approx(expected_cls[key], nan_ok=True), key


def test_top1_accuracy_and_classification_metric():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 1])
    assert top1_accuracy(logits, labels) == pytest.approx(0.5)
    assert top1_accuracy(logits.argmax(1), labels) == pytest.approx(0.5)
    assert top1_accuracy(logits, torch.tensor([0, 1, -100, -100])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no labelled sample"):
        top1_accuracy(logits, torch.full((4,), -100))
    metric = ClassificationMetric(3, top_k=(1, 2))
    metric.update(logits, labels)
    m = metric.compute()
    assert m["accuracy"] == m["top1_accuracy"] == pytest.approx(0.5)
    # Top-2: sample 1 (label 1, 2nd best) and sample 2 (label 2, 2nd best) become hits.
    assert m["top2_accuracy"] == pytest.approx(1.0)
    np.testing.assert_allclose(m["per_class_accuracy"], [1.0, 0.5, 0.0])
    assert classification_metrics(np.eye(2) * 3)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="top_k"):
        ClassificationMetric(3, top_k=(4,))


def test_segmentation_compute_metrics_for_trainer_bounded_memory_and_batch_mode():
    from transformers import EvalPrediction

    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (4, 8, 8), generator=generator)
    labels[0, 0] = 255
    logits = torch.randn(4, 3, 4, 4, generator=generator)  # low-resolution logits: resized to the labels
    adaptor = SegmentationComputeMetrics(3, class_names=["a", "b", "c"])
    predictions = adaptor.preprocess_logits_for_metrics((logits, torch.zeros(1)), labels)
    assert predictions.shape == (4, 8, 8) and predictions.dtype == torch.int64
    upsampled = torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    expected = segmentation_metrics(confusion_matrix(upsampled, labels, 3), class_names=["a", "b", "c"])

    whole = adaptor(EvalPrediction(predictions=predictions.numpy(), label_ids=labels.numpy()))
    assert set(whole) >= {"mean_iou", "pixel_accuracy", "mean_accuracy", "iou_a", "iou_b", "iou_c"}
    assert all(isinstance(v, float) for v in whole.values())
    assert whole["mean_iou"] == pytest.approx(expected["mean_iou"])
    # batch_eval_metrics=True: one call per batch, the result on the last one, the state reset afterwards.
    assert adaptor(EvalPrediction(predictions=predictions[:2], label_ids=labels[:2]), compute_result=False) == {}
    last = adaptor(EvalPrediction(predictions=predictions[2:], label_ids=labels[2:]), compute_result=True)
    assert last == pytest.approx(whole)
    assert adaptor.metric.confusion is None
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        adaptor.preprocess_logits_for_metrics(torch.randn(2, 3), None)


def test_classification_compute_metrics_for_trainer():
    from transformers import EvalPrediction

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 1])
    adaptor = ClassificationComputeMetrics(3, top_k=(1, 2))
    ranked = adaptor.preprocess_logits_for_metrics(logits, labels)
    assert ranked.shape == (4, 2)
    m = adaptor(EvalPrediction(predictions=ranked.numpy(), label_ids=labels.numpy()))
    assert m["accuracy"] == pytest.approx(0.5) and m["top2_accuracy"] == pytest.approx(1.0)
    assert m["accuracy_0"] == pytest.approx(1.0)  # per-class entries keyed by index without class names


def test_trainer_evaluate_with_the_adaptor_on_a_tiny_model(tmp_path):
    """A real Trainer.evaluate with batch_eval_metrics on a 1-conv segmenter matches a hand-computed mIoU."""
    from transformers import Trainer, TrainingArguments

    class TinySegmenter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 1)

        def forward(self, pixel_values, labels=None):
            logits = self.conv(pixel_values)
            loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)
            return {"loss": loss, "logits": logits}

    generator = torch.Generator().manual_seed(2)
    data = [
        {"pixel_values": torch.randn(2, 6, 6, generator=generator), "labels": torch.randint(0, 3, (6, 6))}
        for _ in range(5)
    ]
    model = TinySegmenter().eval()
    adaptor = SegmentationComputeMetrics(3)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, batch_eval_metrics=True, report_to=[], use_cpu=True
    )
    trainer = Trainer(
        model=model,
        args=args,
        eval_dataset=data,
        compute_metrics=adaptor,
        preprocess_logits_for_metrics=adaptor.preprocess_logits_for_metrics,
    )
    metrics = trainer.evaluate()
    with torch.no_grad():
        logits = model(torch.stack([d["pixel_values"] for d in data]), torch.stack([d["labels"] for d in data]))
    expected = segmentation_metrics(confusion_matrix(logits["logits"], torch.stack([d["labels"] for d in data]), 3))
    assert metrics["eval_mean_iou"] == pytest.approx(expected["mean_iou"])
    assert metrics["eval_pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])

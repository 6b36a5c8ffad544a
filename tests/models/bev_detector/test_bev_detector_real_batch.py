"""BEV detectors on REAL batches: synthetic nuScenes dataroot → streaming dataset → collator → model."""

from __future__ import annotations

import itertools

import pytest
import torch
from bev_detector_helpers import TINY_PRESETS
from testing_utils import check_gradients_reach_all_parameters, tiny_config

from hf_crossdistill.data.nuscenes import collate_bev_batch, nuscenes_detection_dataset
from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection


def _real_batch(root, version, config: BEVDetectorConfig, *, augment: bool, cameras: bool = True) -> dict:
    height, width = config.image_size
    kwargs = {"num_sweeps": 2, "augment": augment, "point_cloud_range": config.point_cloud_range, "seed": 0}
    if cameras:
        kwargs["image_size"] = (width, height)
    else:
        kwargs["cameras"] = ()
    dataset = nuscenes_detection_dataset(root, version, "mini_train", **kwargs)
    batch = collate_bev_batch(list(itertools.islice(iter(dataset), 2)))
    # What the trainer does: only tensors reach the model.
    return {k: v for k, v in batch.items() if torch.is_tensor(v)}


@pytest.fixture(scope="module")
def real_batch(tiny_nuscenes_root, tiny_nuscenes_version):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["fusion"])
    return _real_batch(tiny_nuscenes_root, tiny_nuscenes_version, config, augment=True)


@pytest.mark.parametrize("modality", ["lidar", "camera", "fusion"])
def test_forward_backward_on_a_real_synthetic_batch(modality, real_batch):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS[modality])
    assert real_batch["images"].shape[1:] == (6, 3, 64, 176)
    assert real_batch["gt_mask"].any(), "the synthetic batch should hold boxes"
    assert not torch.allclose(real_batch["bev_aug_matrix"], torch.eye(4).expand(2, 4, 4)), "expected augmentation"
    inputs = dict(real_batch)
    if modality == "lidar":
        for key in ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar"):
            inputs.pop(key)
    if modality == "camera":
        inputs.pop("points")
    model = BEVDetectorForObjectDetection(config).train()
    out = model(**inputs)
    h, w = config.bev_shape
    assert out.low_level_bev.shape == (2, config.low_bev_channels, h, w)
    assert out.heatmap_logits.shape == (2, config.num_classes, h, w)
    assert torch.isfinite(out.loss) and out.loss_dict["heatmap_loss"] > 0
    # LiDAR points or camera frusta must actually land on the map.
    assert (out.low_level_bev.abs().sum(1) > 0).float().mean() > 0.02
    if modality == "fusion":
        check_gradients_reach_all_parameters(model, out.loss)
    else:
        out.loss.backward()
    model.eval()
    with torch.no_grad():
        detections = model.post_process(model(**inputs), bev_aug_matrix=inputs["bev_aug_matrix"])
    assert len(detections) == 2
    for det in detections:
        assert det["boxes"].shape[1] == 9 and det["scores"].shape == det["labels"].shape
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_lidar_only_batch_without_cameras(tiny_nuscenes_root, tiny_nuscenes_version):
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"])
    batch = _real_batch(tiny_nuscenes_root, tiny_nuscenes_version, config, augment=False, cameras=False)
    assert "images" not in batch
    out = BEVDetectorForObjectDetection(config)(**batch)
    assert torch.isfinite(out.loss)


@pytest.mark.slow
def test_overfitting_one_real_batch_recovers_its_boxes(real_batch):
    """Targets, loss and decoding agree: after overfitting one augmented batch, decoding finds its boxes."""
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["pillar"])
    inputs = {
        k: v for k, v in real_batch.items() if k not in ("images", "intrinsics", "image_aug_matrix", "camera_to_lidar")
    }
    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
    # Batch statistics: 60 steps are too few for BatchNorm running averages at CenterPoint's momentum 0.01.
    with torch.no_grad():
        outputs = model(**inputs)
    # Decoded in the augmented frame of the batch: compare with the batch's own boxes ...
    augmented = model.post_process(outputs, score_threshold=0.3)
    # ... and mapped back to LIDAR_TOP: compare with the boxes moved back by the inverse augmentation.
    original = model.post_process(outputs, score_threshold=0.3, bev_aug_matrix=inputs["bev_aug_matrix"])
    for b in range(2):
        mask = inputs["gt_mask"][b]
        gt_boxes, gt_labels = inputs["gt_boxes"][b][mask], inputs["gt_labels"][b][mask]
        inverse = torch.linalg.inv(inputs["bev_aug_matrix"][b])
        gt_original = gt_boxes[:, :3] @ inverse[:3, :3].T + inverse[:3, 3]
        for dets, centres in ((augmented[b], gt_boxes[:, :3]), (original[b], gt_original)):
            close = torch.cdist(centres[:, :2], dets["boxes"][:, :2]) < 1.0
            matched = (close & (gt_labels[:, None] == dets["labels"][None])).any(1)
            assert matched.float().mean() > 0.8, f"sample {b}: only {int(matched.sum())}/{len(matched)} boxes found"

"""UniDistill BEV detectors (LiDAR, camera, fusion) as transformers `PreTrainedModel`s.

`BEVDetectorModel`: modality encoders (+ fuser) → SECOND BEV backbone → low / high-level BEV maps.
`BEVDetectorForObjectDetection`: + CenterPoint head, detection loss and `post_process` decoding.
All detectors share one BEV grid and channel counts, so any of them can teach any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .bev_backbone import SECONDBackbone
from .camera_encoder import CameraBEVEncoder, depth_loss, lidar_depth_targets
from .centerpoint_head import (
    HEATMAP_PRIOR_BIAS,
    CenterPointHead,
    decode_boxes,
    focal_heatmap_loss,
    heatmap_targets,
    regression_l1_loss,
    regression_targets,
)
from .configuration_bev_detector import BEVDetectorConfig
from .fuser import ChannelAttentionFuser
from .lidar_encoder import build_lidar_encoder
from .sparse_conv import _SparseConvBase


@dataclass
class BEVDetectorModelOutput(ModelOutput):
    """
    Args:
        low_level_bev (`torch.FloatTensor` of shape `(B, C_low, H, W)`): encoder (or fuser) output.
        high_level_bev (`torch.FloatTensor` of shape `(B, C_high, H, W)`): BEV backbone output.
        depth_logits (`torch.FloatTensor` of shape `(B, N_cam, D, h, w)`, *optional*): the camera branch's depth
            logits (camera and fusion detectors).
    """

    low_level_bev: torch.FloatTensor | None = None
    high_level_bev: torch.FloatTensor | None = None
    depth_logits: torch.FloatTensor | None = None


@dataclass
class BEVDetectorOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, *optional*): detection loss (focal heatmap + weighted L1 box terms), when
            `gt_boxes` are given.
        loss_dict (`dict[str, torch.Tensor]`, *optional*): detached scalar terms (`heatmap_loss`, `bbox_loss`).
        low_level_bev (`(B, C_low, H, W)`), high_level_bev (`(B, C_high, H, W)`): BEV features (row = y, col = x).
        heatmap_logits (`(B, num_classes, H, W)`): task heads concatenated in task order (= class order).
        regression (`(B, num_tasks · 10, H, W)`): per task offset 2, height 1, log-size 3, sin/cos 2, velocity 2.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    low_level_bev: torch.FloatTensor | None = None
    high_level_bev: torch.FloatTensor | None = None
    heatmap_logits: torch.FloatTensor | None = None
    regression: torch.FloatTensor | None = None


class BEVDetectorPreTrainedModel(PreTrainedModel):
    config: BEVDetectorConfig
    config_class = BEVDetectorConfig
    base_model_prefix = "model"
    main_input_name = "points"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, _SparseConvBase)):
            if getattr(module, "is_head_output", False):
                init.normal_(module.weight, std=1e-3)
            else:
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                if getattr(module, "is_heatmap_output", False):
                    init.constant_(module.bias, HEATMAP_PRIOR_BIAS)
                else:
                    init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, CameraBEVEncoder):
            # Non-persistent buffers are not in the checkpoint: rebuild them from the config after loading.
            for name, value in module.reset_buffers(self.config).items():
                init.copy_(getattr(module, name), value)


def _check_batch(points, images, config: BEVDetectorConfig) -> int:
    uses_lidar, uses_camera = "lidar" in config.modalities, "camera" in config.modalities
    if uses_lidar and points is None:
        raise ValueError(f"a {config.modalities} detector needs `points` (P, 6) [batch_index, x, y, z, intensity, Δt]")
    if uses_camera and images is None:
        raise ValueError(f"a {config.modalities} detector needs `images` (B, N_cam, 3, H, W)")
    return None if not uses_camera else images.shape[0]


class BEVDetectorModel(BEVDetectorPreTrainedModel):
    """Encoders (+ fuser) and BEV backbone: batch → low-level and high-level BEV maps."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__(config)
        self.lidar_encoder = build_lidar_encoder(config) if "lidar" in config.modalities else None
        self.camera_encoder = CameraBEVEncoder(config) if "camera" in config.modalities else None
        self.fuser = (
            ChannelAttentionFuser(2 * config.low_bev_channels, config.low_bev_channels)
            if len(config.modalities) == 2
            else None
        )
        self.bev_backbone = SECONDBackbone(config)
        self.post_init()

    def forward(
        self,
        points: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        image_aug_matrix: torch.Tensor | None = None,
        camera_to_lidar: torch.Tensor | None = None,
        bev_aug_matrix: torch.Tensor | None = None,
        batch_size: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BEVDetectorModelOutput | tuple:
        r"""
        points (`torch.Tensor` of shape `(P, 6)`):
            `[batch_index, x, y, z, intensity, Δt]`, all samples concatenated, in the (augmented) LIDAR_TOP frame.
        images (`torch.Tensor` of shape `(B, N_cam, 3, H, W)`): RGB in [0, 1].
        intrinsics, image_aug_matrix (`(B, N_cam, 3, 3)`), camera_to_lidar (`(B, N_cam, 4, 4)`),
        bev_aug_matrix (`(B, 4, 4)`): camera geometry, see the shared batch contract.
        batch_size (`int`, *optional*): number of samples for a LiDAR-only batch (default: from the batch
            indices of `points`, or from `bev_aug_matrix`).
        """
        unknown = set(kwargs) - {"gt_boxes", "gt_labels", "gt_mask"}
        if unknown:
            raise TypeError(f"BEVDetectorModel.forward got unexpected arguments {sorted(unknown)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch = _check_batch(points, images, self.config)
        if batch is None:
            if batch_size is not None:
                batch = batch_size
            elif bev_aug_matrix is not None:
                batch = bev_aug_matrix.shape[0]
            else:
                batch = int(points[:, 0].max().item()) + 1 if len(points) else 1
        maps, depth_logits = [], None
        if self.lidar_encoder is not None:
            maps.append(self.lidar_encoder(points, batch))
        if self.camera_encoder is not None:
            camera_bev, depth_logits = self.camera_encoder(
                images, intrinsics, camera_to_lidar, image_aug_matrix, bev_aug_matrix
            )
            maps.append(camera_bev)
        low = self.fuser(maps) if self.fuser is not None else maps[0]
        # Channels-last BEV maps from here on: the 2-D convs of the backbone and head run ~1.3× faster in
        # oneDNN on CPU (and suit tensor cores on GPU); consumers must not assume contiguous NCHW strides.
        low = low.contiguous(memory_format=torch.channels_last)
        high = self.bev_backbone(low)
        if not return_dict:
            return (low, high)
        return BEVDetectorModelOutput(low_level_bev=low, high_level_bev=high, depth_logits=depth_logits)


class BEVDetectorForObjectDetection(BEVDetectorPreTrainedModel):
    """BEV detector with a CenterPoint head: detection loss when `gt_boxes` are given; `post_process` decodes."""

    def __init__(self, config: BEVDetectorConfig):
        super().__init__(config)
        self.model = BEVDetectorModel(config)
        self.head = CenterPointHead(config)
        self.post_init()

    def forward(
        self,
        points: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        image_aug_matrix: torch.Tensor | None = None,
        camera_to_lidar: torch.Tensor | None = None,
        bev_aug_matrix: torch.Tensor | None = None,
        gt_boxes: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
        gt_mask: torch.Tensor | None = None,
        batch_size: int | None = None,
        return_dict: bool | None = None,
    ) -> BEVDetectorOutput | tuple:
        r"""
        points, images, intrinsics, image_aug_matrix, camera_to_lidar, bev_aug_matrix: see `BEVDetectorModel`.
        gt_boxes (`(B, M, 9)`), gt_labels (`(B, M)` int64), gt_mask (`(B, M)` bool):
            targets in the same (augmented) frame as `points`; padded rows (mask False) contribute nothing.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if batch_size is None and gt_boxes is not None:
            batch_size = gt_boxes.shape[0]
        features = self.model(
            points=points,
            images=images,
            intrinsics=intrinsics,
            image_aug_matrix=image_aug_matrix,
            camera_to_lidar=camera_to_lidar,
            bev_aug_matrix=bev_aug_matrix,
            batch_size=batch_size,
            return_dict=True,
        )
        heatmap_logits, regression = self.head(features.high_level_bev)
        loss, loss_dict = None, None
        if gt_boxes is not None:
            loss, loss_dict = self.detection_loss(heatmap_logits, regression, gt_boxes, gt_labels, gt_mask)
            if self.config.depth_loss_weight > 0 and features.depth_logits is not None:
                if points is None:
                    raise ValueError(
                        "depth_loss_weight > 0: training batches of a camera detector need the LiDAR `points` "
                        "(P, 6) for the depth targets"
                    )
                target = lidar_depth_targets(
                    points,
                    tuple(features.depth_logits.shape[-2:]),
                    tuple(images.shape[-2:]),
                    self.config.depth_bins,
                    intrinsics,
                    camera_to_lidar,
                    image_aug_matrix,
                    bev_aug_matrix,
                )
                depth = depth_loss(features.depth_logits, target)
                loss = loss + self.config.depth_loss_weight * depth
                loss_dict["depth_loss"] = depth.detach()
        output = BEVDetectorOutput(
            loss=loss,
            loss_dict=loss_dict,
            low_level_bev=features.low_level_bev,
            high_level_bev=features.high_level_bev,
            heatmap_logits=heatmap_logits,
            regression=regression,
        )
        return output if return_dict else output.to_tuple()

    def detection_loss(
        self,
        heatmap_logits: torch.Tensor,
        regression: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor | None,
        gt_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CenterPoint loss: Σ_tasks focal / #peaks + bbox_loss_weight · Σ_tasks code-weighted L1 / #boxes."""
        config = self.config
        batch = heatmap_logits.shape[0]
        if gt_boxes.ndim != 3 or gt_boxes.shape[0] != batch or gt_boxes.shape[-1] < 9:
            raise ValueError(f"gt_boxes must be ({batch}, M, 9), got {tuple(gt_boxes.shape)}")
        if gt_labels is None or tuple(gt_labels.shape) != tuple(gt_boxes.shape[:2]):
            raise ValueError(f"gt_labels must be {tuple(gt_boxes.shape[:2])} int64 with gt_boxes")
        if gt_mask is None:
            gt_mask = torch.ones(gt_boxes.shape[:2], dtype=torch.bool, device=gt_boxes.device)
        elif tuple(gt_mask.shape) != tuple(gt_boxes.shape[:2]):
            raise ValueError(f"gt_mask must be {tuple(gt_boxes.shape[:2])}, got {tuple(gt_mask.shape)}")
        gt_boxes = gt_boxes.float()
        # The losses run in float32 whatever the forward's precision (bf16 / fp16 autocast): log-sigmoid focal
        # terms and L1 over metres lose too much in 8-bit mantissas.
        heatmap_logits, regression = heatmap_logits.float(), regression.float()
        height, width = heatmap_logits.shape[-2:]
        target, valid = heatmap_targets(
            gt_boxes,
            gt_labels,
            gt_mask,
            num_classes=config.num_classes,
            bev_range=config.bev_range,
            cell_size=config.bev_cell_size,
            bev_shape=(height, width),
            min_overlap=config.min_overlap,
            min_radius=config.min_radius,
        )
        class_to_task = torch.tensor(
            [t for t, task in enumerate(config.tasks) for _ in task], device=heatmap_logits.device
        )
        heatmap_loss = focal_heatmap_loss(heatmap_logits, target, class_to_task)
        col = torch.floor((gt_boxes[..., 0] - config.bev_range[0]) / config.bev_cell_size).long()
        row = torch.floor((gt_boxes[..., 1] - config.bev_range[1]) / config.bev_cell_size).long()
        box_task = class_to_task[gt_labels.clamp(0, config.num_classes - 1)]
        bbox_loss = regression_l1_loss(
            regression,
            regression_targets(gt_boxes, config.bev_range, config.bev_cell_size),
            row * width + col,
            box_task,
            valid,
            torch.tensor(config.code_weights, device=regression.device),
            len(config.tasks),
        )
        # Tasks without a box in this batch leave their regression branch out of the graph; a zero-weighted
        # term keeps it in, so DDP never sees unused parameters.
        bbox_loss = bbox_loss + 0.0 * regression.sum()
        loss = config.heatmap_loss_weight * heatmap_loss + config.bbox_loss_weight * bbox_loss
        return loss, {"heatmap_loss": heatmap_loss.detach(), "bbox_loss": bbox_loss.detach()}

    @torch.no_grad()
    def post_process(
        self,
        outputs: BEVDetectorOutput,
        *,
        score_threshold: float | None = None,
        bev_aug_matrix: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode outputs into per-sample `{"boxes": (K, 9), "scores": (K,), "labels": (K,)}` in LIDAR_TOP.

        Args:
            outputs: this model's output.
            score_threshold: overrides `config.score_threshold`.
            bev_aug_matrix: (B, 4, 4) augmentation the batch was given in; boxes are mapped back through its
                inverse (leave None for un-augmented batches).
        """
        if outputs.heatmap_logits is None or outputs.regression is None:
            raise ValueError("post_process needs outputs with heatmap_logits and regression")
        return decode_boxes(
            outputs.heatmap_logits,
            outputs.regression,
            self.config,
            score_threshold=score_threshold,
            bev_aug_matrix=bev_aug_matrix,
        )


__all__ = [
    "BEVDetectorForObjectDetection",
    "BEVDetectorModel",
    "BEVDetectorModelOutput",
    "BEVDetectorOutput",
    "BEVDetectorPreTrainedModel",
]

"""Helpers for the BEV detector tests: tiny preset names and hand-built contract batches."""

from __future__ import annotations

import math

import torch

TINY_PRESETS = {
    "lidar": "bev_lidar_nuscenes_tiny",
    "pillar": "bev_lidar_pillar_nuscenes_tiny",
    "camera": "bev_camera_nuscenes_tiny",
    "fusion": "bev_fusion_nuscenes_tiny",
}

# One valid box per task (labels 0, 1, 3, 5, 6, 8) so every task branch is trained by the batch.
_BOXES = [
    [[10.0, 5.0, -1.0, 4.5, 1.9, 1.6, 0.3, 2.0, 0.5, 0], [-20.0, 12.0, -0.5, 9.0, 2.8, 3.5, 1.2, 0.0, 0.0, 1],
     [15.0, -25.0, -0.8, 0.5, 2.5, 1.0, 0.0, 0.0, 0.0, 5], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]],
    [[8.0, 8.0, -0.2, 11.0, 2.9, 3.4, -0.7, 4.0, 0.0, 3], [-6.0, -9.0, -1.0, 2.0, 0.8, 1.5, 2.0, 0.0, 0.0, 6],
     [25.0, 3.0, -0.9, 0.7, 0.7, 1.8, 0.0, 1.0, 1.0, 8], [30.0, -30.0, -0.5, 4.0, 2.0, 1.5, 0.5, 1.0, 0.8, 0]],
]  # fmt: skip
# Two cars whose targets lie on the same side of a near-zero prediction, so L1 sign gradients cannot cancel.
_MASK = [[True, True, True, False], [True, True, True, True]]


def ring_cameras(batch: int, num_cams: int, image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Pinhole cameras at the origin looking outward around the ring (camera z forward, x right, y down)."""
    height, width = image_hw
    focal = 0.8 * width
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    extrinsics = []
    for i in range(num_cams):
        yaw = 2 * math.pi * i / num_cams
        c, s = math.cos(yaw), math.sin(yaw)
        forward, left = torch.tensor([c, s, 0.0]), torch.tensor([-s, c, 0.0])
        m = torch.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = -left, torch.tensor([0.0, 0.0, -1.0]), forward  # camera axes in LiDAR frame
        m[:3, 3] = torch.tensor([0.5 * c, 0.5 * s, 1.6])
        extrinsics.append(m)
    return {
        "intrinsics": intrinsics.expand(batch, num_cams, 3, 3).clone(),
        "camera_to_lidar": torch.stack(extrinsics).expand(batch, num_cams, 4, 4).clone(),
        "image_aug_matrix": torch.eye(3).expand(batch, num_cams, 3, 3).clone(),
    }


def make_contract_batch(
    *, num_points: int = 3000, num_cams: int = 2, image_hw: tuple[int, int] = (64, 176), seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch of 2 samples following the shared BEV contract, built by hand."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(_BOXES)
    clouds = []
    for b in range(batch):
        xyz = torch.rand(num_points, 3, generator=gen) * torch.tensor([90.0, 90.0, 6.0]) - torch.tensor(
            [45.0, 45.0, 4.0]
        )
        extra = torch.rand(num_points, 2, generator=gen) * torch.tensor([1.0, 0.5])
        clouds.append(torch.cat([torch.full((num_points, 1), float(b)), xyz, extra], dim=1))
    table = torch.tensor(_BOXES)
    return {
        "points": torch.cat(clouds),
        "images": torch.rand(batch, num_cams, 3, *image_hw, generator=gen),
        **ring_cameras(batch, num_cams, image_hw),
        "bev_aug_matrix": torch.eye(4).expand(batch, 4, 4).clone(),
        "gt_boxes": table[..., :9] * torch.tensor(_MASK).unsqueeze(-1),
        "gt_labels": table[..., 9].long() * torch.tensor(_MASK),
        "gt_mask": torch.tensor(_MASK),
    }

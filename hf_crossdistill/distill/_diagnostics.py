"""Measurements behind the UniDistill loss balancing and its periodic diagnostics (gradient norms, feature scales).

Nothing here runs every step: `UniDistillTrainer` calls these every `loss_balancing_interval` /
`diagnostics_steps` steps. Each gradient is taken with `torch.autograd.grad(..., retain_graph=True)`, so the step's
own backward pass is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..losses.unidistill import bev_sample, box_crucial_points

__all__ = ["crucial_point_feature_statistics", "gradient_norms", "shared_parameter_gradient_norms"]


def gradient_norms(losses: Sequence[torch.Tensor], at: torch.Tensor) -> torch.Tensor:
    """`(len(losses),)` float32: the L2 norm of the gradient of each scalar loss with respect to the tensor `at`.

    A loss that does not depend on `at` (or carries no graph) has norm 0.
    """
    if not isinstance(at, torch.Tensor) or not at.requires_grad:
        raise ValueError("gradient_norms: `at` must be a tensor in the autograd graph (requires_grad=True)")
    norms = []
    for loss in losses:
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"gradient_norms: every loss must be a scalar tensor, got {getattr(loss, 'shape', loss)}")
        grad = None
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, at, retain_graph=True, allow_unused=True)
        norms.append(at.new_zeros((), dtype=torch.float32) if grad is None else torch.linalg.vector_norm(grad.float()))
    return torch.stack(norms)


def shared_parameter_gradient_norms(losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """`(len(losses),)` float32: each loss's gradient norm over the parameters that every loss reaches.

    The shared parameters are those with a gradient from all losses (for a BEV student: the encoder upstream of
    the low-level BEV map, when the feature term is one of the losses); ratios of these norms compare the terms on
    the same weights.
    """
    params = list(params)
    if not params:
        raise ValueError("shared_parameter_gradient_norms: no parameters given")
    grads = []
    for loss in losses:
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(
                "shared_parameter_gradient_norms: every loss must be a scalar tensor, "
                f"got {getattr(loss, 'shape', loss)}"
            )
        if loss.requires_grad:
            grads.append(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))
        else:
            grads.append((None,) * len(params))
    shared = [i for i in range(len(params)) if all(g[i] is not None for g in grads)]
    zero = params[0].new_zeros((), dtype=torch.float32)
    if not shared:
        return torch.stack([zero for _ in grads])
    return torch.stack(
        [
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g[i].float()) for i in shared]))
            for g in grads
        ]
    )


def crucial_point_feature_statistics(
    feature_map: torch.Tensor, gt_boxes: torch.Tensor, gt_mask: torch.Tensor, bev_range: Sequence[float]
) -> dict[str, torch.Tensor]:
    """Scale statistics of a BEV map `(B, C, H, W)` at the 9 crucial points of the valid boxes.

    Returns `rms` (root mean square over points and channels), `channel_std_mean` (mean over channels of each
    channel's standard deviation over the points) and `channel_std_spread` (largest over smallest channel std,
    the smallest clamped at 1e-6): how unevenly the channels are scaled, which an unnormalised L1 term inherits.
    All zeros when the batch has no valid box.
    """
    points = box_crucial_points(torch.where(gt_mask[..., None], gt_boxes[..., :7], 0).float())  # (B, M, 9, 2)
    sampled = bev_sample(feature_map, points, bev_range).float()  # (B, M, 9, C)
    weight = gt_mask[..., None, None].to(sampled.dtype)  # (B, M, 1, 1)
    count = weight.sum() * sampled.shape[-2]
    if float(count) == 0:
        zero = sampled.new_zeros(())
        return {"rms": zero, "channel_std_mean": zero, "channel_std_spread": zero}
    mean = (sampled * weight).sum(dim=(0, 1, 2)) / count  # (C,)
    var = (((sampled - mean) ** 2) * weight).sum(dim=(0, 1, 2)) / count  # (C,)
    std = var.sqrt()
    return {
        "rms": ((sampled**2) * weight).sum().div(count * sampled.shape[-1]).sqrt(),
        "channel_std_mean": std.mean(),
        "channel_std_spread": std.max() / std.min().clamp_min(1e-6),
    }

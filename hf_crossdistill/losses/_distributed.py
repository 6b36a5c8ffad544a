"""Cross-rank reductions for loss normalisers.

A distillation loss is a sum over boxes (or mask cells) divided by a count (or mask sum). Under data parallelism
each rank only sees its share of the boxes, so dividing by the local count gives a different loss (and gradient)
than one process on the same global batch. The losses therefore all-reduce their *denominators* with
[`global_sum`] and scale their local numerator by [`world_size`]: DDP averages gradients over ranks, so
`mean_r(world_size · num_r / Σ den) = Σ num / Σ den`, the single-process loss on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed_world() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default process group (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if _distributed_world() else 1


def global_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over all ranks (a detached copy); the identity in a single process.

    Every rank must call this the same number of times in the same order (it is a collective), so callers never
    skip it on a rank that happens to have no boxes.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"global_sum expects a torch.Tensor, got {type(tensor).__name__}")
    tensor = tensor.detach()
    if not _distributed_world():
        return tensor
    reduced = tensor.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced

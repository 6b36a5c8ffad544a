"""Training-time augmentation of batched event representations (count images, voxel grids, stacked frames)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_event_frames"]


def augment_event_frames(
    frames: torch.Tensor,
    *,
    drop_prob: float = 0.0,
    max_shift: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Event-specific augmentation of a batch of event representations, drawn independently per example.

    - pixel dropout: every pixel loses all its events (every channel) with probability `drop_prob`, as when the
      sensor misses events (refractory period, bandwidth limits, a lower contrast sensitivity);
    - translation: the frame moves by a random integer offset in [-max_shift, max_shift] along each axis, the
      uncovered border is empty (no events come from outside the field of view). For image-level tasks only:
      dense targets would have to move too.

    Values are not rescaled (dropping events lowers the counts, as fewer events would). Differentiable with
    respect to `frames` (translated G_S→T outputs can be augmented inside the graph).

    Args:
        frames (`torch.Tensor` of shape `(B, C, H, W)`): floating-point event representations.
        drop_prob (`float`, *optional*, defaults to 0.0): probability in [0, 1) of dropping each pixel.
        max_shift (`int`, *optional*, defaults to 0): largest translation in pixels (0: none).
        generator (`torch.Generator`, *optional*): random source (CPU); the global one when None.

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)`: `frames` itself when both augmentations are off.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"augment_event_frames: frames must be a (B, C, H, W) tensor, got {shape}")
    if not frames.is_floating_point():
        raise ValueError(f"augment_event_frames: frames must be floating point, got {frames.dtype}")
    if isinstance(drop_prob, bool) or not isinstance(drop_prob, (int, float)) or not math.isfinite(drop_prob):
        raise ValueError(f"augment_event_frames: drop_prob must be a number in [0, 1), got {drop_prob!r}")
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"augment_event_frames: drop_prob must be in [0, 1), got {drop_prob}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"augment_event_frames: max_shift must be an int >= 0, got {max_shift!r}")
    batch, _, height, width = frames.shape
    out = frames
    if drop_prob > 0:
        keep = torch.rand(batch, 1, height, width, generator=generator) >= drop_prob  # (B, 1, H, W)
        out = out * keep.to(device=frames.device, dtype=frames.dtype)
    if max_shift > 0:
        s = max_shift
        shifts = torch.randint(-s, s + 1, (2, batch), generator=generator).to(frames.device)  # (2, B): dy, dx
        padded = F.pad(out, (s, s, s, s))  # (B, C, H + 2s, W + 2s), zeros outside the sensor
        rows = torch.arange(height, device=frames.device)[None, :] + s - shifts[0][:, None]  # (B, H)
        cols = torch.arange(width, device=frames.device)[None, :] + s - shifts[1][:, None]  # (B, W)
        index = torch.arange(batch, device=frames.device)[:, None, None]  # (B, 1, 1)
        # out[b, :, y, x] = frames[b, :, y - dy_b, x - dx_b]; the advanced indices put (B, H, W) first.
        out = padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    return out

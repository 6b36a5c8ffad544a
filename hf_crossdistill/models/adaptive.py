"""Adaptive layers of UniDistill (paper Sec. 4.3.4, Tables 9 and 15): one conv per distilled BEV level.

They map the student's low-level and high-level BEV maps to the teacher's channel counts before the feature and
relation losses. They are training-only: trained with the student (they live in the distillation wrapper, never
in the student) and saved next to the student checkpoint as `distill_extras.safetensors`, not inside it. They
change channels only; teacher and student must share the BEV grid.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BEVAdaptiveLayers", "check_same_grid"]


def check_same_grid(student: torch.Tensor, teacher: torch.Tensor, name: str) -> None:
    """Raise a clear error unless two `(B, C, H, W)` maps share batch and BEV grid (H, W)."""
    if student.ndim != 4 or teacher.ndim != 4:
        raise ValueError(
            f"{name}: BEV maps must be (B, C, H, W), got student {tuple(student.shape)} teacher {tuple(teacher.shape)}"
        )
    if student.shape[0] != teacher.shape[0] or student.shape[-2:] != teacher.shape[-2:]:
        raise ValueError(
            f"{name}: student map {tuple(student.shape)} and teacher map {tuple(teacher.shape)} differ in batch or "
            "BEV grid (H, W); UniDistill needs teacher and student on the same BEV grid (same bev_range and cell "
            "size) — adaptive layers only map channels"
        )


class BEVAdaptiveLayers(nn.Module):
    """One conv on the student's low-level and one on its high-level BEV map (student → teacher channels).

    Args:
        student_low_channels, teacher_low_channels (`int`): channels of the low-level BEV maps.
        student_high_channels, teacher_high_channels (`int`): channels of the high-level BEV maps.
        kernel_size (`int`, defaults to 1): odd conv kernel size (padding keeps the grid).
    """

    def __init__(
        self,
        student_low_channels: int,
        teacher_low_channels: int,
        student_high_channels: int,
        teacher_high_channels: int,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        channels = {
            "student_low_channels": student_low_channels,
            "teacher_low_channels": teacher_low_channels,
            "student_high_channels": student_high_channels,
            "teacher_high_channels": teacher_high_channels,
        }
        for name, value in channels.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"BEVAdaptiveLayers: {name} must be a positive int, got {value!r}")
        if not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"BEVAdaptiveLayers: kernel_size must be a positive odd int, got {kernel_size!r}")
        padding = kernel_size // 2
        self.low = nn.Conv2d(student_low_channels, teacher_low_channels, kernel_size, padding=padding)
        self.high = nn.Conv2d(student_high_channels, teacher_high_channels, kernel_size, padding=padding)

    def forward(self, low_level_bev: torch.Tensor, high_level_bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted `(low, high)` maps: `(B, C_T_low, H, W)` and `(B, C_T_high, H, W)`."""
        for name, tensor, conv in (
            ("low_level_bev", low_level_bev, self.low),
            ("high_level_bev", high_level_bev, self.high),
        ):
            if tensor.ndim != 4 or tensor.shape[1] != conv.in_channels:
                raise ValueError(
                    f"BEVAdaptiveLayers: {name} must be (B, {conv.in_channels}, H, W), got {tuple(tensor.shape)}"
                )
        return self.low(low_level_bev), self.high(high_level_bev)

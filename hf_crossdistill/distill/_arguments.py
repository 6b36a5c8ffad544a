"""Recipe → argument-parser defaults shared by the UniDistill and EvDistill entry points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def has_accelerator() -> bool:
    """Whether torch sees a CUDA or XPU device (what transformers requires for `bf16` without `use_cpu`)."""
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def set_recipe_defaults(parser, recipe: Mapping[str, Any], argv: Sequence[str]) -> None:
    """`parser.set_defaults(**recipe)`, plus `use_cpu=True` for a bf16 recipe on a machine without an accelerator.

    transformers refuses `bf16` there unless `use_cpu` is set; a bf16 recipe then means CPU autocast (fast on CPUs
    with AVX512-BF16 / AMX), so the run says so instead of failing. An explicit `--use_cpu` on the command line wins.
    """
    parser.set_defaults(**recipe)
    if recipe.get("bf16") and "--use_cpu" not in argv and not has_accelerator():
        print("[distill] bf16 recipe on a machine without an accelerator: training on the CPU (use_cpu=True)")
        parser.set_defaults(use_cpu=True)

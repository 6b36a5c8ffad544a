"""distill: Trainer subclasses and their TrainingArguments dataclasses."""

from .unidistill_config import PAPER_LOSS_WEIGHTS, UniDistillConfig
from .unidistill_trainer import (
    DISTILL_EXTRAS_NAME,
    NuScenesEvaluation,
    UniDistillModel,
    UniDistillModelOutput,
    UniDistillTrainer,
    check_teacher_student_compatible,
    load_pretrained_strict,
    load_state_dict_strict,
)

__all__ = [
    "DISTILL_EXTRAS_NAME",
    "NuScenesEvaluation",
    "PAPER_LOSS_WEIGHTS",
    "UniDistillConfig",
    "UniDistillModel",
    "UniDistillModelOutput",
    "UniDistillTrainer",
    "check_teacher_student_compatible",
    "load_pretrained_strict",
    "load_state_dict_strict",
]

"""distill: Trainer subclasses and their TrainingArguments dataclasses."""

from .evdistill_config import EvDistillConfig
from .evdistill_trainer import EvDistillModel, EvDistillPairs, EvDistillTrainer, build_evdistill_model
from .unidistill_config import PAPER_LOSS_WEIGHTS, UniDistillConfig
from .unidistill_trainer import (
    DISTILL_EXTRAS_NAME,
    NuScenesEvaluation,
    UniDistillModel,
    UniDistillModelOutput,
    UniDistillTrainer,
    check_teacher_student_compatible,
    load_matching_weights,
    load_pretrained_strict,
    load_state_dict_strict,
)

__all__ = [
    "EvDistillConfig",
    "EvDistillModel",
    "EvDistillPairs",
    "EvDistillTrainer",
    "build_evdistill_model",
    "DISTILL_EXTRAS_NAME",
    "NuScenesEvaluation",
    "PAPER_LOSS_WEIGHTS",
    "UniDistillConfig",
    "UniDistillModel",
    "UniDistillModelOutput",
    "UniDistillTrainer",
    "check_teacher_student_compatible",
    "load_matching_weights",
    "load_pretrained_strict",
    "load_state_dict_strict",
]

"""Training arguments of UniDistill (BEV detector → BEV detector distillation) on top of `TrainingArguments`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ._nonfinite import NONFINITE_HELP, check_nonfinite_limit

__all__ = ["FEATURE_REGIONS", "LOSS_BALANCING", "PAPER_LOSS_WEIGHTS", "UniDistillConfig"]

LOSS_BALANCING = ("none", "gradient_share")
FEATURE_REGIONS = ("crucial_points", "foreground")

# (λ_fea, λ_rel, λ_resp) per distillation path, paper Sec. 4.2 (teacher modality → student modality).
PAPER_LOSS_WEIGHTS = {
    "lidar_camera_to_lidar": (10.0, 1.0, 10.0),
    "lidar_camera_to_camera": (10.0, 5.0, 10.0),
    "camera_to_lidar": (10.0, 5.0, 1.0),
    "lidar_to_camera": (100.0, 40.0, 10.0),
}


@dataclass(kw_only=True)
class UniDistillConfig(TrainingArguments):
    r"""
    `TrainingArguments` for [`UniDistillTrainer`]: the teacher checkpoint and the UniDistill loss settings
    (paper eq. 3–8). With no teacher the trainer trains the detector on its detection loss alone (how teachers are
    made). The paper's weights per path are in `PAPER_LOSS_WEIGHTS`; recipes in `hub_configs/recipes/` set them.
    """

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Folder (or Hub id) of the teacher's save_pretrained checkpoint, loaded strictly (missing or "
            "unexpected keys are an error). None: supervised training of the student alone."
        },
    )
    lambda_feature: float = field(
        default=10.0, metadata={"help": "λ1, weight of the feature distillation loss (eq. 3, low-level BEV)."}
    )
    lambda_relation: float = field(
        default=5.0, metadata={"help": "λ2, weight of the relation distillation loss (eq. 4-5, high-level BEV)."}
    )
    lambda_response: float = field(
        default=10.0, metadata={"help": "λ3, weight of the response distillation loss (eq. 6-7, heads)."}
    )
    use_adaptive_layers: bool = field(
        default=False,
        metadata={
            "help": "Put one trainable conv on the student's low- and high-level BEV maps (student → teacher "
            "channels) before the feature and relation losses; the paper uses them on the camera → LiDAR path. "
            "Required when teacher and student BEV channels differ."
        },
    )
    adaptive_kernel_size: int = field(default=1, metadata={"help": "Kernel size of the adaptive convs (odd)."})
    teacher_temperature: float = field(
        default=2.0, metadata={"help": "Temperature of the teacher heatmap logits in the response loss (authors: 2)."}
    )
    student_temperature: float = field(
        default=1.0, metadata={"help": "Temperature of the student heatmap logits in the response loss (authors: 1)."}
    )
    response_min_overlap: float = field(
        default=0.7, metadata={"help": "min_overlap of gaussian_radius for the response mask (authors: 0.7)."}
    )
    response_min_radius: int = field(
        default=0, metadata={"help": "Minimum radius in cells of the response mask (authors: 0; CenterPoint: 2)."}
    )
    feature_normalization: str = field(
        default="none",
        metadata={
            "help": "Features compared by the feature term: 'none' (paper eq. 3, raw features), 'layer' (each "
            "sampled C-vector standardised over its channels) or 'channel' (standardised with the teacher's "
            "per-channel statistics). Not in the paper: makes the term independent of the two networks' scales."
        },
    )
    feature_region: str = field(
        default="crucial_points",
        metadata={
            "help": "Where the feature term compares low-level BEV features: 'crucial_points' (paper eq. 3: the 9 "
            "points of each box) or 'foreground' (every cell, weighted by a Gaussian box mask with CenterPoint's "
            "heatmap settings, as BEVDistill's dense imitation). Not in the paper."
        },
    )
    kd_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Ramp every distillation weight linearly from 0 to its value over the first N optimiser steps "
            "(0: full weight from the start, as in the paper), so the student's own heads form first."
        },
    )
    loss_balancing: str = field(
        default="none",
        metadata={
            "help": "'none': λ1-λ3 weight the terms (paper eq. 8). 'gradient_share': λ1-λ3 are read as target "
            "gradient shares: every loss_balancing_interval steps each term's weight is set so that the norm of "
            "its gradient at the student's low-level BEV map (the last tensor every term reaches) is λ times the "
            "detection loss's there. Not in the paper: one setting that carries across model sizes."
        },
    )
    loss_balancing_interval: int = field(
        default=50, metadata={"help": "Steps between two measurements of the gradient norms of loss_balancing."}
    )
    diagnostics_steps: int = field(
        default=0,
        metadata={
            "help": "Every N steps (0: never) log each weighted term's gradient norm relative to the detection "
            "loss's (at the low- and high-level BEV maps and on the student parameters every term reaches) and "
            "the scale / channel spread of teacher and student features at the crucial points (diag_* keys)."
        },
    )
    # Batches are dicts of BEV tensors the wrapper forwards by name: never drop "unused" columns.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the detector takes the whole collated batch."}
    )
    # Raw heatmaps are not worth gathering in `evaluate`: the trainer decodes boxes and scores them with the official
    # nuScenes metrics itself (see `NuScenesEvaluation`).
    prediction_loss_only: bool = field(
        default=True,
        metadata={"help": "Do not gather raw outputs in `evaluate` (the nuScenes metrics come from decoded boxes)."},
    )
    label_names: list[str] | None = field(
        default_factory=lambda: ["gt_boxes", "gt_labels", "gt_mask"],
        metadata={"help": "Batch keys holding the targets (so `evaluate` computes the losses)."},
    )

    max_consecutive_nonfinite_steps: int = field(default=10, metadata={"help": NONFINITE_HELP})

    def __post_init__(self):
        check_nonfinite_limit(self.max_consecutive_nonfinite_steps, "UniDistillConfig")
        for name in ("lambda_feature", "lambda_relation", "lambda_response"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"UniDistillConfig.{name} must be a finite number >= 0, got {value!r}")
            setattr(self, name, float(value))
        for name in ("teacher_temperature", "student_temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"UniDistillConfig.{name} must be a positive number, got {value!r}")
        if not 0.0 < float(self.response_min_overlap) < 1.0:
            raise ValueError(
                f"UniDistillConfig.response_min_overlap must be in (0, 1), got {self.response_min_overlap}"
            )
        if not isinstance(self.response_min_radius, int) or self.response_min_radius < 0:
            raise ValueError(
                f"UniDistillConfig.response_min_radius must be an int >= 0, got {self.response_min_radius!r}"
            )
        if (
            not isinstance(self.adaptive_kernel_size, int)
            or self.adaptive_kernel_size < 1
            or self.adaptive_kernel_size % 2 == 0
        ):
            raise ValueError(
                f"UniDistillConfig.adaptive_kernel_size must be a positive odd int, got {self.adaptive_kernel_size!r}"
            )
        from ..losses.unidistill import FEATURE_NORMALIZATIONS

        if self.feature_normalization not in FEATURE_NORMALIZATIONS:
            raise ValueError(
                f"UniDistillConfig.feature_normalization must be one of {FEATURE_NORMALIZATIONS}, "
                f"got {self.feature_normalization!r}"
            )
        if self.feature_region not in FEATURE_REGIONS:
            raise ValueError(
                f"UniDistillConfig.feature_region must be one of {FEATURE_REGIONS}, got {self.feature_region!r}"
            )
        if self.loss_balancing not in LOSS_BALANCING:
            raise ValueError(
                f"UniDistillConfig.loss_balancing must be one of {LOSS_BALANCING}, got {self.loss_balancing!r}"
            )
        for name, minimum in (("kd_warmup_steps", 0), ("loss_balancing_interval", 1), ("diagnostics_steps", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"UniDistillConfig.{name} must be an int >= {minimum}, got {value!r}")
        if self.remove_unused_columns:
            raise ValueError(
                "UniDistillConfig.remove_unused_columns must be False: the detector takes the whole collated batch"
            )
        if self.use_adaptive_layers:
            if self.teacher_model_name_or_path is None:
                raise ValueError("UniDistillConfig.use_adaptive_layers needs a teacher (teacher_model_name_or_path)")
            if self.lambda_feature == 0 or self.lambda_relation == 0:
                # An adaptive conv whose loss is off gets no gradient, which DDP reports as an unused parameter.
                raise ValueError(
                    "UniDistillConfig.use_adaptive_layers needs lambda_feature > 0 and lambda_relation > 0 "
                    f"(got {self.lambda_feature}, {self.lambda_relation})"
                )
        if self.accelerator_config is None:
            # The collated batch carries `sample_token` strings, which dispatching batches from rank 0 cannot send.
            self.accelerator_config = {"dispatch_batches": False}
        super().__post_init__()

    @property
    def loss_weights(self) -> tuple[float, float, float]:
        """`(λ_fea, λ_rel, λ_resp)`."""
        return self.lambda_feature, self.lambda_relation, self.lambda_response

    @property
    def distills(self) -> bool:
        """Whether a teacher is used (False: supervised training on the detection loss alone)."""
        return self.teacher_model_name_or_path is not None

"""Training arguments of EvDistill (image teacher → event student, Wang et al. CVPR 2021) on `TrainingArguments`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..models.translation.configuration_translation import EDGE_PRIORS, is_positive_odd_int
from ._nonfinite import NONFINITE_HELP, check_nonfinite_limit

__all__ = ["EVDISTILL_MODES", "EvDistillConfig"]

EVDISTILL_MODES = ("evdistill", "pseudo_labels", "events_aps_kd")

_WEIGHTS = (
    "lambda_ce_event",
    "lambda_ce_aps",
    "lambda_bmr_pixel",
    "lambda_bmr_adversarial",
    "lambda_bmr_discriminator",
    "lambda_bmr_cycle",
    "lambda_bmr_dsc",
    "lambda_da",
    "lambda_ag",
    "lambda_md",
)


def _weight(default: float, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass(kw_only=True)
class EvDistillConfig(TrainingArguments):
    r"""
    `TrainingArguments` for [`EvDistillTrainer`]: which terms of eq. 9 run, their weights and the BMR module sizes.

    Batches are dicts with `event_pixel_values` (B, C_ev, H, W) (always), `aps_pixel_values` (B, C_aps, H, W)
    (paired APS frames, when the camera has them), `source_pixel_values` (B, 3, H, W) and `source_labels`
    ((B, H, W) for segmentation, (B,) for recognition) from the labelled, unpaired image data set.

    Modes: `"evdistill"` (the method), `"pseudo_labels"` (baseline: S_ev trained with cross-entropy on argmax
    T(x_aps)), `"events_aps_kd"` (baseline "KD with only events and APS frames": no source data, no BMR; eq. 5,
    eq. 6 between T(x_aps) and S_ev(e), and eq. 7).
    """

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "save_pretrained folder of the frozen image teacher T, loaded strictly. Required."},
    )
    mode: str = field(default="evdistill", metadata={"help": f"One of {EVDISTILL_MODES}."})
    use_bmr: bool = field(
        default=True,
        metadata={"help": "Build the generators and discriminators (False: the 'w/o BMR' ablation of Table 6)."},
    )
    aps_student_config: str | None = field(
        default=None,
        metadata={
            "help": "S_aps (trained alongside, eq. 4 and 8): a preset name, a config.json or a folder. None: no APS "
            "student."
        },
    )
    # Loss weights (eq. 9: L = L_CE + L_BMR + λ1 L_DA + λ2 L_AG + λ3 L_MD). 0 switches a term off.
    lambda_ce_event: float = _weight(1.0, "L_CE of S_ev on G_S→T(x_s) with the source labels (DSC supervision).")
    lambda_ce_aps: float = _weight(1.0, "L_CE of S_aps on x_s with the source labels.")
    lambda_bmr_pixel: float = _weight(10.0, "Eq. 1, L1 between G_T→S(e) and the APS frame.")
    lambda_bmr_adversarial: float = _weight(1.0, "Eq. 2, generator side, both translation directions.")
    lambda_bmr_discriminator: float = _weight(1.0, "Eq. 2, discriminator side.")
    lambda_bmr_cycle: float = _weight(10.0, "Cycle consistency of both translation directions (CycleGAN: 10).")
    lambda_bmr_dsc: float = _weight(1.0, "Eq. 3, KL[T(G_T→S(e)) ‖ S_ev(e)], also trains G_T→S through T.")
    lambda_da: float = _weight(1.0, "λ1: eq. 4, 5 and 6 (distribution adaptation).")
    lambda_ag: float = _weight(1.0, "λ2: eq. 7 (affinity graph).")
    lambda_md: float = _weight(1.0, "λ3: eq. 8 (mutual distillation between S_ev and S_aps).")
    bmr_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Optimiser steps at the start that train only the translation (eq. 1, 2, cycle): the student "
            "terms wait until G_S→T / G_T→S produce usable outputs. 0: every term from step 0."
        },
    )
    detach_translated_source: bool = field(
        default=False,
        metadata={
            "help": "Stop the gradient of S_ev's CE on G_S→T(x_s) at the generator: G_S→T then learns from eq. 2 and "
            "the cycle only, instead of also drawing whatever makes the student's CE small."
        },
    )
    dsc_trains_generator: bool = field(
        default=True,
        metadata={
            "help": "Let eq. 3 train G_T→S through the frozen teacher (Fig. 3). False: G_T→S learns from eq. 1, 2 "
            "and the cycle only and T(G_T→S(e)) is a fixed target for S_ev, which removes the shortcut where G_T→S "
            "and S_ev agree on one class for every input (seen on events-only recognition, where no eq. 1 anchors "
            "G_T→S)."
        },
    )
    temperature: float = field(default=1.0, metadata={"help": "τ of every KL term (each scaled by τ²)."})
    ag_kernel_size: int = field(default=3, metadata={"help": "Neighbourhood k of the affinity graph (σ = k²)."})
    gan_mode: str = field(default="bce", metadata={"help": "'bce' (eq. 2, non-saturating) or 'lsgan'."})
    conditioning: str = field(
        default="outer", metadata={"help": "Conditional features of h: 'outer' (CDAN multilinear) or 'concat'."}
    )
    gradient_reversal_scale: float = field(
        default=1.0, metadata={"help": "Scale of the reversed gradient from h into the task networks."}
    )
    generator_base_channels: int = field(default=64, metadata={"help": "BMR generator width (CycleGAN: 64)."})
    generator_residual_blocks: int = field(default=9, metadata={"help": "BMR generator residual blocks."})
    generator_image_activation: str = field(
        default="none", metadata={"help": "Output activation of G_T→S (match the teacher's input normalisation)."}
    )
    generator_events_activation: str = field(
        default="none", metadata={"help": "Output activation of G_S→T ('sigmoid' for max-normalised counts)."}
    )
    generator_events_edge_prior: str = field(
        default="none",
        metadata={
            "help": "Physics prior of G_S→T (image → events): 'log_gradient' makes G_S→T a learned residual on the "
            "Sobel magnitude of the log luminance spread over the sensor motion (where events fire when the sensor "
            "moves), 'none' a plain generator. See `BMRGeneratorConfig.edge_prior`."
        },
    )
    generator_events_edge_prior_spread: int = field(
        default=3, metadata={"help": "Odd box-filter side spreading the edge prior over the sensor motion (pixels)."}
    )
    event_pixel_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Training augmentation of S_ev's inputs, real events and G_S→T(x_s) alike: probability of "
            "dropping all events of a pixel. 0: off."
        },
    )
    event_max_shift: int = field(
        default=0,
        metadata={
            "help": "Training augmentation of S_ev's inputs (real and translated events): random translation by up "
            "to this many pixels, empty border. Recognition only (dense targets would not move). 0: off."
        },
    )
    discriminator_base_channels: int = field(default=64, metadata={"help": "PatchGAN width."})
    discriminator_layers: int = field(default=3, metadata={"help": "PatchGAN strided layers (3: 70x70 patches)."})
    modality_hidden_channels: int = field(default=256, metadata={"help": "Hidden width of the modality classifier h."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the wrapper takes the whole batch dict."}
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluate losses (mIoU via scripts)."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["source_labels"], metadata={"help": "Batch keys holding targets."}
    )

    max_consecutive_nonfinite_steps: int = field(default=10, metadata={"help": NONFINITE_HELP})

    def __post_init__(self):
        check_nonfinite_limit(self.max_consecutive_nonfinite_steps, "EvDistillConfig")
        if self.mode not in EVDISTILL_MODES:
            raise ValueError(f"EvDistillConfig.mode must be one of {EVDISTILL_MODES}, got {self.mode!r}")
        for name in _WEIGHTS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"EvDistillConfig.{name} must be a finite number >= 0, got {value!r}")
            setattr(self, name, float(value))
        if not isinstance(self.bmr_warmup_steps, int) or self.bmr_warmup_steps < 0:
            raise ValueError(f"EvDistillConfig.bmr_warmup_steps must be an int >= 0, got {self.bmr_warmup_steps!r}")
        if self.generator_events_edge_prior not in EDGE_PRIORS:
            raise ValueError(
                f"EvDistillConfig.generator_events_edge_prior must be one of {EDGE_PRIORS}, got "
                f"{self.generator_events_edge_prior!r}"
            )
        spread = self.generator_events_edge_prior_spread
        if not is_positive_odd_int(spread):
            raise ValueError(
                f"EvDistillConfig.generator_events_edge_prior_spread must be a positive odd int, got {spread!r}"
            )
        dropout = self.event_pixel_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"EvDistillConfig.event_pixel_dropout must be in [0, 1), got {dropout!r}")
        self.event_pixel_dropout = float(dropout)
        shift = self.event_max_shift
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
            raise ValueError(f"EvDistillConfig.event_max_shift must be an int >= 0, got {shift!r}")
        if not self.temperature > 0:
            raise ValueError(f"EvDistillConfig.temperature must be > 0, got {self.temperature}")
        if self.ag_kernel_size < 1 or self.ag_kernel_size % 2 == 0:
            raise ValueError(f"EvDistillConfig.ag_kernel_size must be a positive odd int, got {self.ag_kernel_size}")
        if self.gan_mode not in ("bce", "lsgan"):
            raise ValueError(f"EvDistillConfig.gan_mode must be 'bce' or 'lsgan', got {self.gan_mode!r}")
        if self.conditioning not in ("outer", "concat"):
            raise ValueError(f"EvDistillConfig.conditioning must be 'outer' or 'concat', got {self.conditioning!r}")
        if self.gradient_reversal_scale < 0:
            raise ValueError("EvDistillConfig.gradient_reversal_scale must be >= 0")
        if self.remove_unused_columns:
            raise ValueError("EvDistillConfig.remove_unused_columns must be False (the wrapper takes the whole batch)")
        if self.mode != "evdistill" and (self.use_bmr or self.aps_student_config is not None):
            raise ValueError(
                f"EvDistillConfig: mode {self.mode!r} is a baseline without BMR and S_aps; set use_bmr=False and "
                "aps_student_config=None"
            )
        super().__post_init__()

    @property
    def loss_weights(self) -> dict[str, float]:
        """Weight of every term of `hf_crossdistill.losses.evdistill.EVDISTILL_TERMS` (λ1 spread over eq. 4–6)."""
        return {
            "ce_event": self.lambda_ce_event,
            "ce_aps": self.lambda_ce_aps,
            "ce_pseudo": 1.0,
            "bmr_pixel": self.lambda_bmr_pixel,
            "bmr_adversarial": self.lambda_bmr_adversarial,
            "bmr_discriminator": self.lambda_bmr_discriminator,
            "bmr_cycle": self.lambda_bmr_cycle,
            "bmr_dsc": self.lambda_bmr_dsc,
            "da_aps": self.lambda_da,
            "da_event": self.lambda_da,
            "da_match": self.lambda_da,
            "ag": self.lambda_ag,
            "md": self.lambda_md,
        }

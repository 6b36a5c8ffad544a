"""UniDistill trainer: a frozen BEV teacher distils into a BEV student (paper eq. 8).

    L = L_det + λ1 · L_fea + λ2 · L_rel + λ3 · L_resp

The trained module is [`UniDistillModel`]: the student plus, optionally, the adaptive layers, all run inside its
`forward` (DDP needs every trainable parameter used in the wrapped module's forward). The teacher is loaded
strictly from a checkpoint, frozen, kept in eval mode, prepared with `evaluation_mode=True` and run under
`torch.no_grad()`; it is never a submodule of the trained module, so it is neither in the optimiser nor in
checkpoints. A checkpoint is the student's `save_pretrained` folder plus `distill_extras.safetensors` (the
adaptive layers, when used); `resume_from_checkpoint` restores both. With no teacher the trainer trains the
detector on its detection loss alone.

With a [`NuScenesEvaluation`] the trainer's `evaluate` also decodes the student's boxes (`post_process`) on the
evaluation split, gathers them from every rank (each sample once), scores them with the official nuScenes
detection evaluation and reports `eval_mAP`, `eval_NDS`, the true-positive errors and per-class APs next to the
losses (so `metric_for_best_model="mAP"` works); the devkit's submission and metrics JSON land in
`<output_dir>/nuscenes_eval/step-<N>/`.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import ModelOutput

from ..losses.unidistill import (
    feature_distillation_loss,
    foreground_feature_distillation_loss,
    relation_distillation_loss,
    response_distillation_loss,
)
from ..models.adaptive import BEVAdaptiveLayers, check_same_grid
from ._diagnostics import crucial_point_feature_statistics, gradient_norms, shared_parameter_gradient_norms
from ._distributed import destroy_process_group_at_exit
from ._nonfinite import NonFiniteGuardMixin
from ._term_logging import TermLoggingMixin
from .unidistill_config import UniDistillConfig

__all__ = [
    "DISTILL_EXTRAS_NAME",
    "NuScenesEvaluation",
    "UniDistillModel",
    "UniDistillModelOutput",
    "UniDistillTrainer",
    "check_teacher_student_compatible",
    "load_matching_weights",
    "load_state_dict_strict",
    "load_pretrained_strict",
]

DISTILL_EXTRAS_NAME = "distill_extras.safetensors"
_ADAPTIVE_PREFIX = "adaptive_layers."
_BALANCING_PREFIX = "loss_balancing."
_WEIGHTS_NAME = "model.safetensors"
_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


# ----------------------------------------------------------------------------------------------------------------
# Strict checkpoint loading
# ----------------------------------------------------------------------------------------------------------------


def _read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / _WEIGHTS_NAME, folder / _WEIGHTS_INDEX_NAME
    if single.is_file():
        return safetensors.torch.load_file(str(single), device="cpu")
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(safetensors.torch.load_file(str(folder / shard), device="cpu"))
        return state
    raise FileNotFoundError(f"{folder}: no {_WEIGHTS_NAME} or {_WEIGHTS_INDEX_NAME} (not a save_pretrained folder)")


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `state` under `prefix`, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state_dict` into `module`, raising if any key is missing, unexpected or of the wrong shape."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
            if keys:
                details.append(f"{len(keys)} {label} keys (first: {keys[:5]})")
        raise ValueError(f"{source} does not match {type(module).__name__}: " + "; ".join(details))
    module.load_state_dict(dict(state_dict), strict=True)


def load_matching_weights(module: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise `module` from the tensors of a `save_pretrained` folder whose names and shapes agree.

    For a detector that shares parts with another one (a fusion detector from a LiDAR detector, as BEVFusion
    trains): every tensor of the folder must either match a tensor of `module` by name and shape or be
    reported; nothing matching at all is an error (a wrong folder must not pass silently).

    Returns:
        `{"loaded": [...], "not_in_checkpoint": [...], "not_in_model": [...], "shape_mismatched": [...]}`.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"student_init {path!r}: not a save_pretrained folder")
    state = _read_safetensors_folder(folder)
    expected = module.state_dict()
    common = set(state) & set(expected)
    loaded = sorted(k for k in common if state[k].shape == expected[k].shape)
    report = {
        "loaded": loaded,
        "not_in_checkpoint": sorted(set(expected) - set(state)),
        "not_in_model": sorted(set(state) - set(expected)),
        "shape_mismatched": sorted(common - set(loaded)),
    }
    if not loaded:
        raise ValueError(f"student_init {folder}: no tensor matches {type(module).__name__} by name and shape")
    module.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return report


def load_pretrained_strict(model_cls: type[PreTrainedModel], path: str | os.PathLike) -> PreTrainedModel:
    """Build `model_cls` from the config of a `save_pretrained` folder and load its weights strictly.

    Unlike `from_pretrained`, nothing is renamed, skipped or randomly initialised: a wrongly keyed checkpoint (the
    authors' `strict=False` silently gave a random teacher) is an error naming the offending keys. A Hub id is
    resolved to a local snapshot first.
    """
    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors"]))
        except Exception as err:  # noqa: BLE001 - re-raised with the path that failed
            raise FileNotFoundError(f"teacher checkpoint {path!r} is neither a folder nor a reachable Hub id") from err
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a save_pretrained folder)")
    config = model_cls.config_class.from_pretrained(str(folder))
    model = model_cls(config)
    load_state_dict_strict(model, _read_safetensors_folder(folder), f"checkpoint {folder}")
    return model


# ----------------------------------------------------------------------------------------------------------------
# The trained module
# ----------------------------------------------------------------------------------------------------------------


def _forward_kwargs(module: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The tensor entries of `inputs` that `module.forward` accepts (all of them when it takes **kwargs)."""
    tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return tensors
    return {k: v for k, v in tensors.items() if k in params}


@dataclass
class UniDistillModelOutput(ModelOutput):
    """Output of [`UniDistillModel`].

    Args:
        loss: the student's detection loss (L_det).
        student_output: the student's full `BEVDetectorOutput`.
        low_level_bev, high_level_bev: the student's BEV maps after the adaptive layers (unchanged without them).
    """

    loss: torch.Tensor | None = None
    student_output: ModelOutput | None = None
    low_level_bev: torch.Tensor | None = None
    high_level_bev: torch.Tensor | None = None


class UniDistillModel(nn.Module):
    """Student + adaptive layers: everything that trains, in one module whose forward runs all of it."""

    # The detection loss is a per-batch mean; the Trainer must not pass num_items_in_batch.
    accepts_loss_kwargs = False

    def __init__(self, student: PreTrainedModel, adaptive_layers: BEVAdaptiveLayers | None = None) -> None:
        super().__init__()
        if not isinstance(student, nn.Module):
            raise TypeError(f"UniDistillModel: student must be an nn.Module, got {type(student).__name__}")
        self.student = student
        self.adaptive_layers = adaptive_layers
        # Trainer's model card / push_to_hub read `model.config`.
        self.config = student.config
        # The student's BEV maps of the last forward, as the student's own graph holds them. Under mixed precision
        # accelerate hands the caller float32 copies of the outputs, and the detection loss (computed inside the
        # student) never sees those copies: gradients "at the low-level BEV map" (loss balancing, diagnostics)
        # must be taken here, at the last tensors that every loss term reaches.
        self.shared_bev: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, **inputs: Any) -> UniDistillModelOutput:
        output = self.student(**_forward_kwargs(self.student, inputs))
        low, high = output.low_level_bev, output.high_level_bev
        self.shared_bev = (low, high) if torch.is_grad_enabled() else None
        if self.adaptive_layers is not None:
            low, high = self.adaptive_layers(low, high)
        return UniDistillModelOutput(loss=output.loss, student_output=output, low_level_bev=low, high_level_bev=high)


def check_teacher_student_compatible(teacher_config: Any, student_config: Any, *, use_adaptive_layers: bool) -> None:
    """Raise a clear error unless the teacher can teach the student (same BEV grid; channels via adaptive layers).

    The response loss compares heatmaps and regression maps cell by cell, so class lists and task splits must match.
    """
    problems = []
    for name in ("bev_range", "bev_shape"):
        t, s = getattr(teacher_config, name, None), getattr(student_config, name, None)
        if t is None or s is None:
            problems.append(f"config has no {name!r}")
        elif tuple(float(v) for v in t) != tuple(float(v) for v in s):
            problems.append(
                f"{name} differs (teacher {tuple(t)}, student {tuple(s)}); adaptive layers only map channels"
            )
    for name in ("class_names", "tasks"):
        t, s = getattr(teacher_config, name, None), getattr(student_config, name, None)
        if t != s:
            problems.append(
                f"{name} differs (teacher {t}, student {s}); the response loss compares heads cell by cell"
            )
    if not use_adaptive_layers:
        for name in ("low_bev_channels", "high_bev_channels"):
            t, s = getattr(teacher_config, name, None), getattr(student_config, name, None)
            if t != s:
                problems.append(f"{name} differs (teacher {t}, student {s}); enable use_adaptive_layers")
    if problems:
        raise ValueError("teacher and student are not compatible for UniDistill: " + "; ".join(problems))


class _TensorFirstCollator:
    """Puts `gt_boxes` first in the batch so Trainer's `find_batch_size` reads B, not the point count."""

    def __init__(self, collate_fn: Callable[[list], dict]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list) -> dict:
        batch = self.collate_fn(samples)
        if isinstance(batch, dict) and "gt_boxes" in batch:
            batch = {"gt_boxes": batch["gt_boxes"], **{k: v for k, v in batch.items() if k != "gt_boxes"}}
        return batch


@dataclass(frozen=True)
class NuScenesEvaluation:
    """Which ground truth the official nuScenes evaluation of [`UniDistillTrainer.evaluate`] scores against.

    Args:
        dataroot: the nuScenes dataroot the evaluation dataset streams from.
        version: its version (`"v1.0-mini"`, `"v1.0-trainval"`).
        eval_set: the devkit split the evaluation dataset holds (`"mini_val"`, `"val"`, ...); every key frame of
            it must be in the evaluation dataset (missing ones count as "no detections").
        score_threshold: decoding threshold; None uses the student config's `score_threshold`.
    """

    dataroot: str
    version: str
    eval_set: str
    score_threshold: float | None = None

    def __post_init__(self):
        for name in ("dataroot", "version", "eval_set"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"NuScenesEvaluation.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.score_threshold is not None and not 0.0 <= float(self.score_threshold) < 1.0:
            raise ValueError(f"NuScenesEvaluation.score_threshold must be in [0, 1), got {self.score_threshold}")


# ----------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------


class UniDistillTrainer(NonFiniteGuardMixin, TermLoggingMixin, Trainer):
    """`Trainer` for UniDistill (paper eq. 8) and for supervised training of BEV detectors (no teacher).

    Args:
        model (`PreTrainedModel`): the student detector (a `BEVDetectorForObjectDetection`).
        args ([`UniDistillConfig`]): training arguments and the loss settings.
        teacher (`nn.Module`, *optional*): an already loaded teacher; by default it is loaded strictly from
            `args.teacher_model_name_or_path` with `teacher_model_class`.
        teacher_model_class (`type`, *optional*): class of the teacher checkpoint; defaults to the student's class.
        nuscenes_evaluation ([`NuScenesEvaluation`], *optional*): score the student with the official nuScenes
            metrics in every `evaluate` (the evaluation dataset must yield `sample_token`s of that split).
        **kwargs: passed to `Trainer` (datasets, collator, callbacks, ...). The collator defaults to
            `hf_crossdistill.data.nuscenes.collate_bev_batch`.
    """

    # compute_loss returns a per-batch mean: Trainer divides it by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        args: UniDistillConfig,
        *,
        teacher: nn.Module | None = None,
        teacher_model_class: type[PreTrainedModel] | None = None,
        nuscenes_evaluation: NuScenesEvaluation | None = None,
        **kwargs: Any,
    ) -> None:
        if nuscenes_evaluation is not None and not isinstance(nuscenes_evaluation, NuScenesEvaluation):
            raise TypeError(
                f"UniDistillTrainer: nuscenes_evaluation must be a NuScenesEvaluation, got {type(nuscenes_evaluation)}"
            )
        if nuscenes_evaluation is not None and not callable(getattr(model, "post_process", None)):
            raise TypeError(f"UniDistillTrainer: {type(model).__name__} has no post_process to decode boxes with")
        if not isinstance(args, UniDistillConfig):
            raise TypeError(f"UniDistillTrainer: args must be a UniDistillConfig, got {type(args).__name__}")
        if isinstance(model, UniDistillModel):
            raise TypeError("UniDistillTrainer: pass the student model itself; the trainer builds the wrapper")
        if teacher is None and args.teacher_model_name_or_path is not None:
            teacher = load_pretrained_strict(teacher_model_class or type(model), args.teacher_model_name_or_path)
        if args.use_adaptive_layers and teacher is None:
            raise ValueError("UniDistillTrainer: use_adaptive_layers needs a teacher")
        adaptive = None
        if teacher is not None:
            check_teacher_student_compatible(
                teacher.config, model.config, use_adaptive_layers=args.use_adaptive_layers
            )
            if args.use_adaptive_layers:
                adaptive = BEVAdaptiveLayers(
                    model.config.low_bev_channels,
                    teacher.config.low_bev_channels,
                    model.config.high_bev_channels,
                    teacher.config.high_bev_channels,
                    kernel_size=args.adaptive_kernel_size,
                )
        collator = kwargs.pop("data_collator", None)
        if collator is None:
            from ..data.nuscenes import collate_bev_batch

            collator = collate_bev_batch
        super().__init__(
            model=UniDistillModel(model, adaptive), args=args, data_collator=_TensorFirstCollator(collator), **kwargs
        )

        self.teacher: nn.Module | None = None
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
            self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
            self.teacher.eval()
        self._init_term_logging()
        self._init_nonfinite_guard()
        destroy_process_group_at_exit()
        self._balancing_weights: dict[str, torch.Tensor] | None = None
        self.nuscenes_evaluation = nuscenes_evaluation
        self._eval_predictions: dict[str, dict[str, torch.Tensor]] = {}
        self._nusc = None  # the devkit's tables, loaded once on the main process

    # ------------------------------------------------------------------------------------------------ loss

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    def _teacher_forward(self, inputs: Mapping[str, Any]) -> ModelOutput:
        # Without targets the teacher skips its own detection loss.
        teacher_inputs = {k: v for k, v in inputs.items() if k not in ("gt_boxes", "gt_labels", "gt_mask")}
        kwargs = _forward_kwargs(self.accelerator.unwrap_model(self.teacher), teacher_inputs)
        # Without gt_boxes a LiDAR-only detector cannot tell B from the points (a sample may have none).
        if "batch_size" in inspect.signature(self.accelerator.unwrap_model(self.teacher).forward).parameters:
            kwargs["batch_size"] = inputs["gt_boxes"].shape[0]
        with torch.no_grad():
            return self.teacher(**kwargs)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """L_det + λ1·L_fea + λ2·L_rel + λ3·L_resp (paper eq. 8); every term is logged separately."""
        inputs = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}  # drops e.g. sample_token
        outputs = model(**inputs)
        student_output = outputs.student_output
        if outputs.loss is None:
            raise ValueError(
                "UniDistillTrainer: the student returned no loss; the batch needs gt_boxes/gt_labels/gt_mask"
            )
        loss = outputs.loss
        terms: dict[str, torch.Tensor] = {"loss_det": loss.detach()}
        for name, value in (getattr(student_output, "loss_dict", None) or {}).items():
            terms[f"det_{name}"] = torch.as_tensor(value, dtype=torch.float32, device=loss.device).detach()

        if self.teacher is not None:
            teacher_output = self._teacher_forward(inputs)
            raw = self._distillation_terms(model, outputs, teacher_output, inputs)
            shared = self.accelerator.unwrap_model(model).shared_bev
            weights = self._term_weights(raw, outputs.loss, shared, training=model.training)
            for name, value in raw.items():
                terms[f"loss_{name}"] = value.detach()
                loss = loss + weights[name] * value
            if self._diagnostics_due(model.training):
                weighted = {name: weights[name] * value for name, value in raw.items()}
                terms.update(self._diagnostics(outputs, teacher_output, inputs, weighted))

        self._record_terms(terms, training=model.training)
        return (loss, outputs) if return_outputs else loss

    def _distillation_terms(
        self, model: nn.Module, outputs: UniDistillModelOutput, teacher_output: ModelOutput, inputs: Mapping
    ) -> dict[str, torch.Tensor]:
        """The unweighted UniDistill terms that have a nonzero λ: L_fea (eq. 3), L_rel (eq. 4-5), L_resp (eq. 6-7)."""
        args: UniDistillConfig = self.args
        student_output = outputs.student_output
        boxes, mask = inputs["gt_boxes"], inputs["gt_mask"]
        bev_range = tuple(self.accelerator.unwrap_model(model).config.bev_range)
        raw: dict[str, torch.Tensor] = {}
        if args.lambda_feature > 0:
            check_same_grid(outputs.low_level_bev, teacher_output.low_level_bev, "low-level BEV")
            feature_loss = (
                foreground_feature_distillation_loss
                if args.feature_region == "foreground"
                else feature_distillation_loss
            )
            raw["feature"] = feature_loss(
                outputs.low_level_bev,
                teacher_output.low_level_bev,
                boxes,
                mask,
                bev_range,
                normalize=args.feature_normalization,
            )
        if args.lambda_relation > 0:
            check_same_grid(outputs.high_level_bev, teacher_output.high_level_bev, "high-level BEV")
            raw["relation"] = relation_distillation_loss(
                outputs.high_level_bev, teacher_output.high_level_bev, boxes, mask, bev_range
            )
        if args.lambda_response > 0:
            raw["response"] = response_distillation_loss(
                student_output.heatmap_logits,
                student_output.regression,
                teacher_output.heatmap_logits,
                teacher_output.regression,
                boxes,
                mask,
                bev_range,
                teacher_temperature=args.teacher_temperature,
                student_temperature=args.student_temperature,
                min_overlap=args.response_min_overlap,
                min_radius=args.response_min_radius,
            )
        return raw

    def _term_weights(
        self,
        raw: Mapping[str, torch.Tensor],
        det_loss: torch.Tensor,
        shared: tuple[torch.Tensor, torch.Tensor] | None,
        *,
        training: bool,
    ) -> dict[str, float | torch.Tensor]:
        """The weight of each term this step: λ (paper), or the gradient-share weight; times the KD warm-up ramp."""
        args: UniDistillConfig = self.args
        lambdas = {"feature": args.lambda_feature, "relation": args.lambda_relation, "response": args.lambda_response}
        weights: dict[str, float | torch.Tensor] = {name: lambdas[name] for name in raw}
        if args.loss_balancing == "gradient_share":
            due = self.state.global_step % args.loss_balancing_interval == 0
            if training and raw and shared is not None and (due or self._balancing_weights is None):
                names = sorted(raw)
                norms = gradient_norms([det_loss, *(raw[name] for name in names)], shared[0])  # (1 + K,)
                if self.accelerator.num_processes > 1:
                    norms = self.accelerator.reduce(norms, reduction="mean")
                self._balancing_weights = {
                    name: (lambdas[name] * norms[0] / norms[i + 1].clamp_min(1e-12)).detach()
                    for i, name in enumerate(names)
                }
            if self._balancing_weights is not None:
                weights = {name: self._balancing_weights.get(name, weights[name]) for name in raw}
            for name, value in weights.items():
                self._record_terms(
                    {f"kd_weight_{name}": torch.as_tensor(value, device=det_loss.device)}, training=training
                )
        if args.kd_warmup_steps > 0:
            ramp = min(1.0, self.state.global_step / args.kd_warmup_steps)
            weights = {name: ramp * value for name, value in weights.items()}
        return weights

    def _diagnostics_due(self, training: bool) -> bool:
        steps = self.args.diagnostics_steps
        return training and steps > 0 and self.state.global_step % steps == 0

    def _diagnostics(
        self,
        outputs: UniDistillModelOutput,
        teacher_output: ModelOutput,
        inputs: Mapping[str, Any],
        weighted: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Gradient ratios of the weighted terms to L_det and feature statistics at the crucial points (diag_*)."""
        names = sorted(weighted)
        losses = [outputs.loss, *(weighted[name] for name in names)]
        out: dict[str, torch.Tensor] = {}
        low, high = self.accelerator.unwrap_model(self.model).shared_bev
        at = {"low": low, "high": high}
        for where, tensor in at.items():
            norms = gradient_norms(losses, tensor)  # (1 + K,)
            out[f"diag_gradnorm_{where}_det"] = norms[0]
            for i, name in enumerate(names):
                out[f"diag_gradratio_{where}_{name}"] = norms[i + 1] / norms[0].clamp_min(1e-12)
        params = [p for p in self.accelerator.unwrap_model(self.model).student.parameters() if p.requires_grad]
        norms = shared_parameter_gradient_norms(losses, params)  # (1 + K,)
        out["diag_gradnorm_params_det"] = norms[0]
        for i, name in enumerate(names):
            out[f"diag_gradratio_params_{name}"] = norms[i + 1] / norms[0].clamp_min(1e-12)
        boxes, mask = inputs["gt_boxes"], inputs["gt_mask"]
        bev_range = tuple(self.student.config.bev_range)
        maps = {
            "student_low": outputs.low_level_bev,
            "teacher_low": teacher_output.low_level_bev,
            "student_high": outputs.high_level_bev,
            "teacher_high": teacher_output.high_level_bev,
        }
        for name, feature_map in maps.items():
            stats = crucial_point_feature_statistics(feature_map.detach(), boxes, mask, bev_range)
            out.update({f"diag_{name}_{key}": value for key, value in stats.items()})
        return {name: value.detach().float() for name, value in out.items()}

    # ------------------------------------------------------------------------------------------------ evaluation

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """The losses of `compute_loss`, plus (with `nuscenes_evaluation`) the student's decoded boxes per sample."""
        if self.nuscenes_evaluation is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        tokens = inputs.get("sample_token")
        if not isinstance(tokens, (list, tuple)):
            raise KeyError("UniDistillTrainer: nuScenes evaluation needs batches with a `sample_token` list")
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
            detections = self.student.post_process(
                outputs.student_output,
                score_threshold=self.nuscenes_evaluation.score_threshold,
                bev_aug_matrix=inputs.get("bev_aug_matrix"),
            )
        if len(detections) != len(tokens):
            raise ValueError(f"post_process returned {len(detections)} samples for a batch of {len(tokens)}")
        for token, detection in zip(tokens, detections):
            self._eval_predictions[str(token)] = {k: v.detach().cpu() for k, v in detection.items()}
        return loss.detach().mean(), None, None

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        """Trainer's loop (losses), then the official nuScenes metrics of the gathered predictions."""
        self._eval_predictions = {}
        output = super().evaluation_loop(
            dataloader,
            description,
            prediction_loss_only=prediction_loss_only,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        if self.nuscenes_evaluation is not None:
            metrics = self._official_metrics()
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        return output

    def _official_metrics(self) -> dict[str, float]:
        """Gather every rank's predictions, score them on the main process, share the metrics with all ranks."""
        from ..evaluation import evaluate_nuscenes, gather_predictions

        settings = self.nuscenes_evaluation
        predictions = gather_predictions(self._eval_predictions, self.accelerator)
        self._eval_predictions = {}
        metrics: dict[str, float] | None = None
        if self.accelerator.is_main_process:
            if self._nusc is None:
                from ..data.nuscenes import load_nuscenes

                self._nusc = load_nuscenes(settings.dataroot, settings.version)
            out_dir = Path(self.args.output_dir, "nuscenes_eval", f"step-{self.state.global_step}")
            out_dir.mkdir(parents=True, exist_ok=True)
            metrics = evaluate_nuscenes(
                predictions,
                settings.dataroot,
                settings.version,
                settings.eval_set,
                output_dir=out_dir,
                nusc=self._nusc,
            )
            metrics["nuscenes_samples"] = float(len(predictions))
            (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics], from_process=0)[0]
        return metrics

    # ------------------------------------------------------------------------------------------------ checkpoints

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the student's `save_pretrained` folder plus `distill_extras.safetensors` (adaptive layers)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        wrapper: UniDistillModel = self.accelerator.unwrap_model(self.model)
        if state_dict is None:
            self._check_finite_weights(wrapper, f"a checkpoint to {output_dir}")
        os.makedirs(output_dir, exist_ok=True)
        student_state = extras_state = None
        if state_dict is not None:  # FSDP / DeepSpeed gather the wrapper's state dict for us
            student_state = _strip_prefix(state_dict, "student.")
            extras_state = _strip_prefix(state_dict, _ADAPTIVE_PREFIX)
        wrapper.student.save_pretrained(output_dir, state_dict=student_state)
        tensors: dict[str, torch.Tensor] = {}
        if wrapper.adaptive_layers is not None:
            extras = extras_state if extras_state is not None else wrapper.adaptive_layers.state_dict()
            tensors.update({f"{_ADAPTIVE_PREFIX}{k}": v for k, v in extras.items()})
        # The gradient-share weights in force, so that a resumed run continues with them (bitwise resume).
        for name, value in (self._balancing_weights or {}).items():
            tensors[f"{_BALANCING_PREFIX}{name}"] = value.reshape(1)
        if tensors:
            safetensors.torch.save_file(
                {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                os.path.join(output_dir, DISTILL_EXTRAS_NAME),
                metadata={"format": "pt", "content": "UniDistill training-only state (adaptive layers, loss weights)"},
            )
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Restore the student (strictly) and the adaptive layers from a checkpoint written by `_save`."""
        wrapper: UniDistillModel = self.accelerator.unwrap_model(model if model is not None else self.model)
        folder = Path(resume_from_checkpoint)
        load_state_dict_strict(wrapper.student, _read_safetensors_folder(folder), f"checkpoint {folder}")
        extras_file = folder / DISTILL_EXTRAS_NAME
        state = safetensors.torch.load_file(str(extras_file), device="cpu") if extras_file.is_file() else {}
        adaptive_state = _strip_prefix(state, _ADAPTIVE_PREFIX)
        if wrapper.adaptive_layers is not None:
            if not adaptive_state:
                raise FileNotFoundError(
                    f"{folder}: no adaptive layers in {DISTILL_EXTRAS_NAME}, but this run uses adaptive layers"
                )
            load_state_dict_strict(wrapper.adaptive_layers, adaptive_state, f"{extras_file}")
        elif adaptive_state:
            raise ValueError(f"{extras_file} holds adaptive layers, but this run has use_adaptive_layers=False")
        balancing = _strip_prefix(state, _BALANCING_PREFIX)
        if balancing:
            device = self.args.device
            self._balancing_weights = {name: value.reshape(()).to(device) for name, value in balancing.items()}

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

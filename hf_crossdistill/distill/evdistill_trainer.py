"""EvDistill trainer: a frozen image teacher T distils into an event student S_ev (paper eq. 1–9).

    L = L_CE + L_BMR + λ1 L_DA + λ2 L_AG + λ3 L_MD

The trained module is [`EvDistillModel`]: S_ev plus, depending on the recipe, S_aps, the BMR generators
G_T→S / G_S→T, the PatchGAN discriminators D_image / D_events and the modality classifier h. Everything runs
inside its `forward` (DDP needs every trainable parameter used in the wrapped module's forward), and one
optimiser trains it all:

- h is trained adversarially through `gradient_reversal` (eq. 6);
- the discriminators see detached generator outputs, and the generators' adversarial term evaluates the
  discriminators with detached parameters (`torch.func.functional_call`), so one backward gives each side
  only its own gradient.

The teacher is loaded strictly, frozen, kept in eval mode and is never a submodule of the wrapper (it is held in
a plain tuple, so `wrapper.train()` never flips its batch norm and it is in neither the optimiser nor the
checkpoints). T(x_s) and T(x_aps) run under `torch.no_grad()`; T(G_T→S(e)) runs with autograd on, because the
DSC term (eq. 3) trains G_T→S through the frozen teacher.

A checkpoint is S_ev's `save_pretrained` folder (all inference needs: BMR adds nothing at test time) plus
`evdistill_extras/<module>/` save_pretrained folders of the training-only modules for resume.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, Trainer
from transformers.modeling_outputs import ModelOutput

from ..data.events.augmentation import augment_event_frames
from ..losses.evdistill import (
    affinity_graph_loss,
    bmr_pixel_loss,
    conditional_features,
    cross_entropy_loss,
    cycle_consistency_loss,
    da_aps_loss,
    da_event_loss,
    discriminator_adversarial_loss,
    dsc_loss,
    evdistill_total_loss,
    generator_adversarial_loss,
    gradient_reversal,
    modality_classification_loss,
    mutual_distillation_loss,
)
from ..models.deeplab import DeepLabV3PlusConfig
from ..models.translation import (
    BMRGenerator,
    BMRGeneratorConfig,
    ModalityClassifier,
    ModalityClassifierConfig,
    PatchGANDiscriminator,
    PatchGANDiscriminatorConfig,
)
from ._distributed import destroy_process_group_at_exit
from ._nonfinite import NonFiniteGuardMixin
from ._term_logging import TermLoggingMixin
from .evdistill_config import EvDistillConfig

__all__ = [
    "EXTRAS_DIR",
    "EvDistillModel",
    "EvDistillModelOutput",
    "EvDistillPairs",
    "EvDistillTrainer",
    "build_evdistill_model",
    "load_teacher",
]

EXTRAS_DIR = "evdistill_extras"
# The translation terms that train during `bmr_warmup_steps` (everything else waits).
_TRANSLATION_TERMS = ("bmr_pixel", "bmr_adversarial", "bmr_discriminator", "bmr_cycle")
_EXTRA_MODULES = ("aps_student", "g_t2s", "g_s2t", "d_image", "d_events", "modality_classifier")


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def _feature_channels(config: Any) -> int:
    """Channels of the feature map the DA and AG terms read (DeepLab: ASPP output; ResNet: last stage)."""
    if isinstance(config, DeepLabV3PlusConfig):
        return config.aspp_channels
    if getattr(config, "model_type", None) == "resnet":
        return config.hidden_sizes[-1]
    raise TypeError(f"EvDistill: unsupported task network config {type(config).__name__} (DeepLabV3+ or ResNet)")


def _task_forward(model: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features) of a segmentation (DeepLabV3+) or recognition (ResNet classifier) network."""
    if isinstance(model.config, DeepLabV3PlusConfig):
        out = model(pixel_values=pixel_values)
        return out.logits, out.encoder_features
    out = model(pixel_values=pixel_values, output_hidden_states=True)
    return out.logits, out.hidden_states[-1]  # (B, K), (B, C, h, w)


def _match_channels(x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """Grayscale ↔ colour for frames fed to a network of the other kind (APS frames to T, source images to S_aps)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)  # (B, C, H, W) gray replicated
    if channels == 1:
        return x.mean(dim=1, keepdim=True)  # (B, 1, H, W) luminance
    raise ValueError(f"EvDistill: {what} has {x.shape[1]} channels, the network takes {channels}")


def _frozen_logits(discriminator: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Discriminator logits with detached parameters: the generator's adversarial gradient stops at D's weights."""
    state = {name: p.detach() for name, p in discriminator.named_parameters()}
    state.update(dict(discriminator.named_buffers()))
    return torch.func.functional_call(discriminator, state, (pixel_values,)).logits


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return safetensors.torch.load_file(str(single), device="cpu")
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(safetensors.torch.load_file(str(folder / shard), device="cpu"))
        return state
    raise FileNotFoundError(f"{folder}: no model.safetensors (not a save_pretrained folder)")


def _load_strict(module: nn.Module, folder: Path) -> None:
    state = _read_weights(folder)
    expected = module.state_dict()
    problems = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "shape-mismatched": sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape),
    }
    if any(problems.values()):
        details = "; ".join(f"{len(v)} {k} keys (first: {v[:5]})" for k, v in problems.items() if v)
        raise ValueError(f"checkpoint {folder} does not match {type(module).__name__}: {details}")
    module.load_state_dict(state, strict=True)


def load_teacher(path: str | os.PathLike) -> PreTrainedModel:
    """Load a teacher `save_pretrained` folder strictly (a wrongly keyed checkpoint is an error, not random init)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"teacher checkpoint {folder}: no config.json (not a save_pretrained folder)")
    config = AutoConfig.from_pretrained(str(folder))
    # transformers classes by their saved architecture name (ResNetForImageClassification); ours via AutoModel.
    architecture = getattr(transformers, (config.architectures or [""])[0], None)
    model = architecture(config) if architecture is not None else AutoModel.from_config(config)
    _load_strict(model, folder)
    return model


# ----------------------------------------------------------------------------------------------------------------
# The trained module
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class EvDistillModelOutput(ModelOutput):
    """Output of [`EvDistillModel`].

    Args:
        loss: eq. 9 over the enabled terms.
        logits: S_ev's logits on the events.
        terms: the detached weighted value of every computed term (for logging).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] | None = None


class EvDistillModel(nn.Module):
    """S_ev (+ S_aps, generators, discriminators, h): everything that trains, all run inside `forward`."""

    accepts_loss_kwargs = False

    def __init__(
        self,
        event_student: PreTrainedModel,
        args: EvDistillConfig,
        *,
        teacher: nn.Module,
        aps_student: PreTrainedModel | None = None,
        g_t2s: BMRGenerator | None = None,
        g_s2t: BMRGenerator | None = None,
        d_image: PatchGANDiscriminator | None = None,
        d_events: PatchGANDiscriminator | None = None,
        modality_classifier: ModalityClassifier | None = None,
    ) -> None:
        super().__init__()
        self.event_student = event_student
        self.aps_student = aps_student
        self.g_t2s, self.g_s2t = g_t2s, g_s2t
        self.d_image, self.d_events = d_image, d_events
        self.modality_classifier = modality_classifier
        self.args = args
        self.weights = args.loss_weights
        self._teacher = (teacher,)  # a tuple: not a submodule, not in state_dict, not flipped by .train()
        self.config = event_student.config  # Trainer's model card / push_to_hub read `model.config`
        self.global_step = 0  # set by the trainer before every step (drives `bmr_warmup_steps`)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def set_teacher(self, teacher: nn.Module) -> None:
        self._teacher = (teacher,)

    def _on(self, name: str) -> bool:
        return self.weights.get(name, 0.0) > 0

    def _teacher_no_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return _task_forward(self.teacher, x)

    def _augment(self, events: torch.Tensor) -> torch.Tensor:
        """S_ev's event inputs (real and G_S→T(x_s)) under the recipe's event augmentation, in training only; the
        generators, discriminators and the teacher see the events as they are."""
        if not self.training or (self.args.event_pixel_dropout == 0 and self.args.event_max_shift == 0):
            return events
        return augment_event_frames(
            events, drop_prob=self.args.event_pixel_dropout, max_shift=self.args.event_max_shift
        )

    def _condition(self, features: torch.Tensor, logits: torch.Tensor, reverse: bool) -> torch.Tensor:
        cond = conditional_features(features, logits, self.args.conditioning)
        if reverse:
            cond = gradient_reversal(cond, self.args.gradient_reversal_scale)
        return self.modality_classifier(cond).logits

    def forward(
        self,
        event_pixel_values: torch.Tensor,
        source_pixel_values: torch.Tensor | None = None,
        source_labels: torch.Tensor | None = None,
        aps_pixel_values: torch.Tensor | None = None,
        **unused: Any,
    ) -> EvDistillModelOutput:
        args, terms = self.args, {}
        if self.teacher.training:
            self.teacher.eval()  # a prepared / moved teacher must stay in eval mode
        ev_logits, ev_feats = _task_forward(self.event_student, self._augment(event_pixel_values))
        has_aps = aps_pixel_values is not None
        if self.aps_student is not None and not has_aps:
            raise ValueError("EvDistillModel: this run has an APS student but the batch has no aps_pixel_values")
        if has_aps:
            t_aps = self._teacher_no_grad(
                _match_channels(aps_pixel_values, self.teacher.config.num_channels, "aps_pixel_values")
            )
        else:
            t_aps = None

        if args.mode == "pseudo_labels":
            if not has_aps:
                raise ValueError("EvDistillModel: mode 'pseudo_labels' needs aps_pixel_values in the batch")
            terms["ce_pseudo"] = cross_entropy_loss(ev_logits, t_aps[0].argmax(dim=1))
        elif args.mode == "events_aps_kd":
            if not has_aps:
                raise ValueError("EvDistillModel: mode 'events_aps_kd' needs aps_pixel_values in the batch")
            terms["da_event"] = da_event_loss(ev_logits, t_aps[0], args.temperature)
            if self._on("ag"):
                terms["ag"] = affinity_graph_loss(ev_feats, t_aps[1], args.ag_kernel_size)
            if self.modality_classifier is not None:
                terms["da_match"] = modality_classification_loss(
                    self._condition(t_aps[1], t_aps[0], reverse=False), self._condition(ev_feats, ev_logits, True)
                )
        else:
            terms.update(
                self._evdistill_terms(
                    event_pixel_values,
                    ev_logits,
                    ev_feats,
                    source_pixel_values,
                    source_labels,
                    aps_pixel_values,
                    t_aps,
                )
            )
        weights = {k: w for k, w in self.weights.items() if k in terms}
        waiting = []
        if self.training and self.g_t2s is not None and self.global_step < args.bmr_warmup_steps:
            waiting = [k for k in weights if k not in _TRANSLATION_TERMS and weights[k] > 0]
            weights = {k: (0.0 if k in waiting else w) for k, w in weights.items()}
        loss, weighted = evdistill_total_loss(terms, weights)
        if waiting:  # × 0 keeps the waiting networks in the graph: DDP needs a (zero) gradient for every parameter
            loss = loss + 0.0 * torch.stack([terms[k] for k in waiting]).sum()
        return EvDistillModelOutput(loss=loss, logits=ev_logits, terms=weighted)

    def _evdistill_terms(self, e, ev_logits, ev_feats, x_s, y_s, x_aps, t_aps) -> dict[str, torch.Tensor]:
        args, terms = self.args, {}
        if x_s is None or y_s is None:
            raise ValueError("EvDistillModel: mode 'evdistill' needs source_pixel_values and source_labels")
        t_src = self._teacher_no_grad(x_s)
        source_side, target_side = [], [(ev_feats, ev_logits)]

        if self.g_t2s is not None:
            fake_img = self.g_t2s(e).generated  # G_T→S(e): events rendered as images
            fake_ev = self.g_s2t(x_s).generated  # G_S→T(x_s): labelled images rendered as events
            if x_aps is not None and self._on("bmr_pixel"):
                terms["bmr_pixel"] = bmr_pixel_loss(fake_img, x_aps)
            if self._on("bmr_cycle"):
                terms["bmr_cycle"] = cycle_consistency_loss(self.g_s2t(fake_img).generated, e) + (
                    cycle_consistency_loss(self.g_t2s(fake_ev).generated, x_s)
                )
            if self.d_image is not None:
                terms["bmr_adversarial"] = generator_adversarial_loss(
                    _frozen_logits(self.d_image, fake_img), args.gan_mode
                ) + generator_adversarial_loss(_frozen_logits(self.d_events, fake_ev), args.gan_mode)
                terms["bmr_discriminator"] = discriminator_adversarial_loss(
                    self.d_image(x_s).logits, self.d_image(fake_img.detach()).logits, args.gan_mode
                ) + discriminator_adversarial_loss(
                    self.d_events(e).logits, self.d_events(fake_ev.detach()).logits, args.gan_mode
                )
            # Eq. 3 with autograd through the frozen teacher: the KD term trains G_T→S end to end (Fig. 3).
            if args.dsc_trains_generator:
                t_fake_logits, t_fake_feats = _task_forward(self.teacher, fake_img)
            else:
                t_fake_logits, t_fake_feats = self._teacher_no_grad(fake_img.detach())
            terms["bmr_dsc"] = dsc_loss(t_fake_logits, ev_logits, args.temperature)
            # DSC supervision: S_ev on G_S→T(x_s) with the source labels (trains G_S→T too).
            student_input = self._augment(fake_ev.detach() if args.detach_translated_source else fake_ev)
            src_ev_logits, src_ev_feats = _task_forward(self.event_student, student_input)
            terms["ce_event"] = cross_entropy_loss(src_ev_logits, y_s)
            source_side.append((src_ev_feats, src_ev_logits))
            ag_teacher = t_fake_feats.detach()
        else:
            ag_teacher = None

        if self.aps_student is not None:
            aps_logits, aps_feats = _task_forward(self.aps_student, x_aps)
            aps_src = _match_channels(x_s, self.aps_student.config.num_channels, "source_pixel_values")
            aps_src_logits, aps_src_feats = _task_forward(self.aps_student, aps_src)
            terms["ce_aps"] = cross_entropy_loss(aps_src_logits, y_s)
            terms["da_aps"] = da_aps_loss(aps_logits, t_aps[0], aps_src_logits, t_src[0], args.temperature)
            terms["md"] = mutual_distillation_loss(ev_logits, aps_logits, args.temperature)
            source_side.append((aps_src_feats, aps_src_logits))
            target_side.append((aps_feats, aps_logits))
        if t_aps is not None:
            terms["da_event"] = da_event_loss(ev_logits, t_aps[0], args.temperature)
            ag_teacher = t_aps[1]  # the real paired frame is the better affinity target when it exists
        if self._on("ag") and ag_teacher is not None:
            terms["ag"] = affinity_graph_loss(ev_feats, ag_teacher, args.ag_kernel_size)
        if self.modality_classifier is not None:
            source_logits = [self._condition(f, z, reverse=True) for f, z in source_side]
            if t_src[1].shape[1] == ev_feats.shape[1]:
                source_logits.append(self._condition(t_src[1], t_src[0], reverse=False))
            target_logits = [self._condition(f, z, reverse=True) for f, z in target_side]
            terms["da_match"] = modality_classification_loss(source_logits, target_logits)
        return terms


def build_evdistill_model(
    event_student: PreTrainedModel,
    teacher: PreTrainedModel,
    args: EvDistillConfig,
    aps_student: PreTrainedModel | None = None,
) -> EvDistillModel:
    """Build the wrapper and, from `args`, the training-only modules this recipe needs (and only those: a module
    without a loss term would get no gradient, which DDP reports as an error)."""
    ev_channels = event_student.config.num_channels
    img_channels = teacher.config.num_channels
    if teacher.config.num_labels != event_student.config.num_labels:
        raise ValueError(
            f"EvDistill: teacher has {teacher.config.num_labels} classes, event student "
            f"{event_student.config.num_labels}; they must predict the same classes"
        )
    if args.event_max_shift > 0 and isinstance(event_student.config, DeepLabV3PlusConfig):
        raise ValueError(
            "EvDistill: event_max_shift translates S_ev's inputs, which would misalign the dense segmentation "
            "targets (pseudo labels, affinity graph); use it for recognition only"
        )
    w = args.loss_weights
    modules: dict[str, nn.Module | None] = {}
    if args.mode == "evdistill" and args.use_bmr:

        def generator(cin: int, cout: int, activation: str, **prior: Any) -> BMRGenerator:
            return BMRGenerator(
                BMRGeneratorConfig(
                    in_channels=cin,
                    out_channels=cout,
                    base_channels=args.generator_base_channels,
                    num_residual_blocks=args.generator_residual_blocks,
                    output_activation=activation,
                    **prior,
                )
            )

        modules["g_t2s"] = generator(ev_channels, img_channels, args.generator_image_activation)
        modules["g_s2t"] = generator(
            img_channels,
            ev_channels,
            args.generator_events_activation,
            edge_prior=args.generator_events_edge_prior,
            edge_prior_spread=args.generator_events_edge_prior_spread,
        )
        if (w["bmr_adversarial"] > 0) != (w["bmr_discriminator"] > 0):
            raise ValueError(
                "EvDistill: lambda_bmr_adversarial and lambda_bmr_discriminator must be both > 0 or both 0"
            )
        if w["bmr_adversarial"] > 0:
            for name, channels in (("d_image", img_channels), ("d_events", ev_channels)):
                modules[name] = PatchGANDiscriminator(
                    PatchGANDiscriminatorConfig(
                        in_channels=channels,
                        base_channels=args.discriminator_base_channels,
                        num_layers=args.discriminator_layers,
                    )
                )
    if aps_student is not None and args.mode != "evdistill":
        raise ValueError(f"EvDistill: mode {args.mode!r} trains no APS student")
    if args.mode in ("evdistill", "events_aps_kd") and w["da_match"] > 0:
        channels = _feature_channels(event_student.config)
        num_labels = event_student.config.num_labels
        in_channels = channels * num_labels if args.conditioning == "outer" else channels + num_labels
        modules["modality_classifier"] = ModalityClassifier(
            ModalityClassifierConfig(in_channels=in_channels, hidden_channels=args.modality_hidden_channels)
        )
    return EvDistillModel(event_student, args, teacher=teacher, aps_student=aps_student, **modules)


# ----------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------


class EvDistillTrainer(NonFiniteGuardMixin, TermLoggingMixin, Trainer):
    """`Trainer` for EvDistill (eq. 9) and its baselines (pseudo labels; KD with only events and APS frames).

    Args:
        model (`PreTrainedModel`): the event student S_ev (DeepLabV3+ or a ResNet classifier).
        args ([`EvDistillConfig`]): training arguments and loss settings.
        teacher (`PreTrainedModel`, *optional*): the image teacher; by default loaded strictly from
            `args.teacher_model_name_or_path`.
        aps_student (`PreTrainedModel`, *optional*): S_ev's APS counterpart; by default built from
            `args.aps_student_config` when set.
        **kwargs: passed to `Trainer` (datasets, collator, callbacks, ...).
    """

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        args: EvDistillConfig,
        *,
        teacher: PreTrainedModel | None = None,
        aps_student: PreTrainedModel | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, EvDistillConfig):
            raise TypeError(f"EvDistillTrainer: args must be an EvDistillConfig, got {type(args).__name__}")
        if isinstance(model, EvDistillModel):
            raise TypeError("EvDistillTrainer: pass the event student itself; the trainer builds the wrapper")
        if teacher is None:
            if args.teacher_model_name_or_path is None:
                raise ValueError("EvDistillTrainer: a teacher is required (teacher_model_name_or_path)")
            teacher = load_teacher(args.teacher_model_name_or_path)
        if aps_student is None and args.aps_student_config is not None:
            from ..presets import resolve_config

            aps_student = AutoModel.from_config(resolve_config(args.aps_student_config, what="aps_student_config"))
        teacher.requires_grad_(False)
        teacher.eval()
        wrapper = build_evdistill_model(model, teacher, args, aps_student)
        super().__init__(model=wrapper, args=args, **kwargs)
        self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
        self.teacher.eval()
        self.accelerator.unwrap_model(self.model).set_teacher(self.teacher)
        self._init_term_logging()
        self._init_nonfinite_guard()
        destroy_process_group_at_exit()

    @property
    def wrapper(self) -> EvDistillModel:
        return self.accelerator.unwrap_model(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Eq. 9 from the wrapper's forward; every weighted term is logged as `loss_<term>`."""
        self.wrapper.global_step = self.state.global_step
        outputs = model(**{k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        self._record_terms({f"loss_{name}": value for name, value in outputs.terms.items()}, training=model.training)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """S_ev's save_pretrained folder, plus `evdistill_extras/<module>/` for the training-only modules."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        wrapper = self.wrapper
        self._check_finite_weights(wrapper, f"a checkpoint to {output_dir}")
        os.makedirs(output_dir, exist_ok=True)
        wrapper.event_student.save_pretrained(output_dir)
        for name in _EXTRA_MODULES:
            module = getattr(wrapper, name)
            if module is not None:
                module.save_pretrained(os.path.join(output_dir, EXTRAS_DIR, name))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Restore S_ev and every training-only module strictly from a checkpoint written by `_save`."""
        wrapper = self.accelerator.unwrap_model(model if model is not None else self.model)
        folder = Path(resume_from_checkpoint)
        _load_strict(wrapper.event_student, folder)
        for name in _EXTRA_MODULES:
            module, sub = getattr(wrapper, name), folder / EXTRAS_DIR / name
            if module is not None:
                if not sub.is_dir():
                    raise FileNotFoundError(f"{folder}: no {EXTRAS_DIR}/{name}, but this run trains {name}")
                _load_strict(module, sub)
            elif sub.is_dir():
                raise ValueError(f"{sub} exists, but this run has no {name} (a different recipe?)")

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)


# ----------------------------------------------------------------------------------------------------------------
# Data: unpaired events (+ APS) and labelled source images, zipped into EvDistill batches
# ----------------------------------------------------------------------------------------------------------------


class EvDistillPairs(torch.utils.data.IterableDataset):
    """Zip an event stream with an (unpaired) labelled image stream into the examples `EvDistillModel` reads.

    The event examples (from `event_segmentation_dataset` / `event_recognition_dataset`) give `events` and, with
    APS frames, `image`; the source examples (from `labeled_image_dataset`) give `image` and `labels` / `label`.
    The output keys are `event_pixel_values`, `aps_pixel_values` (when present), `source_pixel_values`,
    `source_labels`. The event stream sets the epoch length; the source stream is restarted when it runs out.
    Event labels are never passed on: EvDistill trains without them.

    Args:
        event_dataset: iterable of event examples.
        source_dataset: iterable of labelled source images (re-iterable), or None for the baselines that use no
            source data (`"pseudo_labels"`, `"events_aps_kd"`).
        use_aps: pass the APS frames on (False for the "w/o APS" runs and for event-only data).
    """

    def __init__(self, event_dataset, source_dataset=None, *, use_aps: bool = True) -> None:
        super().__init__()
        if event_dataset is None:
            raise ValueError("EvDistillPairs: event_dataset is required")
        self.event_dataset, self.source_dataset, self.use_aps = event_dataset, source_dataset, use_aps

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to both streams, so shuffled `datasets.IterableDataset`s draw a new order every epoch."""
        for dataset in (self.event_dataset, self.source_dataset):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def _next_source(self, source):
        try:
            return next(source), source
        except StopIteration:
            source = iter(self.source_dataset)
            try:
                return next(source), source
            except StopIteration:
                raise ValueError("EvDistillPairs: the source dataset is empty") from None

    def __iter__(self):
        source = iter(self.source_dataset) if self.source_dataset is not None else None
        for i, example in enumerate(self.event_dataset):
            if "events" not in example:
                raise KeyError(f"EvDistillPairs: event example {i} has no 'events' (keys: {sorted(example)})")
            out = {"event_pixel_values": torch.as_tensor(example["events"], dtype=torch.float32)}
            if source is not None:
                src, source = self._next_source(source)
                labels = src.get("labels", src.get("label"))
                if labels is None or "image" not in src:
                    raise KeyError(
                        f"EvDistillPairs: source example has no 'image' and 'labels'/'label' ({sorted(src)})"
                    )
                out["source_pixel_values"] = torch.as_tensor(src["image"], dtype=torch.float32)
                out["source_labels"] = torch.as_tensor(labels, dtype=torch.long)
            if self.use_aps and example.get("image") is not None:
                out["aps_pixel_values"] = torch.as_tensor(example["image"], dtype=torch.float32)
            yield out

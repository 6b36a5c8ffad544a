"""EvDistill losses (Wang et al., CVPR 2021, Sec. 3, eq. 1–9): pure functions, tensors in, scalar out.

Naming: T is the frozen image teacher, S_ev the event student, S_aps the APS-frame student, G_T→S translates
events to the image modality, G_S→T images to the event modality, D_* are PatchGAN discriminators and h is
the modality classifier of the distribution adaptation. Logits are `(B, K)` (recognition) or `(B, K, H, W)`
(segmentation); the class dimension is always dim 1.

Choices the paper leaves open (documented here, tested in tests/losses/test_evdistill_losses.py):

- Adversarial loss (eq. 2): the non-saturating log loss, −log D(G(e)) for the generator (eq. 2 up to its
  constant 1) and the usual binary cross-entropy for the discriminator (`gan_mode="bce"`, default, the
  paper's form). `gan_mode="lsgan"` gives the least-squares GAN of CycleGAN as an alternative.
- KL direction: every distillation term is KL(p_target ‖ p_learner) where the target is the network being
  imitated (T for eq. 3–5, the peer for eq. 8), i.e. the Hinton form; eq. 4 writes its arguments in the other
  order but describes "guide S_aps to behave like T".
- Mutual distillation (eq. 8): as in deep mutual learning, each student's target is the other's detached
  prediction, so each term trains one student.
- Modality classifier (eq. 6): conditional adversarial learning (CDAN): h reads the per-pixel outer product of
  features and softmax predictions; the min-max is one minimisation through `gradient_reversal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .kd import check_same_shape, check_tensor, cross_entropy_loss, kl_distillation_loss

GAN_MODES = ("bce", "lsgan")


# ----------------------------------------------------------------------------------------- gradient reversal


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad_output, None


def gradient_reversal(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by −`scale` in the backward pass (Ganin & Lempitsky).

    Put it between a feature extractor and an adversary (EvDistill's modality classifier h, eq. 6): minimising
    the adversary's loss then trains the adversary to separate and the extractor to confuse, in one backward
    pass and one optimiser.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"gradient_reversal: x must be a torch.Tensor, got {type(x).__name__}")
    if not scale >= 0:
        raise ValueError(f"gradient_reversal: scale must be >= 0, got {scale}")
    return _GradientReversal.apply(x, float(scale))


# ------------------------------------------------------------------------------------------- BMR (eq. 1–3)


def bmr_pixel_loss(generated: torch.Tensor, aps: torch.Tensor) -> torch.Tensor:
    r"""Eq. 1: L_pw = E ‖x_aps − G_T→S(e)‖₁ (mean absolute error per pixel and channel).

    Args:
        generated (`torch.Tensor` of shape `(B, C, H, W)`): G_T→S(e), the events translated to the image modality.
        aps (`torch.Tensor` of shape `(B, C, H, W)` or `(B, 1, H, W)`): the APS frames paired with the events.
            A single-channel (grayscale) APS frame is compared with the channel mean of a multi-channel
            `generated`, so only luminance is supervised and colour is left to the adversarial term.
    """
    where = "bmr_pixel_loss"
    check_tensor("generated", generated, ndim=4, where=where)
    check_tensor("aps", aps, ndim=4, where=where)
    if aps.shape[1] == 1 and generated.shape[1] > 1:
        generated = generated.mean(dim=1, keepdim=True)  # (B, 1, H, W) luminance
    check_same_shape(where, generated=generated, aps=aps)
    return (generated - aps).abs().mean()


def generator_adversarial_loss(fake_logits: torch.Tensor, gan_mode: str = "bce") -> torch.Tensor:
    r"""Eq. 2, generator side: make D call the generated samples real.

    `"bce"`: mean of −log σ(D(G(e))) (eq. 2 without its constant 1); `"lsgan"`: mean of (D(G(e)) − 1)².
    The discriminator's parameters must not be updated by this term: evaluate D with detached parameters
    (e.g. `torch.func.functional_call`) or zero its gradients.

    Args:
        fake_logits (`torch.Tensor`): D's logits on generated samples, any shape (PatchGAN: `(B, 1, h, w)`).
        gan_mode (`str`, *optional*, defaults to `"bce"`): `"bce"` or `"lsgan"`.
    """
    where = "generator_adversarial_loss"
    check_tensor("fake_logits", fake_logits, where=where)
    _check_gan_mode(gan_mode, where)
    if gan_mode == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return (fake_logits - 1).pow(2).mean()


def discriminator_adversarial_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, gan_mode: str = "bce"
) -> torch.Tensor:
    r"""Eq. 2, discriminator side: real samples → 1, generated (detach them first) → 0, the two halves averaged.

    Args:
        real_logits (`torch.Tensor`): D's logits on real samples of its modality.
        fake_logits (`torch.Tensor`): D's logits on generated samples (computed from detached generator outputs).
        gan_mode (`str`, *optional*, defaults to `"bce"`): `"bce"` or `"lsgan"`.
    """
    where = "discriminator_adversarial_loss"
    check_tensor("real_logits", real_logits, where=where)
    check_tensor("fake_logits", fake_logits, where=where)
    _check_gan_mode(gan_mode, where)
    if gan_mode == "bce":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    else:
        real = (real_logits - 1).pow(2).mean()
        fake = fake_logits.pow(2).mean()
    return 0.5 * (real + fake)


def cycle_consistency_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    r"""Cycle consistency (Sec. 3.2, after Zhu et al. 2017): E ‖G_S→T(G_T→S(e)) − e‖₁, mean absolute error.

    Args:
        reconstructed (`torch.Tensor` of shape `(B, C, H, W)`): the input sent through both generators.
        original (`torch.Tensor` of the same shape): the input.
    """
    where = "cycle_consistency_loss"
    check_tensor("reconstructed", reconstructed, ndim=4, where=where)
    check_tensor("original", original, ndim=4, where=where)
    check_same_shape(where, reconstructed=reconstructed, original=original)
    return (reconstructed - original).abs().mean()


def dsc_loss(
    teacher_logits_on_translated: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    r"""Eq. 3, dynamic semantic consistency: KL[T(G_T→S(e)) ‖ S_ev(e)].

    The teacher side is *not* detached: T is frozen (no parameter gradients) but the gradient flows through it
    into G_T→S, which is how the task loss improves the BMR module end to end (Fig. 3). The second half of
    DSC, supervision of S_ev on G_S→T(x_s) with the source labels, is `cross_entropy_loss`.

    Args:
        teacher_logits_on_translated (`torch.Tensor` of shape `(B, K, ...)`): T(G_T→S(e)).
        student_logits (`torch.Tensor` of the same shape): S_ev(e).
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature τ (loss × τ²).
    """
    return kl_distillation_loss(student_logits, teacher_logits_on_translated, temperature)


# ----------------------------------------------------------------------------------- DA (eq. 4–6)


def da_aps_loss(
    aps_student_on_aps: torch.Tensor,
    teacher_on_aps: torch.Tensor,
    aps_student_on_source: torch.Tensor,
    teacher_on_source: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    r"""Eq. 4: L_DA^aps = KL[T(x_aps) ‖ S_aps(x_aps)] + KL[T(x_s) ‖ S_aps(x_s)] (teacher logits detached).

    Args:
        aps_student_on_aps, teacher_on_aps (`torch.Tensor` of shape `(B, K, ...)`): S_aps and T on APS frames.
        aps_student_on_source, teacher_on_source (`torch.Tensor` of shape `(B', K, ...)`): on source images.
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature τ (each KL × τ²).
    """
    return kl_distillation_loss(aps_student_on_aps, teacher_on_aps.detach(), temperature) + kl_distillation_loss(
        aps_student_on_source, teacher_on_source.detach(), temperature
    )


def da_event_loss(event_student_logits: torch.Tensor, teacher_on_aps: torch.Tensor, temperature: float = 1.0):
    r"""Eq. 5: L_DA^ev = KL[T(x_aps) ‖ S_ev(e)] on paired events and APS frames (teacher logits detached).

    Args:
        event_student_logits (`torch.Tensor` of shape `(B, K, ...)`): S_ev(e).
        teacher_on_aps (`torch.Tensor` of the same shape): T(x_aps).
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature τ (loss × τ²).
    """
    return kl_distillation_loss(event_student_logits, teacher_on_aps.detach(), temperature)


def conditional_features(features: torch.Tensor, logits: torch.Tensor, mode: str = "outer") -> torch.Tensor:
    r"""The input of the modality classifier h (eq. 6) under conditional adversarial learning (CDAN).

    Per pixel, the feature f and the class prediction g = softmax(logits) are combined as their outer product
    f ⊗ g (`"outer"`, C·K channels, the multilinear conditioning of Long et al. 2018) or their concatenation
    (`"concat"`, C + K channels, cheaper for many classes). The prediction is average-pooled to the feature
    map size first (probabilities stay normalised). The prediction is detached: h is conditioned on it, the
    task head is not trained by the adversary through it.

    Args:
        features (`torch.Tensor` of shape `(B, C, h, w)` or `(B, C)`): e.g. `encoder_features` (ASPP output).
        logits (`torch.Tensor` of shape `(B, K, H, W)` or `(B, K)`): the same network's class scores (image-level
            scores condition every pixel of a feature map).
        mode (`str`, *optional*, defaults to `"outer"`): `"outer"` or `"concat"`.

    Returns:
        `(B, C·K, h, w)` (outer) or `(B, C + K, h, w)` (concat); `(B, ·, 1, 1)` for vector inputs.
    """
    where = "conditional_features"
    check_tensor("features", features, ndim=(2, 4), where=where)
    check_tensor("logits", logits, ndim=(2, 4), where=where)
    if features.shape[0] != logits.shape[0] or (features.ndim == 2 and logits.ndim == 4):
        raise ValueError(
            f"{where}: features {tuple(features.shape)} and logits {tuple(logits.shape)} need the same batch, and "
            "per-pixel logits need per-pixel features"
        )
    if mode not in ("outer", "concat"):
        raise ValueError(f"{where}: mode must be 'outer' or 'concat', got {mode!r}")
    if features.ndim == 2:
        features = features[..., None, None]  # (B, C, 1, 1)
    probs = logits.detach().softmax(dim=1)
    if probs.ndim == 2:
        # Image-level prediction (recognition): every pixel feature is conditioned on it.
        probs = probs[..., None, None].expand(-1, -1, *features.shape[-2:])  # (B, K, h, w)
    elif probs.shape[-2:] != features.shape[-2:]:
        probs = F.adaptive_avg_pool2d(probs, features.shape[-2:])  # (B, K, h, w)
    if mode == "concat":
        return torch.cat([features, probs], dim=1)
    b, c, h, w = features.shape
    outer = features.unsqueeze(2) * probs.unsqueeze(1)  # (B, C, K, h, w)
    return outer.reshape(b, c * probs.shape[1], h, w)  # (B, C·K, h, w)


def modality_classification_loss(
    source_logits: torch.Tensor | Sequence[torch.Tensor], target_logits: torch.Tensor | Sequence[torch.Tensor]
) -> torch.Tensor:
    r"""Eq. 6: L_match = 1/|X| Σ_{x ∈ X_S ∪ X_T} H(h(x), d), binary cross-entropy with d = 0 (source), 1 (target).

    Every pixel of every map is one sample x, so the mean runs over all of them together. Feed h with
    `gradient_reversal(conditional_features(...))` so that minimising this trains h to separate the modalities
    and the task networks to make them indistinguishable (the max-min of Sec. 3.3).

    Args:
        source_logits: h's logits (any shape, e.g. `(B, 1, h, w)`) on source-modality features, or a list of them.
        target_logits: h's logits on target-modality (event / APS) features, or a list of them.
    """
    where = "modality_classification_loss"
    groups = []
    for name, value, label in (("source_logits", source_logits, 0.0), ("target_logits", target_logits, 1.0)):
        items = [value] if isinstance(value, torch.Tensor) else list(value)
        if not items:
            raise ValueError(f"{where}: {name} is empty")
        for i, item in enumerate(items):
            check_tensor(f"{name}[{i}]", item, where=where)
            groups.append((item.reshape(-1), label))
    logits = torch.cat([g for g, _ in groups])
    labels = torch.cat([torch.full_like(g, label) for g, label in groups])
    return F.binary_cross_entropy_with_logits(logits, labels)


# ------------------------------------------------------------------------------------- AG and MD (eq. 7–8)


def _neighbour_affinities(features: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Cosine similarity of every node with its k×k neighbours (itself included): (B, k², H·W)."""
    b, c, h, w = features.shape
    unit = F.normalize(features, dim=1, eps=1e-12)  # zero vectors stay zero: affinity 0 with everything
    # Zero padding: neighbours outside the map are zero vectors, so their affinity is 0 for both networks.
    neighbours = F.unfold(unit, kernel_size, padding=kernel_size // 2)  # (B, C·k², H·W)
    neighbours = neighbours.view(b, c, kernel_size * kernel_size, h * w)  # (B, C, k², H·W)
    centre = unit.view(b, c, 1, h * w)  # (B, C, 1, H·W)
    return (neighbours * centre).sum(dim=1)  # (B, k², H·W)


def affinity_graph_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, kernel_size: int = 3
) -> torch.Tensor:
    r"""Eq. 7: L_AG = 1/(H·W·σ) Σ_u Σ_{v ∈ N_σ(u)} (A^T_uv − A^S_uv)², A_uv = F_uᵀF_v / (‖F_u‖‖F_v‖).

    Each node u (a feature-map position) is connected to its σ = k×k spatial neighbours, itself included;
    positions outside the map are zero vectors (zero padding, affinity 0). Cosine affinities make the loss
    independent of the two networks' channel counts and feature scales, which is what lets it cross modalities.

    Args:
        student_features (`torch.Tensor` of shape `(B, C_s, H, W)`): e.g. S_ev(e).encoder_features.
        teacher_features (`torch.Tensor` of shape `(B, C_t, H, W)`): e.g. T(x).encoder_features (detach it
            unless the teacher side should get gradients).
        kernel_size (`int`, *optional*, defaults to 3): k, odd; σ = k².

    Returns:
        Scalar: the squared affinity differences averaged over batch, H·W nodes and k² neighbours.
    """
    where = "affinity_graph_loss"
    check_tensor("student_features", student_features, ndim=4, where=where)
    check_tensor("teacher_features", teacher_features, ndim=4, where=where)
    if (
        student_features.shape[0] != teacher_features.shape[0]
        or student_features.shape[2:] != teacher_features.shape[2:]
    ):
        raise ValueError(
            f"{where}: student_features {tuple(student_features.shape)} and teacher_features "
            f"{tuple(teacher_features.shape)} must share batch and spatial size (channels may differ)"
        )
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{where}: kernel_size must be a positive odd integer, got {kernel_size}")
    a_s = _neighbour_affinities(student_features, kernel_size)
    a_t = _neighbour_affinities(teacher_features.to(student_features.dtype), kernel_size)
    return (a_t - a_s).pow(2).mean()


def mutual_distillation_loss(
    event_logits: torch.Tensor, aps_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    r"""Eq. 8: L_MD = KL[S_aps(x_aps) ‖ S_ev(e); τ] + KL[S_ev(e) ‖ S_aps(x_aps); τ] (deep mutual learning).

    In each term the peer's prediction is the detached target, so the first term trains S_ev and the second S_aps.

    Args:
        event_logits (`torch.Tensor` of shape `(B, K, ...)`): S_ev(e).
        aps_logits (`torch.Tensor` of the same shape): S_aps(x_aps) on the paired APS frames.
        temperature (`float`, *optional*, defaults to 1.0): τ (each KL × τ²).
    """
    return kl_distillation_loss(event_logits, aps_logits.detach(), temperature) + kl_distillation_loss(
        aps_logits, event_logits.detach(), temperature
    )


# ------------------------------------------------------------------------------------------ total (eq. 9)

#: Every term of the EvDistill objective, grouped as in eq. 9: L = L_CE + L_BMR + λ1 L_DA + λ2 L_AG + λ3 L_MD.
EVDISTILL_TERMS: dict[str, str] = {
    "ce_event": "L_CE: S_ev on G_S→T(x_s) with the source labels (DSC supervision, Sec. 3.2)",
    "ce_aps": "L_CE: S_aps on x_s with the source labels (Sec. 3.3)",
    "ce_pseudo": "baseline: S_ev on pseudo labels argmax T(x_aps) (Tables 1–2)",
    "bmr_pixel": "L_BMR: eq. 1, ‖x_aps − G_T→S(e)‖₁",
    "bmr_adversarial": "L_BMR: eq. 2, both generators against their discriminators",
    "bmr_discriminator": "L_BMR: eq. 2, the discriminators' side",
    "bmr_cycle": "L_BMR: cycle consistency of both translation directions",
    "bmr_dsc": "L_BMR: eq. 3, KL[T(G_T→S(e)) ‖ S_ev(e)]",
    "da_aps": "λ1 L_DA: eq. 4",
    "da_event": "λ1 L_DA: eq. 5",
    "da_match": "λ1 L_DA: eq. 6, modality classifier h through gradient reversal",
    "ag": "λ2 L_AG: eq. 7",
    "md": "λ3 L_MD: eq. 8",
}


def evdistill_total_loss(
    terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Eq. 9: L = Σ_k w_k · L_k over the enabled terms (w_k > 0); the λ's of eq. 9 are folded into the w_k.

    A term is switched off by a weight of 0 (or by leaving it out of `weights`); its tensor may then be
    absent. An enabled term must be present and finite.

    Args:
        terms: term name (a key of `EVDISTILL_TERMS`) → scalar loss.
        weights: term name → weight ≥ 0.

    Returns:
        `(total, weighted)`: the scalar objective and the detached weighted value of every enabled term (for
        logging).
    """
    where = "evdistill_total_loss"
    unknown = sorted((set(terms) | set(weights)) - set(EVDISTILL_TERMS))
    if unknown:
        raise KeyError(f"{where}: unknown loss terms {unknown}; known: {sorted(EVDISTILL_TERMS)}")
    total, weighted = None, {}
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"{where}: weight of {name!r} must be >= 0, got {weight}")
        if weight == 0:
            continue
        if name not in terms or terms[name] is None:
            raise KeyError(f"{where}: term {name!r} has weight {weight} but was not computed")
        value = terms[name]
        check_tensor(name, value, ndim=0, where=where)
        contribution = weight * value
        weighted[name] = contribution.detach()
        total = contribution if total is None else total + contribution
    if total is None:
        raise ValueError(f"{where}: every term is switched off (all weights are 0)")
    return total, weighted


__all__ = [
    "EVDISTILL_TERMS",
    "GAN_MODES",
    "affinity_graph_loss",
    "bmr_pixel_loss",
    "conditional_features",
    "cross_entropy_loss",
    "cycle_consistency_loss",
    "da_aps_loss",
    "da_event_loss",
    "discriminator_adversarial_loss",
    "dsc_loss",
    "evdistill_total_loss",
    "generator_adversarial_loss",
    "gradient_reversal",
    "kl_distillation_loss",
    "modality_classification_loss",
    "mutual_distillation_loss",
]


def _check_gan_mode(gan_mode: str, where: str) -> None:
    if gan_mode not in GAN_MODES:
        raise ValueError(f"{where}: gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")

"""Generic knowledge-distillation losses shared by the methods: pure functions, tensors in, scalar out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_tensor(name: str, tensor: torch.Tensor, *, ndim: int | tuple[int, ...] | None = None, where: str) -> None:
    """Raise a clear error when `tensor` is not a floating tensor of the given rank or holds NaN / inf."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if tensor.ndim not in allowed:
            raise ValueError(
                f"{where}: {name} must have {' or '.join(map(str, allowed))} dims, got {tuple(tensor.shape)}"
            )
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{where}: {name} contains NaN or inf")


def check_same_shape(where: str, **tensors: torch.Tensor) -> None:
    """Raise when the named tensors do not all have the same shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{where}: shapes must match, got {shapes}")


def kl_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Hinton-style distillation: KL(p_T ‖ p_S) with p = softmax(z / τ) over the class dim, × τ².

    Used by EvDistill's DSC (eq. 3), DA (eq. 4–5) and MD (eq. 8) terms. Neither input is detached: detach the
    teacher side yourself unless gradients should flow into it (EvDistill's DSC trains G_T→S *through* the
    frozen teacher).

    Args:
        student_logits (`torch.Tensor` of shape `(B, K)` or `(B, K, *spatial)`): student scores.
        teacher_logits (`torch.Tensor`, same shape): teacher scores.
        temperature (`float`, *optional*, defaults to 1.0): τ > 0; the loss is multiplied by τ² so gradient
            magnitudes do not shrink with τ.
        mask (`torch.Tensor` of shape `(B, *spatial)`, *optional*): positions to average over (bool); the
            KL is averaged over all positions when None.

    Returns:
        Scalar: the KL summed over classes, averaged over batch and positions, times τ² (0 when the mask is empty).
    """
    where = "kl_distillation_loss"
    check_tensor("student_logits", student_logits, where=where)
    check_tensor("teacher_logits", teacher_logits, where=where)
    if student_logits.ndim < 2:
        raise ValueError(f"{where}: logits must be (B, K, ...), got {tuple(student_logits.shape)}")
    check_same_shape(where, student_logits=student_logits, teacher_logits=teacher_logits)
    if not temperature > 0:
        raise ValueError(f"{where}: temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B, *spatial)
    if mask is None:
        return kl.mean() * temperature**2
    if mask.shape != kl.shape:
        raise ValueError(f"{where}: mask must be {tuple(kl.shape)}, got {tuple(mask.shape)}")
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0) * temperature**2


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy for classification `(B, K)` / `(B,)` or segmentation `(B, K, H, W)` / `(B, H, W)`.

    Labels equal to `ignore_index` are left out; a batch with every label ignored gives 0 (with a graph), not NaN.
    """
    where = "cross_entropy_loss"
    check_tensor("logits", logits, where=where)
    if logits.ndim < 2:
        raise ValueError(f"{where}: logits must be (B, K, ...), got {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"{where}: labels must be {(logits.shape[0], *logits.shape[2:])} for logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise TypeError(f"{where}: labels must be an integer tensor, got {labels.dtype}")
    labels = labels.long()
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    bad = valid & ((labels < 0) | (labels >= logits.shape[1]))
    if bool(bad.any()):
        raise ValueError(
            f"{where}: labels must be in [0, {logits.shape[1]}) or {ignore_index}, got {labels[bad][:5].tolist()}"
        )
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


__all__ = ["check_same_shape", "check_tensor", "cross_entropy_loss", "kl_distillation_loss"]

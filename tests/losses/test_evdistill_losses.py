"""EvDistill losses (eq. 1–9) and the generic KD losses on hand-built tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_crossdistill.losses.evdistill import (
    EVDISTILL_TERMS,
    affinity_graph_loss,
    bmr_pixel_loss,
    conditional_features,
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
from hf_crossdistill.losses.kd import cross_entropy_loss, kl_distillation_loss

# ------------------------------------------------------------------------------------------ affinity graph


def _affinity_loop_reference(fs: torch.Tensor, ft: torch.Tensor, k: int) -> float:
    """Eq. 7 written literally: every node, every neighbour in its k×k window, zero outside the map."""
    b, _, h, w = fs.shape
    r = k // 2
    total, count = 0.0, 0
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        ii, jj = i + di, j + dj
                        affinities = []
                        for f in (ft, fs):
                            if 0 <= ii < h and 0 <= jj < w:
                                u, v = f[n, :, i, j], f[n, :, ii, jj]
                                denom = u.norm() * v.norm()
                                affinities.append(float(u @ v / denom) if denom > 0 else 0.0)
                            else:
                                affinities.append(0.0)
                        total += (affinities[0] - affinities[1]) ** 2
                        count += 1
    return total / count


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_affinity_graph_matches_loop_reference(kernel_size):
    fs, ft = torch.randn(2, 4, 3, 5), torch.randn(2, 6, 3, 5)  # channel counts may differ
    expected = _affinity_loop_reference(fs, ft, kernel_size)
    assert affinity_graph_loss(fs, ft, kernel_size) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert expected > 0


def test_affinity_graph_zero_for_identical_features_and_scale_invariant():
    f = torch.randn(2, 8, 6, 7)
    assert affinity_graph_loss(f, f.clone()) == pytest.approx(0.0, abs=1e-10)
    # Positive scaling (global and per sample) leaves cosine affinities, so the loss, unchanged.
    scale = torch.tensor([3.0, 0.01]).view(2, 1, 1, 1)
    assert affinity_graph_loss(f * scale, f) == pytest.approx(0.0, abs=1e-10)
    other = torch.randn(2, 5, 6, 7)
    base = affinity_graph_loss(f, other)
    assert affinity_graph_loss(7.0 * f, 0.2 * other) == pytest.approx(float(base), rel=1e-5)


def test_affinity_graph_gradient_and_validation():
    fs = torch.randn(1, 3, 4, 4, requires_grad=True)
    affinity_graph_loss(fs, torch.randn(1, 3, 4, 4)).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="spatial"):
        affinity_graph_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 5))
    with pytest.raises(ValueError, match="odd"):
        affinity_graph_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), kernel_size=2)
    with pytest.raises(ValueError, match="NaN"):
        affinity_graph_loss(torch.full((1, 3, 4, 4), float("nan")), torch.randn(1, 3, 4, 4))


# ------------------------------------------------------------------------------------------------- KL terms


def test_kl_zero_for_identical_logits_and_known_value():
    logits = torch.randn(3, 5, 4, 4)
    assert kl_distillation_loss(logits, logits.clone(), temperature=2.0) == pytest.approx(0.0, abs=1e-7)
    # Hand computation: p_T = (0.5, 0.5), p_S = softmax(0, ln 3) = (0.25, 0.75).
    student = torch.tensor([[0.0, math.log(3.0)]])
    teacher = torch.tensor([[0.0, 0.0]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_distillation_loss(student, teacher) == pytest.approx(expected, rel=1e-6)


def test_kl_temperature_scaling():
    student, teacher = torch.randn(4, 6), torch.randn(4, 6)
    tau = 3.0
    unscaled = kl_distillation_loss(student / tau, teacher / tau, temperature=1.0)
    assert kl_distillation_loss(student, teacher, temperature=tau) == pytest.approx(float(unscaled) * tau**2, rel=1e-5)
    # Per-position mean: the same map repeated spatially gives the same value as one position.
    s_map = student[:, :, None, None].expand(4, 6, 3, 2)
    t_map = teacher[:, :, None, None].expand(4, 6, 3, 2)
    assert kl_distillation_loss(s_map, t_map, tau) == pytest.approx(float(kl_distillation_loss(student, teacher, tau)))


def test_kl_mask_and_validation():
    s, t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = True
    expected = kl_distillation_loss(s[:1, :, :1, :1], t[:1, :, :1, :1])
    assert kl_distillation_loss(s, t, mask=mask) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="shapes must match"):
        kl_distillation_loss(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        kl_distillation_loss(s, t, temperature=0.0)


def test_dsc_da_md_terms():
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert dsc_loss(t, s, 2.0) == pytest.approx(float(kl_distillation_loss(s, t, 2.0)))
    assert da_event_loss(s, t) == pytest.approx(float(kl_distillation_loss(s, t)))
    assert da_aps_loss(s, t, t, t) == pytest.approx(float(kl_distillation_loss(s, t)), rel=1e-6)
    assert mutual_distillation_loss(s, s.clone()) == pytest.approx(0.0, abs=1e-7)
    # DSC keeps the teacher side differentiable (it trains G_T→S through the frozen teacher) ...
    t_req = t.clone().requires_grad_(True)
    dsc_loss(t_req, s).backward()
    assert t_req.grad is not None and t_req.grad.abs().sum() > 0
    # ... the DA terms do not, and MD trains each student only from its own term.
    t_req.grad = None
    s_req = s.clone().requires_grad_(True)
    da_event_loss(s_req, t_req).backward()
    assert t_req.grad is None and s_req.grad.abs().sum() > 0
    ev, aps = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    mutual_distillation_loss(ev, aps, temperature=2.0).backward()
    ev_only = s.clone().requires_grad_(True)
    kl_distillation_loss(ev_only, t, 2.0).backward()
    torch.testing.assert_close(ev.grad, ev_only.grad)


def test_cross_entropy_ignore_index():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, 0] = 255
    valid = labels != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], labels[valid])
    assert cross_entropy_loss(logits, labels) == pytest.approx(float(expected), rel=1e-6)
    all_ignored = cross_entropy_loss(logits, torch.full((2, 4, 4), 255))
    assert float(all_ignored) == 0.0 and not torch.isnan(all_ignored)
    with pytest.raises(ValueError, match="labels must be in"):
        cross_entropy_loss(logits, torch.full((2, 4, 4), 7))
    with pytest.raises(ValueError, match="labels must be"):
        cross_entropy_loss(logits, torch.zeros(2, 4, 5, dtype=torch.long))


# --------------------------------------------------------------------------------------- gradient reversal


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_gradient_reversal_flips_and_scales(scale):
    x = torch.randn(5, requires_grad=True)
    y = gradient_reversal(x, scale)
    torch.testing.assert_close(y, x)
    weights = torch.arange(1.0, 6.0)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -scale * weights)
    with pytest.raises(ValueError, match="scale"):
        gradient_reversal(x, -1.0)


# -------------------------------------------------------------------------------------- BMR pixel / cycle


def test_pixel_and_cycle_terms_on_known_inputs():
    generated = torch.zeros(1, 3, 2, 2)
    aps = torch.ones(1, 3, 2, 2)
    aps[0, 0, 0, 0] = 3.0
    # |0-1| on 11 entries, |0-3| on one: (11 + 3) / 12.
    assert bmr_pixel_loss(generated, aps) == pytest.approx(14 / 12)
    # A grayscale APS frame supervises the channel mean of the generated image.
    gen_rgb = torch.tensor([0.0, 0.3, 0.6]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert bmr_pixel_loss(gen_rgb, torch.full((1, 1, 2, 2), 0.5)) == pytest.approx(0.2)
    recon = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    assert cycle_consistency_loss(recon, torch.zeros_like(recon)) == pytest.approx(2.5 / 4)
    assert cycle_consistency_loss(recon, recon.clone()) == 0.0
    with pytest.raises(ValueError, match="shapes must match"):
        cycle_consistency_loss(recon, torch.zeros(1, 1, 3, 2))


# ----------------------------------------------------------------------------------------- adversarial


def test_adversarial_terms_on_known_logits():
    zeros = torch.zeros(2, 1, 3, 3)
    # σ(0) = 1/2 everywhere: −log(1/2) for every BCE half.
    assert generator_adversarial_loss(zeros) == pytest.approx(math.log(2.0))
    assert discriminator_adversarial_loss(zeros, zeros) == pytest.approx(math.log(2.0))
    assert generator_adversarial_loss(zeros, "lsgan") == pytest.approx(1.0)
    assert discriminator_adversarial_loss(torch.ones(2, 1), torch.zeros(2, 1), "lsgan") == pytest.approx(0.0)
    # A confident, correct discriminator has a small loss; the generator it beats has a large one.
    assert discriminator_adversarial_loss(torch.full((4,), 10.0), torch.full((4,), -10.0)) < 1e-3
    assert generator_adversarial_loss(torch.full((4,), -10.0)) > 9.0
    with pytest.raises(ValueError, match="gan_mode"):
        generator_adversarial_loss(zeros, "wgan")


# ------------------------------------------------------------------------------------- modality classifier


def test_conditional_features_outer_and_concat():
    feats = torch.randn(2, 3, 4, 4)
    logits = torch.randn(2, 5, 8, 8)  # prediction at a higher resolution than the features
    outer = conditional_features(feats, logits)
    assert outer.shape == (2, 15, 4, 4)
    probs = F.adaptive_avg_pool2d(logits.softmax(1), (4, 4))
    torch.testing.assert_close(outer.view(2, 3, 5, 4, 4), feats[:, :, None] * probs[:, None])
    # Summing the outer product over classes gives the features back (probabilities sum to 1).
    torch.testing.assert_close(outer.view(2, 3, 5, 4, 4).sum(2), feats, rtol=1e-5, atol=1e-5)
    assert conditional_features(feats, logits, "concat").shape == (2, 8, 4, 4)
    assert conditional_features(torch.randn(2, 3), torch.randn(2, 5)).shape == (2, 15, 1, 1)
    # Recognition: one prediction per image conditions every pixel feature.
    image_logits = torch.randn(2, 5)
    cond = conditional_features(feats, image_logits).view(2, 3, 5, 4, 4)
    torch.testing.assert_close(cond[..., 1, 2], feats[:, :, None, 1, 2] * image_logits.softmax(1)[:, None])
    with pytest.raises(ValueError, match="same batch"):
        conditional_features(feats, torch.randn(3, 5))


def test_modality_classification_loss_and_reversal_train_in_opposite_directions():
    source = torch.zeros(1, 1, 2, 2)
    target = torch.zeros(2, 1, 1, 1)
    assert modality_classification_loss(source, target) == pytest.approx(math.log(2.0))
    # 4 source pixels at logit -10 (correct), 2 target pixels at -10 (wrong): mean over all 6 pixels.
    loss = modality_classification_loss(torch.full((1, 1, 2, 2), -10.0), [torch.full((2,), -10.0)])
    expected = (4 * F.softplus(torch.tensor(-10.0)) + 2 * F.softplus(torch.tensor(10.0))) / 6
    assert loss == pytest.approx(float(expected), rel=1e-5)
    # Through gradient reversal, the feature side receives the negated gradient of the classifier's loss.
    feats = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(4, 1, requires_grad=True)
    modality_classification_loss(gradient_reversal(feats[:1]) @ w, gradient_reversal(feats[1:]) @ w).backward()
    reversed_grad = feats.grad.clone()
    feats.grad = None
    modality_classification_loss(feats[:1] @ w, feats[1:] @ w).backward()
    torch.testing.assert_close(reversed_grad, -feats.grad)


# ------------------------------------------------------------------------------------------------ total


def test_total_loss_weights_switches_and_errors():
    terms = {"ce_event": torch.tensor(1.0), "ag": torch.tensor(2.0), "md": torch.tensor(4.0)}
    total, weighted = evdistill_total_loss(terms, {"ce_event": 1.0, "ag": 0.5, "md": 0.0})
    assert float(total) == pytest.approx(2.0)
    assert set(weighted) == {"ce_event", "ag"}
    # A switched-off term may be missing altogether.
    total, _ = evdistill_total_loss({"ce_event": torch.tensor(1.0)}, {"ce_event": 2.0, "da_match": 0.0})
    assert float(total) == pytest.approx(2.0)
    with pytest.raises(KeyError, match="not computed"):
        evdistill_total_loss({"ce_event": torch.tensor(1.0)}, {"ce_event": 1.0, "ag": 1.0})
    with pytest.raises(KeyError, match="unknown"):
        evdistill_total_loss(terms, {"ce_evnt": 1.0})
    with pytest.raises(ValueError, match="NaN"):
        evdistill_total_loss({"ag": torch.tensor(float("nan"))}, {"ag": 1.0})
    with pytest.raises(ValueError, match="switched off"):
        evdistill_total_loss(terms, {"ag": 0.0})
    assert {"bmr_pixel", "bmr_dsc", "da_match", "ag", "md"} <= set(EVDISTILL_TERMS)

"""Distillation losses as pure functions: tensors in, scalar out.

- `unidistill`: UniDistill feature / relation / response distillation in BEV (eq. 3–8).
- `evdistill`: EvDistill BMR, adversarial, DSC, DA, modality-classifier, affinity-graph and mutual terms (eq. 1–9).
- `kd`: generic knowledge-distillation terms (temperature KL, cross-entropy with ignore label).
"""

from .evdistill import (
    affinity_graph_loss,
    bmr_pixel_loss,
    cycle_consistency_loss,
    evdistill_total_loss,
    gradient_reversal,
    mutual_distillation_loss,
)
from .kd import cross_entropy_loss, kl_distillation_loss
from .unidistill import (
    box_crucial_points,
    feature_distillation_loss,
    gaussian_box_mask,
    relation_distillation_loss,
    response_distillation_loss,
)

__all__ = [
    "affinity_graph_loss",
    "bmr_pixel_loss",
    "box_crucial_points",
    "cross_entropy_loss",
    "cycle_consistency_loss",
    "evdistill_total_loss",
    "feature_distillation_loss",
    "gaussian_box_mask",
    "gradient_reversal",
    "kl_distillation_loss",
    "mutual_distillation_loss",
    "relation_distillation_loss",
    "response_distillation_loss",
]

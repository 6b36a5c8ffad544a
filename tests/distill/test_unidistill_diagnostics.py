"""The measurements behind loss balancing and the periodic diagnostics, on hand-built tensors."""

from __future__ import annotations

import pytest
import torch

from hf_crossdistill.distill._diagnostics import (
    crucial_point_feature_statistics,
    gradient_norms,
    shared_parameter_gradient_norms,
)

SMALL_RANGE = (0.0, 0.0, 10.0, 10.0)  # 10 × 10 cells of 1 m


def test_gradient_norms_at_a_tensor_are_exact():
    at = torch.randn(2, 3, requires_grad=True)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    unrelated = torch.randn((), requires_grad=True) * 2
    norms = gradient_norms([(at * a).sum(), (at * b).sum() * 3, unrelated, torch.tensor(1.0)], at)
    expected = torch.stack([a.norm(), 3 * b.norm(), torch.tensor(0.0), torch.tensor(0.0)])
    torch.testing.assert_close(norms, expected)
    # The graph is kept: the step's own backward still runs afterwards.
    (at * a).sum().backward()
    with pytest.raises(ValueError, match="autograd graph"):
        gradient_norms([(at * a).sum()], torch.randn(2))
    with pytest.raises(ValueError, match="scalar"):
        gradient_norms([at * a], at)


def test_shared_parameter_gradient_norms_use_the_parameters_every_loss_reaches():
    p_shared, p_head = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    det = (p_shared * 2).sum() + (p_head * 5).sum()  # reaches both
    term = (p_shared * 3).sum()  # reaches only the shared parameter
    norms = shared_parameter_gradient_norms([det, term], [p_shared, p_head])
    torch.testing.assert_close(norms, torch.tensor([2.0 * 2, 3.0 * 2]))  # ‖(2,2,2,2)‖ = 4, ‖(3,3,3,3)‖ = 6
    # Nothing shared: zeros, not an error.
    only_head = (p_head * 1).sum()
    torch.testing.assert_close(shared_parameter_gradient_norms([term, only_head], [p_shared, p_head]), torch.zeros(2))
    with pytest.raises(ValueError, match="no parameters"):
        shared_parameter_gradient_norms([det], [])


def test_feature_statistics_at_the_crucial_points():
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    feature_map = torch.stack([cols, 2 * cols])[None]  # channel 1 spreads twice as much as channel 0
    boxes = torch.tensor([[[5.5, 5.5, 0.0, 2.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    stats = crucial_point_feature_statistics(feature_map, boxes, mask, SMALL_RANGE)
    # Columns at the 9 points of a 2 m box centred on cell (5, 5): 4, 5, 6 three times each.
    col = torch.tensor([4.0, 5.0, 6.0]).repeat(3)
    torch.testing.assert_close(stats["rms"], torch.sqrt(((col**2).mean() + (4 * col**2).mean()) / 2))
    std0 = col.std(unbiased=False)
    torch.testing.assert_close(stats["channel_std_mean"], 1.5 * std0)
    torch.testing.assert_close(stats["channel_std_spread"], torch.tensor(2.0))
    empty = crucial_point_feature_statistics(feature_map, boxes, torch.zeros_like(mask), SMALL_RANGE)
    assert all(float(v) == 0.0 for v in empty.values())

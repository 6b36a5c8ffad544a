"""UniDistill losses on hand-built tensors: geometry, sampling, masks, padding, known values, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from hf_crossdistill.losses.unidistill import (
    CRUCIAL_POINT_NAMES,
    bev_sample,
    box_crucial_points,
    feature_distillation_loss,
    foreground_feature_distillation_loss,
    gaussian_box_mask,
    gaussian_radius,
    relation_distillation_loss,
    response_distillation_loss,
)

PAPER_RANGE = (-54.0, -54.0, 54.0, 54.0)  # 180 × 180 cells of 0.6 m
SMALL_RANGE = (0.0, 0.0, 10.0, 10.0)  # 10 × 10 cells of 1 m


def make_boxes(rows: list[list[float]], pad_to: int | None = None, pad_value: float = 0.0):
    """(1, M, 9) boxes and their (1, M) mask from [x, y, l, w, yaw] rows, optionally padded."""
    full = [[x, y, 0.0, l, w, 1.5, yaw, 0.0, 0.0] for x, y, l, w, yaw in rows]
    boxes = torch.tensor(full, dtype=torch.float32).reshape(1, len(rows), 9)
    mask = torch.ones(1, len(rows), dtype=torch.bool)
    if pad_to is not None and pad_to > len(rows):
        pad = torch.full((1, pad_to - len(rows), 9), pad_value)
        boxes = torch.cat([boxes, pad], dim=1)
        mask = torch.cat([mask, torch.zeros(1, pad_to - len(rows), dtype=torch.bool)], dim=1)
    return boxes, mask


def reference_gaussian_radius(height: float, width: float, min_overlap: float) -> float:
    """CornerNet / CenterPoint gaussian_radius, evaluated directly with math (the reference formula)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * 4 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


# ---------------------------------------------------------------------------------------------- geometry


def test_crucial_points_of_a_rotated_box_in_documented_order():
    # l = 4 along the heading, w = 2, heading +y (yaw 90°): front is +y, left is −x.
    boxes = torch.tensor([1.0, 2.0, 0.0, 4.0, 2.0, 1.0, math.pi / 2])
    points = box_crucial_points(boxes)
    expected = {
        "front_left": (0.0, 4.0),
        "rear_left": (0.0, 0.0),
        "rear_right": (2.0, 0.0),
        "front_right": (2.0, 4.0),
        "center": (1.0, 2.0),
        "front": (1.0, 4.0),
        "left": (0.0, 2.0),
        "rear": (1.0, 0.0),
        "right": (2.0, 2.0),
    }
    assert points.shape == (9, 2)
    for i, name in enumerate(CRUCIAL_POINT_NAMES):
        torch.testing.assert_close(points[i], torch.tensor(expected[name]), atol=1e-6, rtol=0, msg=name)


def test_crucial_points_batched_shapes_and_midpoints():
    boxes = torch.randn(2, 3, 9)
    boxes[..., 3:5] = boxes[..., 3:5].abs() + 0.5
    points = box_crucial_points(boxes)  # (2, 3, 9, 2)
    assert points.shape == (2, 3, 9, 2)
    corners = points[..., :4, :]
    torch.testing.assert_close(points[..., 4, :], corners.mean(dim=-2), atol=1e-5, rtol=0)
    # Each edge midpoint sits halfway between two consecutive corners (front = FR→FL, left = FL→RL, ...).
    for mid, (a, b) in zip((5, 6, 7, 8), ((3, 0), (0, 1), (1, 2), (2, 3))):
        torch.testing.assert_close(
            points[..., mid, :], (corners[..., a, :] + corners[..., b, :]) / 2, atol=1e-5, rtol=0
        )


def test_crucial_points_validation():
    with pytest.raises(ValueError, match="box_crucial_points"):
        box_crucial_points(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="box_crucial_points"):
        box_crucial_points([[0.0] * 7])


# ---------------------------------------------------------------------------------------------- sampling


def test_box_at_30_m_minus_20_m_lies_in_row_56_col_140_not_the_swapped_cell():
    boxes, _ = make_boxes([[30.0, -20.0, 4.0, 2.0, 0.0]])
    centre = box_crucial_points(boxes)[:, :, 4:5]  # (1, 1, 1, 2)
    # A map encoding (col, row) of every cell: bilinear sampling of a linear map gives the continuous index.
    rows, cols = torch.meshgrid(torch.arange(180.0), torch.arange(180.0), indexing="ij")
    index_map = torch.stack([cols, rows])[None]  # (1, 2, 180, 180)
    col, row = bev_sample(index_map, centre, PAPER_RANGE)[0, 0, 0].tolist()
    # x = 30 m is the left edge of column 140 (centre at 30.3 m), y = −20 m is 2/3 into row 56.
    assert col == pytest.approx(139.5, abs=1e-4)
    assert row == pytest.approx(56 + 2 / 3 - 0.5, abs=1e-4)
    assert math.floor(col + 0.5) == 140 and math.floor(row + 0.5) == 56

    one_hot = torch.zeros(1, 1, 180, 180)
    one_hot[0, 0, 56, 140] = 1.0
    # Bilinear weight of cell (56, 140): 0.5 along x (on the edge) × 5/6 along y.
    assert bev_sample(one_hot, centre, PAPER_RANGE).item() == pytest.approx(0.5 * 5 / 6, abs=1e-5)
    swapped = torch.zeros(1, 1, 180, 180)
    swapped[0, 0, 140, 56] = 1.0
    assert bev_sample(swapped, centre, PAPER_RANGE).item() == 0.0
    # At the centre of cell (56, 140) the sample reads exactly that cell.
    at_centre = torch.tensor([[[-54 + 140.5 * 0.6, -54 + 56.5 * 0.6]]])  # (1, 1, 2)
    assert bev_sample(one_hot, at_centre, PAPER_RANGE).item() == pytest.approx(1.0, abs=1e-4)  # float32 grid
    # And the response mask centres the box on the same cell.
    mask = gaussian_box_mask(*make_boxes([[30.0, -20.0, 4.0, 2.0, 0.0]]), PAPER_RANGE, (180, 180), min_overlap=0.7)
    assert mask[0, 56, 140].item() == 1.0
    assert mask[0, 140, 56].item() == 0.0


def test_bilinear_interpolation_between_cell_centres():
    fmap = torch.zeros(1, 1, 10, 10)
    fmap[0, 0, 2, 3] = 1.0  # centre (3.5, 2.5)
    fmap[0, 0, 2, 4] = 3.0  # centre (4.5, 2.5)
    fmap[0, 0, 3, 3] = 5.0  # centre (3.5, 3.5)
    points = torch.tensor([[[3.5, 2.5], [4.0, 2.5], [3.75, 2.5], [3.5, 3.0], [3.75, 2.75]]])  # (1, 5, 2)
    values = bev_sample(fmap, points, SMALL_RANGE)[0, :, 0]
    expected = [1.0, 2.0, 1.5, 3.0, 0.75 * 0.75 * 1 + 0.75 * 0.25 * 3 + 0.25 * 0.75 * 5]
    torch.testing.assert_close(values, torch.tensor(expected), atol=1e-6, rtol=0)


def test_sampling_outside_the_map_gives_zero():
    fmap = torch.ones(1, 2, 10, 10)
    points = torch.tensor([[[11.0, 5.0], [-0.6, 5.0], [5.0, 10.6], [10.0, 5.0], [9.5, 9.5]]])
    values = bev_sample(fmap, points, SMALL_RANGE)[0]  # (5, 2)
    torch.testing.assert_close(values[:, 0], torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]), atol=1e-6, rtol=0)
    assert torch.equal(values[:, 0], values[:, 1])


def test_bev_sample_validation():
    with pytest.raises(ValueError, match="feature_map"):
        bev_sample(torch.zeros(2, 10, 10), torch.zeros(2, 1, 2), SMALL_RANGE)
    with pytest.raises(ValueError, match="points_xy"):
        bev_sample(torch.zeros(1, 1, 10, 10), torch.zeros(1, 3), SMALL_RANGE)
    with pytest.raises(ValueError, match="bev_range"):
        bev_sample(torch.zeros(1, 1, 10, 10), torch.zeros(1, 1, 2), (0, 0, -1, 10))
    with pytest.raises(ValueError, match="batch"):
        bev_sample(torch.zeros(2, 1, 10, 10), torch.zeros(1, 1, 2), SMALL_RANGE)


# ---------------------------------------------------------------------------------------------- mask


@pytest.mark.parametrize(
    ("length", "width", "min_overlap", "min_radius"),
    [(4.5, 1.9, 0.1, 2), (4.5, 1.9, 0.7, 0), (0.7, 0.7, 0.7, 0), (12.0, 2.9, 0.1, 2), (12.0, 2.9, 0.7, 0)],
)
def test_mask_radius_matches_the_gaussian_radius_formula(length, width, min_overlap, min_radius):
    expected_radius = max(min_radius, math.floor(reference_gaussian_radius(length / 0.6, width / 0.6, min_overlap)))
    radius = gaussian_radius(torch.tensor(length / 0.6), torch.tensor(width / 0.6), min_overlap)
    assert radius.item() == pytest.approx(reference_gaussian_radius(length / 0.6, width / 0.6, min_overlap), rel=1e-5)

    boxes, mask = make_boxes([[0.1, 0.1, length, width, 0.7]])  # centre cell (90, 90)
    heat = gaussian_box_mask(boxes, mask, PAPER_RANGE, (180, 180), min_overlap=min_overlap, min_radius=min_radius)[0]
    rows, cols = torch.nonzero(heat, as_tuple=True)
    assert rows.min().item() == 90 - expected_radius and rows.max().item() == 90 + expected_radius
    assert cols.min().item() == 90 - expected_radius and cols.max().item() == 90 + expected_radius
    assert heat[90, 90].item() == 1.0
    sigma = (2 * expected_radius + 1) / 6
    for dy, dx in [(0, expected_radius), (expected_radius, expected_radius), (-expected_radius, 1)]:
        if abs(dx) <= expected_radius:
            assert heat[90 + dy, 90 + dx].item() == pytest.approx(
                math.exp(-(dx**2 + dy**2) / (2 * sigma**2)), rel=1e-5
            )


def test_mask_is_clipped_at_the_border_merged_with_max_and_skips_off_map_centres():
    boxes, mask = make_boxes(
        [
            [0.5, 0.5, 0.1, 0.1, 0.0],  # corner cell (0, 0)
            [5.5, 5.5, 0.1, 0.1, 0.0],  # cell (5, 5)
            [6.5, 5.5, 0.1, 0.1, 0.0],  # cell (5, 6), windows overlap
            [12.0, 5.0, 0.1, 0.1, 0.0],  # centre off the map: skipped
        ]
    )
    heat = gaussian_box_mask(boxes, mask, SMALL_RANGE, (10, 10), min_overlap=0.7, min_radius=1)[0]
    edge, corner = math.exp(-2.0), math.exp(-4.0)  # σ = 0.5
    assert heat[0, 0] == 1.0 and heat[0, 1] == pytest.approx(edge) and heat[1, 1] == pytest.approx(corner)
    assert heat[5, 5] == 1.0 and heat[5, 6] == 1.0  # max, not sum
    assert heat[4, 5] == pytest.approx(edge) and heat[4, 6] == pytest.approx(edge)
    assert heat[:, 8:].sum() == 0  # the off-map box left nothing near the right border
    assert (heat > 0).sum() == 4 + 12


def test_mask_padding_rows_leave_no_ego_cell():
    boxes, mask = make_boxes([[30.0, -20.0, 4.0, 2.0, 0.0]], pad_to=5)
    heat = gaussian_box_mask(boxes, mask, PAPER_RANGE, (180, 180), min_overlap=0.1, min_radius=2)
    assert heat[0, 90, 90] == 0.0
    alone = gaussian_box_mask(
        *make_boxes([[30.0, -20.0, 4.0, 2.0, 0.0]]), PAPER_RANGE, (180, 180), min_overlap=0.1, min_radius=2
    )
    assert torch.equal(heat, alone)
    empty = gaussian_box_mask(boxes, torch.zeros_like(mask), PAPER_RANGE, (180, 180), min_overlap=0.1)
    assert empty.sum() == 0


def test_mask_validation():
    boxes, mask = make_boxes([[1.0, 1.0, 1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_box_mask(boxes, mask, SMALL_RANGE, (10, 10), min_overlap=1.5)
    with pytest.raises(ValueError, match="min_radius"):
        gaussian_box_mask(boxes, mask, SMALL_RANGE, (10, 10), min_overlap=0.5, min_radius=-1)
    with pytest.raises(TypeError, match="gt_mask"):
        gaussian_box_mask(boxes, mask.float(), SMALL_RANGE, (10, 10), min_overlap=0.5)
    bad = boxes.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gaussian_box_mask(bad, mask, SMALL_RANGE, (10, 10), min_overlap=0.5)
    bad = boxes.clone()
    bad[0, 0, 3] = -1.0
    with pytest.raises(ValueError, match="negative"):
        gaussian_box_mask(bad, mask, SMALL_RANGE, (10, 10), min_overlap=0.5)


# ---------------------------------------------------------------------------------------------- losses

BOXES = [[5.5, 5.5, 2.0, 2.0, 0.0], [3.2, 6.1, 1.5, 1.0, 0.4]]


def random_maps(channels: int = 3):
    return torch.randn(1, channels, 10, 10), torch.randn(1, channels, 10, 10)


@pytest.mark.parametrize("loss_fn", [feature_distillation_loss, relation_distillation_loss])
def test_point_losses_are_zero_when_teacher_equals_student(loss_fn):
    student, _ = random_maps()
    boxes, mask = make_boxes(BOXES)
    assert loss_fn(student, student.clone(), boxes, mask, SMALL_RANGE).item() == pytest.approx(0.0, abs=1e-7)


def test_response_loss_is_zero_when_teacher_equals_student():
    heat, reg = torch.randn(1, 2, 10, 10), torch.randn(1, 4, 10, 10)
    boxes, mask = make_boxes(BOXES)
    loss = response_distillation_loss(heat, reg, heat.clone(), reg.clone(), boxes, mask, SMALL_RANGE, min_radius=2)
    assert loss.item() == 0.0


def test_feature_loss_known_value():
    # Teacher channel 0 = column index, channel 1 = 2 × row index (linear, so bilinear sampling is exact);
    # student = 0. Per box the mean over 9 points of col is the centre's col (points are symmetric).
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    teacher = torch.stack([cols, 2 * rows])[None]
    student = torch.zeros_like(teacher)
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [4.0, 3.0, 1.0, 2.0, 0.3]])
    box_values = [(5.0 + 2 * 5.0) / 2, (3.5 + 2 * 2.5) / 2]
    loss = feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    assert loss.item() == pytest.approx(sum(box_values) / 2, rel=1e-5)


def _random_point_maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    teacher = (
        torch.randn(1, 6, 10, 10, generator=generator) * torch.tensor([1.0, 5.0, 0.1, 2.0, 30.0, 0.5])[:, None, None]
    )
    student = torch.randn(1, 6, 10, 10, generator=generator)
    return student, teacher


def test_layer_normalised_feature_loss_ignores_each_vectors_scale_and_offset():
    student, teacher = _random_point_maps()
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [3.0, 6.0, 1.0, 2.0, 0.4]])
    # A student that is the teacher up to a positive scale and an offset per BEV cell: zero after normalisation.
    affine = 3.0 * teacher + torch.linspace(-2, 2, 10)[None, None, :, None]
    assert feature_distillation_loss(affine, teacher, boxes, mask, SMALL_RANGE, normalize="layer") < 1e-4
    assert feature_distillation_loss(affine, teacher, boxes, mask, SMALL_RANGE) > 1.0
    # Known value: the paper's L1 on vectors standardised over channels (biased variance, eps 1e-5).
    points = box_crucial_points(boxes)
    s, t = bev_sample(student, points, SMALL_RANGE), bev_sample(teacher, points, SMALL_RANGE)  # (1, 2, 9, 6)

    def standardise(v):
        return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-5)

    expected = (standardise(s) - standardise(t)).abs().mean()
    got = feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize="layer")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_channel_normalised_feature_loss_weights_each_channel_by_the_teacher_spread():
    student, teacher = _random_point_maps(1)
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [3.0, 6.0, 1.0, 2.0, 0.4]], pad_to=3, pad_value=float("nan"))
    points = box_crucial_points(torch.where(mask[..., None], boxes, 0.0))
    s, t = bev_sample(student, points, SMALL_RANGE)[:, :2], bev_sample(teacher, points, SMALL_RANGE)[:, :2]
    # Teacher statistics over the 2 valid boxes × 9 points only (the padded row is ignored).
    mean, var = t.reshape(-1, 6).mean(0), t.reshape(-1, 6).var(0, unbiased=False)
    expected = ((s - t).abs() / torch.sqrt(var + 1e-5)).mean()
    got = feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize="channel")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert mean.abs().sum() > 0  # the mean cancels in the difference; the spread is what weights the channels
    # Scaling one teacher channel and the student's alike leaves the loss unchanged (the raw loss is not).
    scale = torch.tensor([1.0, 1.0, 1.0, 1.0, 100.0, 1.0])[None, :, None, None]
    scaled = feature_distillation_loss(student * scale, teacher * scale, boxes, mask, SMALL_RANGE, normalize="channel")
    assert scaled.item() == pytest.approx(got.item(), rel=1e-4)
    raw = feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    assert feature_distillation_loss(student * scale, teacher * scale, boxes, mask, SMALL_RANGE) > 10 * raw


@pytest.mark.parametrize("normalize", ["layer", "channel"])
def test_normalised_feature_loss_gradients_reach_the_student_only(normalize):
    student, teacher = _random_point_maps(2)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0]])
    feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize=normalize).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0 and torch.isfinite(student.grad).all()
    assert teacher.grad is None


def test_feature_loss_refuses_an_unknown_normalisation():
    student, teacher = _random_point_maps()
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match="normalize must be one of"):
        feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize="batch")


def test_foreground_feature_loss_is_the_mask_weighted_mean_of_per_cell_l1():
    student, teacher = _random_point_maps(3)
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [2.5, 7.5, 3.0, 1.0, 0.2]], pad_to=3, pad_value=float("nan"))
    weights = gaussian_box_mask(boxes, mask, SMALL_RANGE, (10, 10), min_overlap=0.1, min_radius=2)[0]  # (H, W)
    per_cell = (student - teacher).abs().mean(dim=1)[0]  # (H, W)
    expected = (per_cell * weights).sum() / weights.sum()
    got = foreground_feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # Cells away from every box do not count: changing the student there leaves the loss unchanged.
    far = student.clone()
    far[..., weights == 0] += 100.0
    assert foreground_feature_distillation_loss(far, teacher, boxes, mask, SMALL_RANGE).item() == pytest.approx(
        got.item(), rel=1e-5
    )
    # Layer normalisation: a per-cell positive scale of the teacher costs nothing.
    scaled = teacher * torch.linspace(0.5, 3, 10)[None, None, None, :]
    assert foreground_feature_distillation_loss(scaled, teacher, boxes, mask, SMALL_RANGE, normalize="layer") < 1e-4
    # Channel normalisation with mask-weighted teacher statistics.
    mean = (teacher[0] * weights).sum((1, 2)) / weights.sum()
    var = (((teacher[0] - mean[:, None, None]) ** 2) * weights).sum((1, 2)) / weights.sum()
    per_cell = ((student - teacher)[0].abs() / torch.sqrt(var + 1e-5)[:, None, None]).mean(0)
    expected = (per_cell * weights).sum() / weights.sum()
    got = foreground_feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize="channel")
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    # No box: zero with a graph; unknown normalisation: a clear error.
    student.requires_grad_(True)
    none = foreground_feature_distillation_loss(student, teacher, boxes, torch.zeros_like(mask), SMALL_RANGE)
    assert none.item() == 0 and none.requires_grad
    with pytest.raises(ValueError, match="normalize must be one of"):
        foreground_feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE, normalize="x")
    with pytest.raises(ValueError, match="same"):
        foreground_feature_distillation_loss(student[:, :3], teacher, boxes, mask, SMALL_RANGE)


def test_relation_loss_known_value():
    # Box points on cell centres of cols 4..6 / rows 4..6. Teacher: (0, 1) in column 6 (the 3 front points),
    # (1, 0) elsewhere; student (1, 0) everywhere. 36 of 81 entries differ by 1.
    teacher = torch.zeros(1, 2, 10, 10)
    teacher[0, 0] = 1.0
    teacher[0, 0, :, 6] = 0.0
    teacher[0, 1, :, 6] = 1.0
    student = torch.zeros(1, 2, 10, 10)
    student[0, 0] = 3.0
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0]])
    loss = relation_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    assert loss.item() == pytest.approx(36 / 81, rel=1e-6)


def test_relation_loss_is_invariant_to_positive_scaling_per_point():
    student, teacher = random_maps(4)
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [3.5, 3.5, 2.0, 4.0, math.pi / 2]])  # on cell centres
    scale = torch.rand(1, 1, 10, 10) * 10 + 0.1
    base = relation_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    scaled = relation_distillation_loss(student * scale, teacher, boxes, mask, SMALL_RANGE)
    assert base.item() > 0.05
    assert scaled.item() == pytest.approx(base.item(), abs=1e-6)


def test_response_loss_known_values_and_temperatures():
    boxes, mask = make_boxes([[5.5, 5.5, 0.1, 0.1, 0.0]])  # radius 0 → mask is the single cell (5, 5)
    student_heat = torch.zeros(1, 2, 10, 10)  # sigmoid 0.5
    teacher_heat = torch.full((1, 2, 10, 10), -5.0)
    teacher_heat[:, 0] = math.log(3.0)  # sigmoid 0.75 is the class max
    student_reg = torch.zeros(1, 2, 10, 10)
    teacher_reg = torch.stack([torch.ones(10, 10), 3 * torch.ones(10, 10)])[None]
    loss = response_distillation_loss(student_heat, student_reg, teacher_heat, teacher_reg, boxes, mask, SMALL_RANGE)
    assert loss.item() == pytest.approx(0.25 + 2.0, rel=1e-6)

    loss_t2 = response_distillation_loss(
        student_heat, student_reg, teacher_heat, teacher_reg, boxes, mask, SMALL_RANGE, teacher_temperature=2.0
    )
    assert loss_t2.item() == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)) - 0.5 + 2.0, rel=1e-6)
    loss_s2 = response_distillation_loss(
        student_heat + 2.0, student_reg, teacher_heat, teacher_reg, boxes, mask, SMALL_RANGE, student_temperature=2.0
    )  # sigmoid(1) vs 0.75
    assert loss_s2.item() == pytest.approx(abs(1 / (1 + math.exp(-1)) - 0.75) + 2.0, rel=1e-6)

    # min_radius 1: 3 × 3 window with σ = 0.5; the regression differs only at the centre cell.
    teacher_reg_centre = torch.zeros(1, 2, 10, 10)
    teacher_reg_centre[0, :, 5, 5] = torch.tensor([1.0, 3.0])
    mask_sum = 1 + 4 * math.exp(-2) + 4 * math.exp(-4)
    loss_r1 = response_distillation_loss(
        student_heat, student_reg, teacher_heat, teacher_reg_centre, boxes, mask, SMALL_RANGE, min_radius=1
    )
    assert loss_r1.item() == pytest.approx(0.25 + 2.0 / mask_sum, rel=1e-6)


def test_padded_rows_contribute_nothing_to_any_loss():
    student, teacher = random_maps()
    heat_s, heat_t = torch.randn(1, 3, 10, 10), torch.randn(1, 3, 10, 10)
    reg_s, reg_t = torch.randn(1, 4, 10, 10), torch.randn(1, 4, 10, 10)
    plain = make_boxes(BOXES)
    padded_zero = make_boxes(BOXES, pad_to=6)
    padded_nan = make_boxes(BOXES, pad_to=6, pad_value=float("nan"))
    for boxes, mask in (padded_zero, padded_nan):
        for fn in (feature_distillation_loss, relation_distillation_loss):
            assert fn(student, teacher, boxes, mask, SMALL_RANGE).item() == pytest.approx(
                fn(student, teacher, *plain, SMALL_RANGE).item(), abs=1e-7
            )
        kwargs = {"min_radius": 2}
        padded = response_distillation_loss(heat_s, reg_s, heat_t, reg_t, boxes, mask, SMALL_RANGE, **kwargs)
        reference = response_distillation_loss(heat_s, reg_s, heat_t, reg_t, *plain, SMALL_RANGE, **kwargs)
        assert padded.item() == pytest.approx(reference.item(), abs=1e-7)


def test_losses_average_over_valid_boxes_of_the_batch():
    # Batch of 2 with 1 and 2 valid boxes: the feature loss is the mean over the 3 boxes, not over samples.
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    teacher = cols.expand(2, 1, 10, 10).clone()
    student = torch.zeros_like(teacher)
    boxes = torch.zeros(2, 2, 9)
    boxes[0, 0, [0, 1, 3, 4]] = torch.tensor([2.5, 5.0, 1.0, 1.0])  # col 2
    boxes[1, 0, [0, 1, 3, 4]] = torch.tensor([6.5, 5.0, 1.0, 1.0])  # col 6
    boxes[1, 1, [0, 1, 3, 4]] = torch.tensor([7.5, 5.0, 1.0, 1.0])  # col 7
    mask = torch.tensor([[True, False], [True, True]])
    loss = feature_distillation_loss(student, teacher, boxes, mask, SMALL_RANGE)
    assert loss.item() == pytest.approx((2 + 6 + 7) / 3, rel=1e-6)


def test_no_valid_box_gives_zero_loss_with_a_graph():
    student, teacher = random_maps()
    student.requires_grad_(True)
    boxes, mask = make_boxes(BOXES)
    mask[:] = False
    for fn in (feature_distillation_loss, relation_distillation_loss):
        loss = fn(student, teacher, boxes, mask, SMALL_RANGE)
        assert loss.item() == 0.0 and loss.requires_grad
    heat = torch.randn(1, 2, 10, 10, requires_grad=True)
    loss = response_distillation_loss(heat, heat, heat.detach(), heat.detach() + 1, boxes, mask, SMALL_RANGE)
    assert loss.item() == 0.0 and loss.requires_grad


def test_gradients_flow_to_the_student_only():
    student_low, teacher_low = (t.requires_grad_(True) for t in random_maps())
    student_high, teacher_high = (t.requires_grad_(True) for t in random_maps(5))
    heat_s, heat_t = torch.randn(1, 3, 10, 10, requires_grad=True), torch.randn(1, 3, 10, 10, requires_grad=True)
    reg_s, reg_t = torch.randn(1, 4, 10, 10, requires_grad=True), torch.randn(1, 4, 10, 10, requires_grad=True)
    # The second box sticks out of the map: zero vectors must not give NaN gradients in the relation loss.
    boxes, mask = make_boxes([[5.5, 5.5, 2.0, 2.0, 0.0], [9.9, 9.9, 3.0, 3.0, 0.0]], pad_to=3)
    total = (
        feature_distillation_loss(student_low, teacher_low, boxes, mask, SMALL_RANGE)
        + relation_distillation_loss(student_high, teacher_high, boxes, mask, SMALL_RANGE)
        + response_distillation_loss(heat_s, reg_s, heat_t, reg_t, boxes, mask, SMALL_RANGE, min_radius=1)
    )
    total.backward()
    for student in (student_low, student_high, heat_s, reg_s):
        assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    for teacher in (teacher_low, teacher_high, heat_t, reg_t):
        assert teacher.grad is None


def test_loss_input_validation():
    student, teacher = random_maps()
    boxes, mask = make_boxes(BOXES)
    with pytest.raises(ValueError, match="same"):
        feature_distillation_loss(student, torch.randn(1, 4, 10, 10), boxes, mask, SMALL_RANGE)
    with pytest.raises(ValueError, match="gt_mask"):
        relation_distillation_loss(student, teacher, boxes, mask[:, :1], SMALL_RANGE)
    with pytest.raises(ValueError, match="batch size"):
        feature_distillation_loss(student, teacher, torch.cat([boxes, boxes]), torch.cat([mask, mask]), SMALL_RANGE)
    nan_map = student.clone()
    nan_map[0, :, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        feature_distillation_loss(nan_map, teacher, boxes, mask, SMALL_RANGE)
    heat, reg = torch.randn(1, 2, 10, 10), torch.randn(1, 4, 10, 10)
    with pytest.raises(ValueError, match="teacher_temperature"):
        response_distillation_loss(heat, reg, heat, reg, boxes, mask, SMALL_RANGE, teacher_temperature=0.0)
    with pytest.raises(ValueError, match="regression"):
        response_distillation_loss(heat, reg[..., :5], heat, reg[..., :5], boxes, mask, SMALL_RANGE)


# ---------------------------------------------------------------------------------------------- distributed


def _global_batch():
    generator = torch.Generator().manual_seed(0)
    maps = {
        "low": torch.randn(2, 3, 10, 10, generator=generator),
        "high": torch.randn(2, 4, 10, 10, generator=generator),
        "heat": torch.randn(2, 2, 10, 10, generator=generator),
        "reg": torch.randn(2, 5, 10, 10, generator=generator),
    }
    teacher = {k: torch.randn(v.shape, generator=generator) for k, v in maps.items()}
    boxes = torch.zeros(2, 3, 9)
    boxes[0, 0, [0, 1, 3, 4, 6]] = torch.tensor([2.2, 3.1, 2.0, 1.0, 0.3])
    boxes[1, :, [0, 1, 3, 4, 6]] = torch.tensor(
        [[6.6, 5.2, 3.0, 1.5, 1.0], [1.4, 8.3, 1.0, 1.0, -0.5], [8.0, 2.0, 4.0, 2.0, 2.0]]
    )
    mask = torch.tensor([[True, False, False], [True, True, True]])  # 1 and 3 valid boxes: uneven per rank
    return maps, teacher, boxes, mask


def _distillation_losses(scale: torch.Tensor, maps, teacher, boxes, mask) -> list[torch.Tensor]:
    return [
        feature_distillation_loss(scale * maps["low"], teacher["low"], boxes, mask, SMALL_RANGE),
        relation_distillation_loss(maps["high"] + scale, teacher["high"], boxes, mask, SMALL_RANGE),
        response_distillation_loss(
            scale * maps["heat"],
            scale * maps["reg"],
            teacher["heat"],
            teacher["reg"],
            boxes,
            mask,
            SMALL_RANGE,
            min_radius=1,
        ),
    ]


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        maps, teacher, boxes, mask = _global_batch()
        local = [{k: v[rank : rank + 1] for k, v in d.items()} for d in (maps, teacher)]
        values, grads = [], []
        for i in range(3):
            scale = torch.tensor(1.3, requires_grad=True)
            loss = _distillation_losses(scale, *local, boxes[rank : rank + 1], mask[rank : rank + 1])[i]
            loss.backward()
            # What DDP does: average the gradients (and we average the logged values) over ranks.
            pair = torch.stack([loss.detach(), scale.grad])
            dist.all_reduce(pair)
            values.append(pair[0].item() / 2)
            grads.append(pair[1].item() / 2)
        if rank == 0:
            torch.save({"values": values, "grads": grads}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.multiprocess
def test_normalisers_are_global_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    out_file = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    result = torch.load(out_file)
    maps, teacher, boxes, mask = _global_batch()
    for i in range(3):
        scale = torch.tensor(1.3, requires_grad=True)
        loss = _distillation_losses(scale, maps, teacher, boxes, mask)[i]
        loss.backward()
        assert result["values"][i] == pytest.approx(loss.item(), rel=1e-5, abs=1e-7), f"loss {i}"
        assert result["grads"][i] == pytest.approx(scale.grad.item(), rel=1e-5, abs=1e-7), f"gradient {i}"

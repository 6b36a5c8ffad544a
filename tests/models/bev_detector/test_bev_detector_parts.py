"""Numerical checks of the detector parts against plain, obviously-correct references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bev_detector_helpers import TINY_PRESETS, ring_cameras
from testing_utils import tiny_config

from hf_crossdistill.models.bev_detector import BEVDetectorConfig
from hf_crossdistill.models.bev_detector.camera_encoder import (
    bev_pool,
    bev_pool_reference,
    depth_loss,
    frustum_cells,
    frustum_points,
    lidar_depth_targets,
)
from hf_crossdistill.models.bev_detector.centerpoint_head import (
    circle_nms,
    decode_boxes,
    gaussian_radius,
    heatmap_targets,
    regression_targets,
    undo_bev_augmentation,
)
from hf_crossdistill.models.bev_detector.lidar_encoder import Voxelizer, mean_voxel_features
from hf_crossdistill.models.bev_detector.sparse_conv import SparseConv3d, SparseVoxels, SubmanifoldConv3d

# ---------------------------------------------------------------------------------------------------------------
# BEV pooling
# ---------------------------------------------------------------------------------------------------------------


def _random_pool_inputs(seed: int = 0, pixels: int = 300, bins: int = 7, channels: int = 5, cells: int = 40):
    gen = torch.Generator().manual_seed(seed)
    depth = torch.rand(pixels, bins, generator=gen).softmax(-1).requires_grad_()
    context = torch.randn(pixels, channels, generator=gen).requires_grad_()
    cell = torch.randint(0, cells, (pixels, bins), generator=gen)
    valid = torch.rand(pixels, bins, generator=gen) < 0.7
    return depth, context, cell, valid, cells


def test_bev_pool_matches_materialised_reference_values_and_gradients():
    depth, context, cell, valid, cells = _random_pool_inputs()
    out = bev_pool(depth, context, cell, valid, cells)
    ref = bev_pool_reference(depth, context, cell, valid, cells)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(ref)
    grads = torch.autograd.grad((out * weights).sum(), (depth, context))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (depth, context))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_bev_pool_loop_reference_and_gradcheck():
    depth, context, cell, valid, cells = _random_pool_inputs(seed=1, pixels=20, bins=3, channels=2, cells=6)
    out = bev_pool(depth, context, cell, valid, cells)
    expected = torch.zeros(cells, 2)
    for p in range(20):
        for d in range(3):
            if valid[p, d]:
                expected[cell[p, d]] += depth[p, d].detach() * context[p].detach()
    torch.testing.assert_close(out.detach(), expected, atol=1e-6, rtol=1e-6)
    double = [t.detach().double().requires_grad_() for t in (depth, context)]
    # The pooling computes in float32; gradcheck with a matching tolerance.
    assert torch.autograd.gradcheck(
        lambda d, c: bev_pool(d, c, cell, valid, cells).double(), double, eps=1e-3, atol=1e-3, rtol=1e-3
    )


def test_bev_pool_rejects_mismatched_shapes():
    depth, context, cell, valid, cells = _random_pool_inputs()
    with pytest.raises(ValueError, match="bev_pool"):
        bev_pool(depth, context[:-1], cell, valid, cells)


# ---------------------------------------------------------------------------------------------------------------
# Frustum geometry
# ---------------------------------------------------------------------------------------------------------------


def test_frustum_points_follow_the_contract_formula():
    cams = ring_cameras(1, 2, (64, 176))
    gen = torch.Generator().manual_seed(0)
    # A non-trivial image augmentation (scale + shift + flip) and BEV augmentation (rotation + scale + flip).
    aug = torch.tensor([[-0.8, 0.0, 150.0], [0.0, 0.8, -5.0], [0.0, 0.0, 1.0]]).expand(1, 2, 3, 3)
    c, s = math.cos(0.4), math.sin(0.4)
    bev = torch.tensor(
        [[1.05 * c, -1.05 * s, 0, 1.0], [-1.05 * s, -1.05 * c, 0, -2.0], [0, 0, 1.05, 0.3], [0, 0, 0, 1]]
    )
    depths = torch.tensor([3.0, 17.5])
    pts = frustum_points((4, 11), (64, 176), depths, cams["intrinsics"], aug, cams["camera_to_lidar"], bev[None])
    assert pts.shape == (1, 2, 4, 11, 2, 3)
    for _ in range(5):
        n, i, j, d = (int(torch.randint(0, k, (1,), generator=gen)) for k in (2, 4, 11, 2))
        u, v = (j + 0.5) * 16 - 0.5, (i + 0.5) * 16 - 0.5
        depth = float(depths[d])
        pix = torch.tensor([u * depth, v * depth, depth], dtype=torch.float64)
        cam = torch.linalg.inv(cams["intrinsics"][0, n].double()) @ torch.linalg.inv(aug[0, n].double()) @ pix
        lidar = (
            bev.double()
            @ cams["camera_to_lidar"][0, n].double()
            @ torch.cat([cam, torch.ones(1, dtype=torch.float64)])
        )
        torch.testing.assert_close(pts[0, n, i, j, d].double(), lidar[:3], atol=1e-4, rtol=1e-5)


def test_frustum_cells_follow_the_bev_grid_convention():
    points = torch.tensor([[30.0, -20.0, 0.0], [-53.9, 53.9, 0.0], [60.0, 0.0, 0.0], [0.0, 0.0, 5.0]]).view(
        1, 1, 1, 4, 1, 3
    )
    cells, valid = frustum_cells(points, [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], 0.6, (180, 180))
    assert valid.flatten().tolist() == [True, True, False, False]
    # (30 m, −20 m) → row 56, col 140; (−53.9, 53.9) → row 179, col 0.
    assert cells.flatten()[:2].tolist() == [56 * 180 + 140, 179 * 180 + 0]


def test_lidar_depth_targets_invert_the_frustum_geometry():
    """A LiDAR point placed at frustum point (cell, bin) must come back as that bin in that cell, through
    non-trivial image and BEV augmentations; with two points in a cell the nearer one wins."""
    cams = ring_cameras(2, 3, (64, 176))
    aug = torch.tensor([[-0.8, 0.0, 150.0], [0.0, 0.8, -5.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3, 3)
    c, s = math.cos(0.4), math.sin(0.4)
    bev = torch.tensor(
        [[1.05 * c, -1.05 * s, 0, 1.0], [-1.05 * s, -1.05 * c, 0, -2.0], [0, 0, 1.05, 0.3], [0, 0, 0, 1]]
    ).expand(2, 4, 4)
    bins = [2.0, 50.0, 2.0]  # 24 frustum depths 2, 4, ..., 48 m
    depths = torch.arange(24) * 2.0 + 2.0
    pts = frustum_points((4, 11), (64, 176), depths, cams["intrinsics"], aug, cams["camera_to_lidar"], bev)
    picks = [(0, 0, 1, 2, 5), (0, 2, 3, 10, 0), (1, 1, 0, 0, 23), (1, 1, 0, 0, 7), (1, 2, 2, 4, 11)]
    points = torch.stack(
        [torch.cat([torch.tensor([float(b)]), pts[b, n, i, j, d], torch.zeros(2)]) for b, n, i, j, d in picks]
    )
    target = lidar_depth_targets(
        points, (4, 11), (64, 176), bins, cams["intrinsics"], cams["camera_to_lidar"], aug, bev
    )
    assert target.shape == (2, 3, 4, 11) and target.dtype == torch.int64
    expected = torch.full((2, 3, 4, 11), -1)
    for b, n, i, j, d in picks:
        previous = int(expected[b, n, i, j])
        expected[b, n, i, j] = d if previous < 0 else min(previous, d)  # the nearer point wins
    # Ring cameras overlap: a point may also land in a neighbouring camera's image; compare the picked cells
    # exactly and require every other hit to be a genuine projection (a valid bin).
    picked = expected >= 0
    assert torch.equal(target[picked], expected[picked])
    assert ((target[~picked] == -1) | (target[~picked] >= 0)).all()
    # Behind every camera / beyond the last bin → no target.
    far = torch.tensor([[0.0, 500.0, 0.0, 0.0, 0.0, 0.0]])
    assert (
        lidar_depth_targets(far, (4, 11), (64, 176), bins, cams["intrinsics"][:1], cams["camera_to_lidar"][:1]) == -1
    ).all()
    with pytest.raises(ValueError, match="batch indices"):
        lidar_depth_targets(points, (4, 11), (64, 176), bins, cams["intrinsics"][:1], cams["camera_to_lidar"][:1])


def test_depth_loss_is_cross_entropy_over_cells_with_a_target():
    logits = torch.randn(1, 2, 5, 3, 4, requires_grad=True)
    target = torch.full((1, 2, 3, 4), -1)
    assert depth_loss(logits, target).item() == 0.0  # no target: zero, still in the graph
    target[0, 1, 2, 3], target[0, 0, 0, 0] = 4, 1
    expected = -(logits[0, 1, :, 2, 3].log_softmax(0)[4] + logits[0, 0, :, 0, 0].log_softmax(0)[1]) / 2
    torch.testing.assert_close(depth_loss(logits, target), expected)
    depth_loss(logits, target).backward()
    assert logits.grad[0, 0, :, 1, 1].abs().sum() == 0 and logits.grad[0, 1, :, 2, 3].abs().sum() > 0
    with pytest.raises(ValueError, match="do not agree"):
        depth_loss(logits, target[:, :1])


# ---------------------------------------------------------------------------------------------------------------
# Voxelisation and sparse convolutions
# ---------------------------------------------------------------------------------------------------------------


def _numpy_voxel_means(points: np.ndarray, voxel_size, pc_range, max_points: int) -> dict[tuple, np.ndarray]:
    """Plain grouping: first `max_points` points (input order) of each voxel, averaged."""
    groups: dict[tuple, list[np.ndarray]] = {}
    for row in points:
        b, xyz = int(row[0]), row[1:4]
        if np.any(xyz < pc_range[:3]) or np.any(xyz >= pc_range[3:]):
            continue
        ijk = np.floor((xyz - pc_range[:3]) / voxel_size).astype(int)
        key = (b, ijk[2], ijk[1], ijk[0])
        members = groups.setdefault(key, [])
        if len(members) < max_points:
            members.append(row[1:])
    return {key: np.mean(members, axis=0) for key, members in groups.items()}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # spconv's build helper calls locale.getdefaultlocale
def test_voxelizer_mean_vfe_matches_numpy_grouping():
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"], max_points_per_voxel=3)
    gen = np.random.default_rng(0)
    clouds = []
    for b in range(2):
        # Clustered points so many voxels overflow max_points; some points fall outside the range.
        centres = gen.uniform(-55, 55, size=(60, 3)) * [1, 1, 0.07]
        xyz = np.repeat(centres, 8, axis=0) + gen.normal(scale=0.15, size=(480, 3))
        extra = gen.uniform(0, 1, size=(480, 2))
        clouds.append(np.concatenate([np.full((480, 1), b), xyz, extra], axis=1))
    points = np.concatenate(clouds).astype(np.float32)
    voxels, coords, counts = Voxelizer(config)(torch.from_numpy(points), 2)
    means = mean_voxel_features(voxels, counts)
    expected = _numpy_voxel_means(
        points.astype(np.float64), np.array(config.voxel_size), np.array(config.point_cloud_range), 3
    )
    got = {tuple(c): m for c, m in zip(coords.tolist(), means.numpy())}
    assert got.keys() == expected.keys()
    assert max(counts.tolist()) == 3 and min(counts.tolist()) >= 1
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5)


def _random_sparse(seed: int = 0, shape=(9, 20, 22), n: int = 250, channels: int = 4) -> SparseVoxels:
    gen = torch.Generator().manual_seed(seed)
    z, y, x = shape
    keys = torch.randperm(2 * z * y * x, generator=gen)[:n]
    coords = torch.stack([keys // (z * y * x), (keys // (y * x)) % z, (keys // x) % y, keys % x], 1)
    return SparseVoxels.create(torch.randn(n, channels, generator=gen), coords, shape, 2)


def _dense_conv3d(voxels: SparseVoxels, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    dense = voxels.dense()
    return torch.nn.functional.conv3d(dense, weight.permute(0, 4, 1, 2, 3), stride=stride, padding=padding)


def test_submanifold_conv_equals_dense_conv_at_active_sites():
    voxels = _random_sparse()
    conv = SubmanifoldConv3d(4, 6, 3, bias=False)
    out = conv(voxels).dense()
    ref = _dense_conv3d(voxels, conv.weight.detach(), 1, 1)
    active = voxels.dense().abs().sum(1, keepdim=True) > 0
    torch.testing.assert_close(out.detach(), ref * active, atol=1e-5, rtol=1e-5)


def test_strided_sparse_conv_equals_dense_conv():
    voxels = _random_sparse(seed=1)
    for kernel, stride, padding in ((3, 2, 1), ((3, 1, 1), (2, 1, 1), 0)):
        conv = SparseConv3d(4, 6, kernel, stride=stride, padding=padding)
        out = conv(voxels)
        ref = _dense_conv3d(voxels, conv.weight.detach(), stride, padding)
        torch.testing.assert_close(out.dense().detach(), ref, atol=1e-5, rtol=1e-5)
        # Output sites are exactly those reached by an input site (spconv's rule), not the whole grid.
        reached = _dense_conv3d(
            voxels.replace_features(torch.ones(len(voxels.coords), 1)),
            torch.ones(1, *conv.kernel_size, 1),
            stride,
            padding,
        )
        assert len(out.coords) == int((reached > 0).sum())


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")  # inside spconv
def test_sparse_convs_match_spconv_forward():
    spconv = pytest.importorskip("spconv.pytorch")
    voxels = _random_sparse(seed=2)
    reference_input = spconv.SparseConvTensor(voxels.features, voxels.coords.int(), list(voxels.spatial_shape), 2)
    pairs = [
        (spconv.SubMConv3d(4, 5, 3, bias=False), SubmanifoldConv3d(4, 5, 3, bias=False)),
        (spconv.SparseConv3d(4, 5, 3, 2, 1, bias=False), SparseConv3d(4, 5, 3, stride=2, padding=1)),
    ]
    for reference, ours in pairs:
        with torch.no_grad():
            ours.weight.copy_(reference.weight)
            torch.testing.assert_close(ours(voxels).dense(), reference(reference_input).dense(), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Heatmap targets
# ---------------------------------------------------------------------------------------------------------------


def _loop_gaussian_heatmap(boxes, labels, mask, num_classes, bev_range, cell, shape, min_overlap, min_radius):
    height, width = shape
    out = np.zeros((boxes.shape[0], num_classes, height, width))
    for b in range(boxes.shape[0]):
        for m in range(boxes.shape[1]):
            if not mask[b, m]:
                continue
            x, y, _, length, w = boxes[b, m, :5].tolist()
            col, row = math.floor((x - bev_range[0]) / cell), math.floor((y - bev_range[1]) / cell)
            if not (0 <= col < width and 0 <= row < height):
                continue
            r = float(gaussian_radius(torch.tensor(length / cell), torch.tensor(w / cell), min_overlap))
            radius = max(min_radius, math.floor(r))
            sigma = (2 * radius + 1) / 6
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    rr, cc = row + dy, col + dx
                    if 0 <= rr < height and 0 <= cc < width:
                        value = math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
                        out[b, labels[b, m], rr, cc] = max(out[b, labels[b, m], rr, cc], value)
    return out


def test_heatmap_targets_match_loop_reference():
    gen = torch.Generator().manual_seed(0)
    boxes = torch.zeros(3, 7, 9)
    boxes[..., :2] = torch.rand(3, 7, 2, generator=gen) * 40 - 20  # some near the border of the ±16 m map below
    boxes[..., 3:5] = torch.rand(3, 7, 2, generator=gen) * 8 + 0.3
    labels = torch.randint(0, 4, (3, 7), generator=gen)
    mask = torch.rand(3, 7, generator=gen) < 0.8
    mask[2] = False  # a sample without boxes
    boxes[0, 1, :2] = boxes[0, 0, :2] + 0.3  # two overlapping boxes merge with max
    labels[0, 1] = labels[0, 0]
    mask[0, :2] = True
    kwargs = {"num_classes": 4, "bev_range": (-16.0, -16.0, 16.0, 16.0), "cell_size": 0.8, "bev_shape": (40, 40)}
    for min_overlap, min_radius in ((0.1, 2), (0.7, 0)):
        heatmap, valid = heatmap_targets(boxes, labels, mask, min_overlap=min_overlap, min_radius=min_radius, **kwargs)
        expected = _loop_gaussian_heatmap(
            boxes.numpy(), labels.numpy(), mask.numpy(), 4, kwargs["bev_range"], 0.8, (40, 40), min_overlap, min_radius
        )
        np.testing.assert_allclose(heatmap.numpy(), expected, atol=1e-6)
        assert not valid[2].any() and heatmap[2].sum() == 0


def test_gaussian_radius_known_value():
    # 20 × 5 cells at min_overlap 0.1: the third root, (−5 + 13) / 2 = 4, is the smallest.
    assert float(gaussian_radius(torch.tensor(20.0), torch.tensor(5.0), 0.1)) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------


def _plant(config: BEVDetectorConfig, box: torch.Tensor, label: int, score_logit: float = 4.0):
    """Heatmap / regression maps that encode exactly `box` (in the frame of the maps)."""
    height, width = config.bev_shape
    num_tasks = len(config.tasks)
    heatmap = torch.full((1, config.num_classes, height, width), -10.0)
    regression = torch.zeros(1, num_tasks * 10, height, width)
    cell = config.bev_cell_size
    col = math.floor((float(box[0]) - config.bev_range[0]) / cell)
    row = math.floor((float(box[1]) - config.bev_range[1]) / cell)
    task = next(t for t, names in enumerate(config.tasks) if config.class_names[label] in names)
    heatmap[0, label, row, col] = score_logit
    target = regression_targets(box.view(1, 1, 9), config.bev_range, cell).view(10)
    regression[0, task * 10 : (task + 1) * 10, row, col] = target
    return heatmap, regression


def test_decode_returns_a_planted_box_in_lidar_frame():
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"])
    box = torch.tensor([12.3, -7.9, -0.6, 4.4, 1.9, 1.6, 0.7, 3.0, -1.0])
    heatmap, regression = _plant(config, box, label=0)
    (result,) = decode_boxes(heatmap, regression, config)
    assert result["boxes"].shape == (1, 9) and result["labels"].tolist() == [0]
    assert float(result["scores"][0]) == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item(), rel=1e-5)
    torch.testing.assert_close(result["boxes"][0], box, atol=1e-4, rtol=1e-4)


def test_decode_undoes_the_bev_augmentation():
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"])
    # Augmentation as the data pipeline builds it: rotate, scale, then mirror y.
    angle, scale = 0.35, 1.04
    c, s = math.cos(angle), math.sin(angle)
    linear = torch.diag(torch.tensor([1.0, -1.0, 1.0])) @ (
        scale * torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    )
    bev_aug = torch.eye(4)
    bev_aug[:3, :3] = linear
    original = torch.tensor([20.0, 10.0, -0.5, 4.0, 1.8, 1.5, 0.4, 2.0, 1.0])
    # The same box in the augmented frame, computed by hand.
    centre = linear @ original[:3]
    heading = linear[:2, :2] @ torch.tensor([math.cos(0.4), math.sin(0.4)])
    velocity = linear[:2, :2] @ original[7:9]
    augmented = torch.cat([centre, original[3:6] * scale, torch.atan2(heading[1], heading[0]).view(1), velocity])
    heatmap, regression = _plant(config, augmented, label=8)
    (plain,) = decode_boxes(heatmap, regression, config)
    torch.testing.assert_close(plain["boxes"][0], augmented, atol=1e-4, rtol=1e-4)
    (undone,) = decode_boxes(heatmap, regression, config, bev_aug_matrix=bev_aug[None])
    got = undone["boxes"][0]
    torch.testing.assert_close(got[:6], original[:6], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[7:], original[7:], atol=1e-4, rtol=1e-4)
    assert math.isclose(math.cos(float(got[6]) - 0.4), 1.0, abs_tol=1e-6)
    assert undone["labels"].tolist() == [8]


def test_undo_bev_augmentation_inverts_translation():
    bev_aug = torch.eye(4)
    bev_aug[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    boxes = torch.tensor([[3.0, 4.0, 0.0, 2.0, 1.0, 1.0, 0.1, 0.0, 0.0]])
    out = undo_bev_augmentation(boxes, bev_aug)
    torch.testing.assert_close(out[0, :3], torch.tensor([2.0, 6.0, -0.5]))
    torch.testing.assert_close(out[0, 3:], boxes[0, 3:])


def test_circle_nms_matches_greedy_loop():
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(120, 2, generator=gen) * 10
    keep = circle_nms(centres, 1.0)
    expected = []
    for i in range(len(centres)):
        if all(float((centres[i] - centres[j]).norm()) >= 1.0 for j in expected):
            expected.append(i)
    assert torch.nonzero(keep).flatten().tolist() == expected


def test_decode_suppresses_duplicates_within_the_nms_radius():
    config = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"])
    box = torch.tensor([5.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0])
    heatmap, regression = _plant(config, box, label=0)
    row, col = torch.nonzero(heatmap[0, 0] > 0)[0].tolist()
    heatmap[0, 0, row, col + 1] = 3.0  # a neighbour 1.6 m away, inside the car radius of 4 m
    regression[0, :10, row, col + 1] = regression[0, :10, row, col]
    (result,) = decode_boxes(heatmap, regression, config)
    assert len(result["boxes"]) == 1
    no_nms = tiny_config(BEVDetectorConfig, TINY_PRESETS["lidar"], nms_radii=[0.0] * 6)
    (loose,) = decode_boxes(heatmap, regression, no_nms)
    assert len(loose["boxes"]) == 2

"""Tests of the box plots: corner geometry, projection against the devkit, figures written as PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_crossdistill.visualization import (
    box_corners_3d,
    box_corners_bev,
    plot_bev,
    plot_camera_boxes,
    project_boxes_to_image,
)


def test_box_corners_match_the_devkit():
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    boxes = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 0, 0], [-5.0, 3.0, 1.0, 1.0, 0.6, 1.8, -2.0, 0, 0]])
    ours = box_corners_3d(boxes)
    for row, corners in zip(boxes, ours):
        theirs = Box(row[:3], [row[4], row[3], row[5]], Quaternion(axis=[0, 0, 1], angle=row[6])).corners().T
        order = lambda a: a[np.lexsort(np.round(a, 6).T)]  # noqa: E731
        np.testing.assert_allclose(order(corners), order(theirs), atol=1e-9)
    np.testing.assert_allclose(
        box_corners_bev(boxes)[0, 0], [1 + 2 * math.cos(0.3) - math.sin(0.3), 2 + 2 * math.sin(0.3) + math.cos(0.3)]
    )


def test_projection_matches_the_devkit_view_points():
    from nuscenes.utils.geometry_utils import view_points

    K = np.array([[100.0, 0, 80], [0, 100.0, 45], [0, 0, 1]])
    # Camera looking along lidar +x: camera z = lidar x, camera x = −lidar y, camera y = −lidar z.
    lidar_from_camera = np.eye(4)
    lidar_from_camera[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    boxes = np.array([[10.0, 1.0, 0.0, 4.0, 2.0, 1.5, 0.2], [-10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    aug = np.array([[0.5, 0, -3.0], [0, 0.5, 2.0], [0, 0, 1]])
    pixels, in_front = project_boxes_to_image(boxes, K, lidar_from_camera, image_aug_matrix=aug)
    assert in_front.tolist() == [True, False]
    camera = box_corners_3d(boxes[:1])[0] @ lidar_from_camera[:3, :3]  # rotation inverse = transpose
    expected = view_points(camera.T, K, normalize=True)[:2].T
    np.testing.assert_allclose(pixels[0], expected * 0.5 + [-3.0, 2.0], atol=1e-9)
    # Undoing the BEV augmentation: an augmented box projects where the un-augmented one does.
    bev = np.eye(4)
    bev[:2, :2] = [[0, -1], [1, 0]]
    rotated = boxes[:1].copy()
    rotated[0, :2] = bev[:2, :2] @ rotated[0, :2]
    rotated[0, 6] += math.pi / 2
    again, _ = project_boxes_to_image(rotated, K, lidar_from_camera, image_aug_matrix=aug, bev_aug_matrix=bev)
    np.testing.assert_allclose(np.sort(again[0], 0), np.sort(pixels[0], 0), atol=1e-6)


def test_plots_return_figures_and_write_png(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(-20, 20, (500, 5))
    gt = np.array([[5.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0]])
    fig = plot_bev(
        points,
        gt,
        gt + 0.5,
        pred_scores=[0.9],
        gt_labels=[0],
        pred_labels=[0],
        labels=["car"],
        save_path=tmp_path / "bev.png",
        title="bev",
    )
    assert (tmp_path / "bev.png").stat().st_size > 1000 and len(fig.axes[0].lines) == 4
    K = np.array([[50.0, 0, 40], [0, 50.0, 20], [0, 0, 1]])
    lidar_from_camera = np.eye(4)
    lidar_from_camera[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    image = rng.uniform(0, 1, (3, 40, 80)).astype(np.float32)
    fig = plot_camera_boxes(image, gt, K, lidar_from_camera, save_path=tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 1000 and len(fig.axes[0].lines) == 12
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_inputs_are_validated():
    with pytest.raises(ValueError, match="boxes must be"):
        plot_bev(None, np.ones((2, 3)))
    with pytest.raises(ValueError, match="bev_range"):
        plot_bev(None, None, bev_range=(0, 0, -1, 1))
    with pytest.raises(ValueError, match="pred_scores has 1 entries for 2 boxes"):
        plot_bev(None, None, np.ones((2, 7)), pred_scores=[0.5])
    with pytest.raises(ValueError, match="image must be"):
        plot_camera_boxes(np.ones((4, 4)), np.ones((1, 7)), np.eye(3), np.eye(4))


def test_study_plots_draw_bars_with_error_bars_and_term_curves(tmp_path):
    import pytest

    from hf_crossdistill.visualization import plot_study_paths, plot_term_curves

    table = {
        "paths": {
            "L->C": {
                "teacher": {"mAP": 0.6, "NDS": 0.5},
                "student_alone": {"mAP": [0.10, 0.12, 0.11], "NDS": [0.20, 0.22, 0.21]},
                "distilled": {"mAP": [0.15, 0.16, 0.14], "NDS": [0.26, 0.25, 0.27]},
            },
            "C->L": {
                "teacher": {"mAP": 0.1, "NDS": 0.2},
                "student_alone": None,
                "distilled": {"mAP": [0.3], "NDS": [0.3]},
            },
        }
    }
    fig = plot_study_paths(table, metric="NDS", save_path=tmp_path / "bars.png")
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 4) for p in ax.patches)
    assert heights == sorted([0.5, 0.2, 0.21, 0.26, 0.3])  # a missing arm draws no bar
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="metric"):
        plot_study_paths(table, metric="mATE")
    with pytest.raises(ValueError, match="no finished path"):
        plot_study_paths({"paths": {}})

    curves = {"alone": [{"step": 10, "loss_det": 3.0}, {"step": 20, "loss_det": 2.0}],
              "kd": [{"step": 10, "loss_det": 3.1, "loss_feature": 0.5}]}  # fmt: skip
    fig = plot_term_curves(curves, terms=("loss_det", "loss_feature"), save_path=tmp_path / "curves.png")
    assert [len(a.lines) for a in fig.axes] == [2, 1]
    with pytest.raises(ValueError, match="no run"):
        plot_term_curves({})

"""Tests of the official nuScenes evaluation wrapper: frame changes, submission format, metrics, gathering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from testing_utils import load_script

from hf_crossdistill.data.nuscenes import (
    NUSCENES_CLASSES,
    load_nuscenes,
    nuscenes_detection_dataset,
    split_sample_tokens,
)
from hf_crossdistill.evaluation import (
    ATTRIBUTE_BY_MOTION,
    attribute_names,
    boxes_to_global,
    build_submission,
    evaluate_nuscenes,
    gather_predictions,
    merge_predictions,
    validate_prediction,
)

VERSION = "v1.0-mini"
EVAL_SET = "mini_val"


@pytest.fixture(scope="module")
def synthetic_root(request):
    try:
        return request.getfixturevalue("tiny_nuscenes_root")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_nuscenes_root fixture (synthetic nuScenes generator) is not available")


@pytest.fixture(scope="module")
def gt_predictions(synthetic_root):
    """The loader's own ground truth of the eval split, submitted as predictions."""
    ds = nuscenes_detection_dataset(synthetic_root, VERSION, EVAL_SET, cameras=(), num_sweeps=0)
    return {
        s["sample_token"]: {"boxes": s["gt_boxes"], "scores": np.ones(len(s["gt_boxes"])), "labels": s["gt_labels"]}
        for s in ds
    }


# ---------------------------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------------------------


def test_boxes_to_global_matches_the_devkit_box_transform():
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    rng = np.random.default_rng(0)
    rotation = Quaternion(axis=[0, 0, 1], angle=0.7) * Quaternion(axis=[0, 0, 1], angle=-math.pi / 2)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation.rotation_matrix, [400.0, -1200.0, 1.8]
    boxes = np.concatenate(
        [
            rng.uniform(-40, 40, (5, 3)),
            rng.uniform(0.5, 5, (5, 3)),
            rng.uniform(-3, 3, (5, 1)),
            rng.normal(0, 3, (5, 2)),
        ],
        axis=1,
    )
    world = boxes_to_global(boxes, matrix)
    for i, row in enumerate(boxes):
        box = Box(row[:3], [row[4], row[3], row[5]], Quaternion(axis=[0, 0, 1], angle=row[6]), velocity=(*row[7:9], 0))
        box.rotate(rotation)
        box.translate(matrix[:3, 3])
        np.testing.assert_allclose(world["translation"][i], box.center, atol=1e-9)
        np.testing.assert_allclose(world["size"][i], box.wlh)
        assert Quaternion.absolute_distance(Quaternion(world["rotation"][i]), box.orientation) < 1e-9
        np.testing.assert_allclose(world["velocity"][i], box.velocity[:2], atol=1e-9)


def test_attribute_names_follow_speed_per_class():
    labels = np.array([NUSCENES_CLASSES.index(c) for c in ("car", "car", "bus", "pedestrian", "bicycle", "barrier")])
    velocity = np.array([[0.3, 0.0], [0.1, 0.1], [0.0, 0.0], [1.0, 1.0], [0.0, 0.05], [5.0, 0.0]])
    names = attribute_names(labels, velocity)
    assert names == [
        "vehicle.moving",
        "vehicle.parked",
        "vehicle.stopped",
        "pedestrian.moving",
        "cycle.without_rider",
        "",
    ]
    from nuscenes.eval.detection.utils import detection_name_to_rel_attributes

    for name, pair in ATTRIBUTE_BY_MOTION.items():
        assert all(a in detection_name_to_rel_attributes(name) for a in pair if a)


def test_validate_prediction_rejects_bad_input():
    good = {"boxes": np.ones((2, 9)), "scores": [0.5, 0.4], "labels": [0, 9]}
    boxes, scores, labels = validate_prediction("t", {k: torch.as_tensor(v) for k, v in good.items()})
    assert boxes.shape == (2, 9) and labels.dtype == np.int64
    assert validate_prediction("t", {"boxes": [], "scores": [], "labels": []})[0].shape == (0, 9)
    cases = [
        ({**good, "boxes": np.ones((2, 7))}, ValueError, r"\(K, 9\)"),
        ({**good, "scores": [0.5]}, ValueError, "lengths differ"),
        ({**good, "boxes": np.full((2, 9), np.nan)}, ValueError, "NaN"),
        ({**good, "labels": [0, 10]}, ValueError, "labels"),
        ({**good, "boxes": -np.ones((2, 9))}, ValueError, "non-positive sizes"),
        ({"boxes": np.ones((2, 9))}, KeyError, "scores"),
        ([1, 2], TypeError, "must be a dict"),
    ]
    for prediction, error, message in cases:
        with pytest.raises(error, match=message):
            validate_prediction("tok", prediction)


def test_merge_predictions_keeps_every_token_once():
    def pred(value):
        return {"boxes": torch.full((1, 9), float(value)), "scores": torch.ones(1), "labels": torch.zeros(1)}

    # Rank 1 repeats "a" (a padded batch); every token appears exactly once after merging, first copy wins.
    parts = [{"a": pred(1), "b": pred(2)}, {"c": pred(3), "a": pred(9)}, {"d": pred(4)}]
    merged = merge_predictions(parts)
    assert sorted(merged) == ["a", "b", "c", "d"]
    assert merged["a"]["boxes"][0, 0] == 1.0 and isinstance(merged["a"]["boxes"], np.ndarray)
    with pytest.raises(TypeError, match="part 1"):
        merge_predictions([{}, [1]])
    local = gather_predictions({"x": pred(5)})  # a single process: its own predictions, as numpy
    assert list(local) == ["x"] and isinstance(local["x"]["scores"], np.ndarray)


# ---------------------------------------------------------------------------------------------------------------
# Official evaluation on the synthetic dataroot
# ---------------------------------------------------------------------------------------------------------------


def test_ground_truth_scores_perfectly(synthetic_root, gt_predictions, tmp_path):
    metrics = evaluate_nuscenes(gt_predictions, synthetic_root, VERSION, EVAL_SET, output_dir=tmp_path)
    assert metrics["mAP"] >= 0.99 and metrics["NDS"] >= 0.95, metrics
    assert metrics["mATE"] < 0.01 and metrics["mASE"] < 0.01 and metrics["mAOE"] < 0.01, metrics
    assert all(metrics[f"AP_{name}"] >= 0.99 for name in NUSCENES_CLASSES), metrics
    submission = json.loads((tmp_path / "submission.json").read_text())
    nusc = load_nuscenes(synthetic_root, VERSION)
    assert sorted(submission["results"]) == sorted(split_sample_tokens(nusc, EVAL_SET))
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert math.isclose(summary["mean_ap"], metrics["mAP"])


def test_shifting_boxes_by_one_metre_raises_translation_error_by_one_metre(synthetic_root, gt_predictions):
    nusc = load_nuscenes(synthetic_root, VERSION)
    base = evaluate_nuscenes(gt_predictions, synthetic_root, VERSION, EVAL_SET, nusc=nusc)
    shift = np.array([0.6, 0.8, 0, 0, 0, 0, 0, 0, 0])  # 1 m in the x-y plane
    shifted = {t: {**p, "boxes": p["boxes"] + shift} for t, p in gt_predictions.items()}
    moved = evaluate_nuscenes(shifted, synthetic_root, VERSION, EVAL_SET, nusc=nusc)
    assert 0.95 <= moved["mATE"] - base["mATE"] <= 1.05, (base, moved)
    assert moved["mAP"] < base["mAP"]


def test_missing_samples_count_as_empty_and_unknown_tokens_fail(synthetic_root, gt_predictions):
    nusc = load_nuscenes(synthetic_root, VERSION)
    tokens = sorted(gt_predictions)
    half = {t: gt_predictions[t] for t in tokens[::2]}
    submission = build_submission(half, nusc, EVAL_SET)
    assert sorted(submission["results"]) == tokens
    assert all(submission["results"][t] == [] for t in tokens[1::2])
    partial = evaluate_nuscenes(half, synthetic_root, VERSION, EVAL_SET, nusc=nusc)
    assert 0.2 < partial["mAP"] < 0.9
    with pytest.raises(ValueError, match="not key frames of split 'mini_val'"):
        build_submission({**half, "nope": gt_predictions[tokens[0]]}, nusc, EVAL_SET)
    with pytest.raises(ValueError, match="unknown split"):
        evaluate_nuscenes(half, synthetic_root, VERSION, "val", nusc=nusc)
    with pytest.raises(ValueError, match="NaN"):
        bad = {
            tokens[0]: {
                **gt_predictions[tokens[0]],
                "scores": np.full(len(gt_predictions[tokens[0]]["scores"]), np.nan),
            }
        }
        evaluate_nuscenes(bad, synthetic_root, VERSION, EVAL_SET, nusc=nusc)


def test_a_submission_without_boxes_scores_zero_instead_of_crashing_the_devkit(synthetic_root, tmp_path):
    empty = {"boxes": np.zeros((0, 9)), "scores": np.zeros(0), "labels": np.zeros(0, dtype=np.int64)}
    metrics = evaluate_nuscenes({}, synthetic_root, VERSION, EVAL_SET, output_dir=tmp_path)
    assert metrics["mAP"] == 0.0 and metrics["NDS"] == 0.0 and metrics["mATE"] == 1.0
    assert all(metrics[f"AP_{name}"] == 0.0 for name in NUSCENES_CLASSES)
    submission = json.loads((tmp_path / "submission.json").read_text())
    assert submission["results"] and all(boxes == [] for boxes in submission["results"].values())
    nusc = load_nuscenes(synthetic_root, VERSION)
    token = next(iter(submission["results"]))
    assert evaluate_nuscenes({token: empty}, synthetic_root, VERSION, EVAL_SET, nusc=nusc) == metrics


def test_submission_keeps_the_top_scoring_boxes_when_over_the_limit(synthetic_root, gt_predictions):
    nusc = load_nuscenes(synthetic_root, VERSION)
    token = sorted(gt_predictions)[0]
    many = {"boxes": np.tile([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]], (600, 1)), "labels": np.zeros(600)}
    many["scores"] = np.linspace(0, 1, 600)
    rows = build_submission({token: many}, nusc, EVAL_SET)["results"][token]
    assert len(rows) == 500 and min(r["detection_score"] for r in rows) == pytest.approx(100 / 599)


def test_evaluate_cli_scores_a_predictions_file(synthetic_root, gt_predictions, tmp_path, repo_root, capsys):
    cli = load_script(repo_root / "scripts" / "evaluate.py", "evaluate_cli")
    path = tmp_path / "predictions.json"
    path.write_text(
        json.dumps({t: {k: np.asarray(v).tolist() for k, v in p.items()} for t, p in gt_predictions.items()})
    )
    out = tmp_path / "eval"
    argv = [str(path), "--dataroot", str(synthetic_root), "--version", VERSION, "--eval-set", EVAL_SET]
    assert cli.main([*argv, "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["mAP"] >= 0.99
    assert "NDS" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / "missing.json"), "--dataroot", str(synthetic_root)])


def _gather_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    # Rank r predicts samples r, r + 2, r + 4 ... of 7; the sampler pads rank 1 by repeating sample 0.
    tokens = [f"tok{i}" for i in range(rank, 7, world_size)] + (["tok0"] if rank == 1 else [])
    local = {
        t: {"boxes": torch.full((1, 9), float(t[3:])), "scores": torch.ones(1), "labels": torch.zeros(1)}
        for t in tokens
    }
    merged = gather_predictions(local)
    (Path(out_dir) / f"rank{rank}.json").write_text(
        json.dumps({t: float(p["boxes"][0, 0]) for t, p in merged.items()})
    )
    dist.destroy_process_group()


@pytest.mark.multiprocess
def test_gather_predictions_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        merged = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert merged == {f"tok{i}": float(i) for i in range(7)}

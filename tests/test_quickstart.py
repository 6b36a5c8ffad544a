"""The main job (scripts/quickstart.py): arguments, and a shortened run on a micro dataroot with the committed teacher.

The full job (20 minutes of training, the gain criterion) runs under the `quickstart_full` marker outside CI:
`bash scripts/test.sh -m quickstart_full tests/test_quickstart.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testing_utils import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_quickstart():
    return load_script(REPO_ROOT / "scripts" / "quickstart.py", "quickstart_script")


def test_quickstart_arguments_are_validated(tmp_path):
    quickstart = load_quickstart()
    for bad in (["--seeds", "0", "0"], ["--seeds", "-1"], ["--jobs", "0"], ["--teacher", str(tmp_path)]):
        with pytest.raises(SystemExit):
            quickstart.parse_args(bad)
    args = quickstart.parse_args(["--train-args", "--max_steps", "4"])
    assert args.seeds == [0, 1, 2] and args.train_args == ["--max_steps", "4"]


def test_the_quickstart_plan_is_a_cross_modal_path_with_the_committed_teacher():
    from hf_crossdistill.experiments import load_study_plan
    from hf_crossdistill.models.bev_detector import BEVDetectorConfig

    plan = load_study_plan(REPO_ROOT / "hub_configs" / "recipes" / "quickstart" / "plan.yaml", REPO_ROOT)
    distilled, alone = plan.arms["distilled"], plan.arms["no_kd"]
    assert distilled.alone == "no_kd" and distilled.seeds == alone.seeds == (0, 1, 2)
    teacher = BEVDetectorConfig.from_pretrained(REPO_ROOT / plan.teachers[distilled.teacher]["folder"])
    import yaml

    student = yaml.safe_load(distilled.recipe.read_text())["student_config"]
    assert yaml.safe_load(alone.recipe.read_text())["student_config"] == student
    student_modalities = json.loads((REPO_ROOT / "hub_configs" / "models" / f"{student}.json").read_text())[
        "modalities"
    ]
    assert sorted(teacher.modalities) != sorted(student_modalities)  # teacher and student of different modalities
    # Same budget: the two recipes differ only by the teacher and the distillation settings.
    a, b = yaml.safe_load(distilled.recipe.read_text()), yaml.safe_load(alone.recipe.read_text())
    kd_keys = {k for k in a if k.startswith(("lambda_", "teacher_", "feature_", "loss_balancing", "kd_", "response_"))}
    kd_keys |= {"use_adaptive_layers", "diagnostics_steps", "output_dir", "student_temperature"}
    assert {k: v for k, v in a.items() if k not in kd_keys} == {k: v for k, v in b.items() if k not in kd_keys}


@pytest.mark.slow
def test_shortened_quickstart_trains_both_arms_summarizes_and_reuses_its_runs(tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForObjectDetection

    import hf_crossdistill  # noqa: F401 - registers the BEV detector with the Auto classes
    from hf_crossdistill.data.synthetic import make_synthetic_nuscenes

    data = make_synthetic_nuscenes(
        tmp_path / "data",
        version="v1.0-trainval",
        num_scenes=3,
        num_val_scenes=1,
        scene_duration_s=1.5,
        sweeps_per_keyframe=1,
        image_size=(176, 99),
        lidar_azimuth_resolution_deg=1.0,
    )
    monkeypatch.chdir(REPO_ROOT)
    quickstart = load_quickstart()
    out = tmp_path / "quickstart"
    argv = ["--data-dir", str(data), "--out-dir", str(out), "--seeds", "0", "1"]
    argv += ["--train-args", "--max_steps", "2", "--save_steps", "1", "--per_device_eval_batch_size", "2"]
    assert quickstart.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["path"] == "L+C->L"
    assert sorted((r["arm"], r["seed"]) for r in results["runs"]) == [
        ("distilled", 0), ("distilled", 1), ("no_kd", 0), ("no_kd", 1)
    ]  # fmt: skip
    for arm in ("distilled", "no_kd"):
        entry = results["arms"][arm]
        assert entry["seeds"] == [0, 1] and len(entry["NDS"]) == 2
        assert entry["NDS_mean"] == pytest.approx(sum(entry["NDS"]) / 2)
    assert results["NDS_gain"] == pytest.approx(
        results["arms"]["distilled"]["NDS_mean"] - results["arms"]["no_kd"]["NDS_mean"]
    )
    assert "± " in (out / "results.md").read_text()
    # The distilled runs really distilled from the committed teacher.
    summary = json.loads((out / "runs" / "val" / "distilled" / "seed1" / "distill_summary.json").read_text())
    assert summary["distills"] is True
    assert (out / "bev.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, modalities in (("teacher", ["lidar", "camera"]), ("distilled", ["lidar"]), ("no_kd", ["lidar"])):
        hub = out / "hub" / name
        model = AutoModelForObjectDetection.from_pretrained(hub)
        assert model.config.modalities == modalities
        assert set(load_file(str(hub / "model.safetensors"))) == set(model.state_dict())
        assert "model-index" in (hub / "README.md").read_text()

    # A second invocation reuses every finished run: same figures, no training.
    assert quickstart.main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["arms"] == results["arms"]
    assert all(r["wall_s"] == q["wall_s"] for r, q in zip(again["runs"], results["runs"]))


@pytest.mark.quickstart_full
def test_full_quickstart_distilled_beats_no_kd_by_more_than_the_larger_std(monkeypatch):
    """The whole main job as a user runs it (about 20 minutes of training on 2 idle cores); not run by CI."""
    monkeypatch.chdir(REPO_ROOT)
    quickstart = load_quickstart()
    assert quickstart.main(["--check"]) == 0
    results = json.loads((REPO_ROOT / "outputs" / "quickstart" / "results.json").read_text())
    assert results["gain_beats_larger_std"] and results["distilled_detects"]

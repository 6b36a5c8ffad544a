"""The resumable study runner: plan validation, reuse by fingerprint, resume, result JSONs and the paths table."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from hf_crossdistill.experiments import (
    StudyPlanError,
    aggregate_unidistill_paths,
    dataroot_fingerprint,
    latest_complete_checkpoint,
    load_study_plan,
    run_study,
)

# A stand-in for scripts/distill.py: records its arguments and writes eval_results.json whose mAP encodes the
# recipe's `quality` and the seed, so the aggregation can be checked exactly.
FAKE_ENTRY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import yaml
    argv = sys.argv[1:]
    value = lambda flag: argv[argv.index(flag) + 1]
    recipe = yaml.safe_load(Path(value("--config")).read_text())
    out = Path(value("--output_dir"))
    out.mkdir(parents=True, exist_ok=True)
    calls = out.parent.parent.parent / "calls.jsonl"
    with open(calls, "a") as f:
        f.write(json.dumps(argv) + "\\n")
    if recipe.get("fail"):
        sys.exit(3)
    seed = int(value("--seed"))
    q = recipe["quality"] + seed / 100
    (out / "eval_results.json").write_text(json.dumps({"eval_mAP": q, "eval_NDS": q + 0.1}))
    (out / "config.json").write_text(json.dumps({"recipe": value("--config")}))
    (out / "model.safetensors").write_text(value("--student_init") if "--student_init" in argv else "")
    (out / "distill_summary.json").write_text(json.dumps({"log_history": [
        {"step": 10, "loss": 3.0, "loss_det": 2.0, "loss_feature": 0.1, "learning_rate": 1e-3},
        {"step": 10, "eval_loss": 1.0}]}))
    """
)


def write_plan(tmp_path: Path, arms: str, quality: dict[str, float]) -> Path:
    recipes = tmp_path / "recipes"
    recipes.mkdir(exist_ok=True)
    for name, q in quality.items():
        student = "lidar" if name.startswith("lidar") else "camera"
        (recipes / f"{name}.yaml").write_text(f"student_config: {student}\nquality: {q}\n")
    teacher = tmp_path / "teachers" / "lidar"
    teacher.mkdir(parents=True, exist_ok=True)
    (teacher / "eval_results.json").write_text(json.dumps({"eval_mAP": 0.6, "eval_NDS": 0.5}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""
            name: t
            scale: tiny
            data: {{command: make data, dataroot: d, version: v1.0-mini}}
            teachers:
              lidar: {{recipe: recipes/camera_alone.yaml, folder: {teacher}}}
            arms:
            """
        )
        + textwrap.indent(textwrap.dedent(arms), "  ")
    )
    return plan


ARMS = """
camera_alone: {recipe: recipes/camera_alone.yaml, seeds: [0, 1, 2]}
l2c: {recipe: recipes/l2c.yaml, seeds: [0, 1, 2], role: distilled, path: "L->C", teacher: lidar, alone: camera_alone}
l2c_paper: {recipe: recipes/l2c_paper.yaml, seeds: [0], role: variant, path: "L->C", teacher: lidar}
"""


@pytest.fixture
def fake_entry(tmp_path) -> list[str]:
    script = tmp_path / "fake_distill.py"
    script.write_text(FAKE_ENTRY)
    return [sys.executable, str(script)]


def test_study_runs_each_seed_once_reuses_finished_runs_and_aggregates(tmp_path, fake_entry):
    plan_file = write_plan(tmp_path, ARMS, {"camera_alone": 0.1, "l2c": 0.2, "l2c_paper": 0.05})
    plan = load_study_plan(plan_file, tmp_path)
    kwargs = {"out_root": tmp_path / "out", "results_root": tmp_path / "results", "root": tmp_path}
    results = run_study(plan, jobs=2, entry_point=fake_entry, nice=0, **kwargs)
    assert sorted((r["arm"], r["seed"]) for r in results) == sorted(
        [("camera_alone", s) for s in range(3)] + [("l2c", s) for s in range(3)] + [("l2c_paper", 0)]
    )
    calls = [json.loads(line) for line in (tmp_path / "out" / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 7
    l2c_call = next(c for c in calls if c[c.index("--config") + 1].endswith("l2c.yaml"))
    assert l2c_call[l2c_call.index("--teacher_model_name_or_path") + 1] == str(tmp_path / "teachers" / "lidar")
    assert l2c_call[l2c_call.index("--eval_split") + 1] == "val"
    saved = json.loads((tmp_path / "results" / "val" / "l2c" / "seed1.json").read_text())
    assert saved["mAP"] == pytest.approx(0.21) and saved["curve"][0]["loss_feature"] == 0.1
    assert "learning_rate" not in saved["curve"][0] and len(saved["curve"]) == 1

    # A second run reuses everything; a changed recipe reruns only its arm.
    run_study(plan, jobs=1, entry_point=fake_entry, nice=0, **kwargs)
    assert len((tmp_path / "out" / "calls.jsonl").read_text().splitlines()) == 7
    (tmp_path / "recipes" / "l2c_paper.yaml").write_text("student_config: camera\nquality: 0.07\n")
    run_study(plan, jobs=1, entry_point=fake_entry, nice=0, **kwargs)
    assert len((tmp_path / "out" / "calls.jsonl").read_text().splitlines()) == 8
    # Extra arguments (a smoke run's --max_steps) are part of what a finished run must match.
    run_study(
        plan, ["camera_alone"], seeds=[0], entry_point=fake_entry, nice=0, extra_args=["--max_steps", "2"], **kwargs
    )
    calls = (tmp_path / "out" / "calls.jsonl").read_text().splitlines()
    assert len(calls) == 9 and json.loads(calls[-1])[-2:] == ["--max_steps", "2"]
    run_study(plan, ["camera_alone"], seeds=[0], entry_point=fake_entry, nice=0, **kwargs)
    assert len((tmp_path / "out" / "calls.jsonl").read_text().splitlines()) == 10

    table = aggregate_unidistill_paths(plan, tmp_path / "results", machine="test", data_hash="abc", root=tmp_path)
    entry = table["paths"]["L->C"]
    assert entry["teacher"]["mAP"] == 0.6
    assert entry["student_alone"]["seeds"] == [0, 1, 2]
    assert entry["student_alone"]["mAP"] == pytest.approx([0.1, 0.11, 0.12])  # kept unrounded
    assert (
        entry["distilled"]["NDS"] == pytest.approx([0.3, 0.31, 0.32])
        and entry["distilled"]["recipe"] == "recipes/l2c.yaml"
    )
    assert entry["distilled"]["NDS_mean"] == pytest.approx(0.31) and entry["distilled"]["NDS_std"] == pytest.approx(
        0.01
    )
    assert table["variants"]["L->C"]["l2c_paper"]["mAP"] == pytest.approx([0.07])
    assert table["data"] == "make data (tables sha256 abc)" and table["scale"] == "tiny"


def test_dev_split_runs_are_kept_apart_and_failures_are_reported(tmp_path, fake_entry):
    arms = ARMS + "broken: {recipe: recipes/broken.yaml, seeds: [0]}\n"
    plan_file = write_plan(tmp_path, arms, {"camera_alone": 0.1, "l2c": 0.2, "l2c_paper": 0.05})
    (tmp_path / "recipes" / "broken.yaml").write_text("student_config: camera\nfail: true\n")
    plan = load_study_plan(plan_file, tmp_path)
    kwargs = {"out_root": tmp_path / "out", "results_root": tmp_path / "results", "root": tmp_path}
    (result,) = run_study(plan, ["l2c"], split="dev", seeds=[1], entry_point=fake_entry, nice=0, **kwargs)
    assert result["eval_split"] == "train_track" and (tmp_path / "results" / "dev" / "l2c" / "seed1.json").is_file()
    assert not (tmp_path / "results" / "val").exists()
    with pytest.raises(RuntimeError, match="broken seed 0 failed with exit code 3"):
        run_study(plan, ["broken"], entry_point=fake_entry, nice=0, **kwargs)
    with pytest.raises(StudyPlanError, match="unknown arm"):
        run_study(plan, ["nope"], entry_point=fake_entry, **kwargs)


def test_a_killed_run_resumes_from_its_newest_complete_checkpoint(tmp_path, fake_entry):
    plan = load_study_plan(write_plan(tmp_path, ARMS, {"camera_alone": 0.1, "l2c": 0.2, "l2c_paper": 0.0}), tmp_path)
    run_dir = tmp_path / "out" / "val" / "camera_alone" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "study_fingerprint").write_text(plan.arms["camera_alone"].fingerprint(0, "val") + "\n")
    for step, complete in ((100, True), (200, True), (300, False)):  # 300 was killed mid-write
        folder = run_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert latest_complete_checkpoint(run_dir) == run_dir / "checkpoint-200"
    assert latest_complete_checkpoint(tmp_path / "missing") is None
    kwargs = {"out_root": tmp_path / "out", "results_root": tmp_path / "results", "root": tmp_path}
    (result,) = run_study(plan, ["camera_alone"], seeds=[0], entry_point=fake_entry, nice=0, **kwargs)
    assert result["resumed_from"] == "out/val/camera_alone/seed0/checkpoint-200"  # relative to the root
    assert "--resume_from_checkpoint" in result["command"]

    # A folder left by another version of the recipe is not resumed: it is removed and the run starts afresh.
    (tmp_path / "recipes" / "camera_alone.yaml").write_text("student_config: camera\nquality: 0.3\n")
    stale = run_dir / "checkpoint-200"
    assert stale.is_dir()
    (result,) = run_study(plan, ["camera_alone"], seeds=[0], entry_point=fake_entry, nice=0, **kwargs)
    assert result["resumed_from"] is None and "--resume_from_checkpoint" not in result["command"]
    assert not stale.exists() and result["mAP"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("arms", "match"),
    [
        ("a: {recipe: recipes/none.yaml, seeds: [0]}\n", "does not exist"),
        ("a: {recipe: recipes/camera_alone.yaml, seeds: []}\n", "seeds"),
        ("a: {recipe: recipes/camera_alone.yaml, seeds: [0], role: boss}\n", "role"),
        ("a: {recipe: recipes/camera_alone.yaml, seeds: [0], role: distilled, path: L->C}\n", "teacher"),
        ("a: {recipe: recipes/camera_alone.yaml, seeds: [0], role: term, path: X, teacher: lidar}\n", "path"),
        (
            "a: {recipe: recipes/camera_alone.yaml, seeds: [0], role: distilled, path: L->C, teacher: lidar}\n",
            "names its 'alone' arm",
        ),
        (
            "a: {recipe: recipes/camera_alone.yaml, seeds: [0], role: distilled, path: L->C, teacher: lidar, "
            "alone: b}\n",
            "not an alone arm",
        ),
    ],
)
def test_bad_plans_are_refused_naming_the_arm(tmp_path, arms, match):
    plan_file = write_plan(tmp_path, arms, {"camera_alone": 0.1})
    with pytest.raises(StudyPlanError, match=match):
        load_study_plan(plan_file, tmp_path)
    plan_file.write_text("arms: [unclosed")
    with pytest.raises(StudyPlanError, match="not valid YAML"):
        load_study_plan(plan_file, tmp_path)


def test_committed_study_plan_loads():
    root = Path(__file__).resolve().parents[1]
    plan = load_study_plan(root / "hub_configs" / "recipes" / "study" / "unidistill_paths.yaml", root)
    assert plan.eval_split("dev") == "train_track" and plan.eval_split("val") == "val"
    assert any(arm.role == "distilled" for arm in plan.arms.values())


def test_dataroot_fingerprint_follows_the_tables(tmp_path):
    tables = tmp_path / "v1.0-mini"
    tables.mkdir()
    (tables / "scene.json").write_text("[]")
    first = dataroot_fingerprint(tmp_path, "v1.0-mini")
    (tables / "scene.json").write_text("[{}]")
    assert dataroot_fingerprint(tmp_path, "v1.0-mini") != first
    with pytest.raises(FileNotFoundError, match="no nuScenes tables"):
        dataroot_fingerprint(tmp_path, "v1.0-trainval")


def test_teachers_train_in_plan_order_from_their_init_teacher_and_install(tmp_path, fake_entry, monkeypatch):
    import hf_crossdistill.experiments as experiments

    plan_file = write_plan(tmp_path, ARMS, {"camera_alone": 0.1, "l2c": 0.2, "l2c_paper": 0.05, "lidar_t": 0.6})
    text = plan_file.read_text().replace(
        "teachers:\n",
        "teachers:\n  first: {recipe: recipes/lidar_t.yaml, folder: installed/first}\n"
        "  second: {recipe: recipes/lidar_t.yaml, folder: installed/second, init_from: first}\n",
    )
    plan_file.write_text(text)
    plan = load_study_plan(plan_file, tmp_path)
    real_run_arm = experiments.run_arm
    monkeypatch.setattr(
        experiments, "run_arm", lambda *a, **k: real_run_arm(*a, **{**k, "entry_point": fake_entry, "nice": 0})
    )
    kwargs = {"root": tmp_path, "out_root": tmp_path / "out", "results_root": tmp_path / "results"}
    trained = experiments.train_teachers(plan, install=False, **kwargs)
    assert trained["second"] == tmp_path / "out" / "val" / "teacher_second" / "seed0"
    # `second` started from `first` as trained in this call; nothing was installed.
    assert (trained["second"] / "model.safetensors").read_text() == str(trained["first"])
    assert not (tmp_path / "installed").exists()
    result = json.loads((tmp_path / "results" / "val" / "teacher_first" / "seed0.json").read_text())
    assert result["cpu_s"] >= 0 and result["wall_s"] >= 0  # per child (wait4), not the whole process

    (tmp_path / "installed" / "first").mkdir(parents=True)
    (tmp_path / "installed" / "first" / "model.safetensors").write_text("kept")
    installed = experiments.train_teachers(plan, install=True, **kwargs)
    assert (tmp_path / "installed" / "first" / "model.safetensors").read_text() == "kept"  # existing: kept
    assert installed["second"] == tmp_path / "installed" / "second"
    assert {p.name for p in installed["second"].iterdir()} == {"config.json", "model.safetensors", "eval_results.json"}
    assert (installed["second"] / "model.safetensors").read_text() == str(tmp_path / "installed" / "first")

    plan_file.write_text(text.replace("init_from: first", "init_from: second"))
    with pytest.raises(StudyPlanError, match="init_from must name a teacher listed before it"):
        load_study_plan(plan_file, tmp_path)

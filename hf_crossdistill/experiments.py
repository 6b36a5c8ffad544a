"""Resumable studies of training runs: arms are recipe files, each finished run leaves a result JSON.

A study plan (YAML, e.g. `hub_configs/recipes/study/unidistill_paths.yaml`) names the data, the teachers and the
arms. Every arm is one recipe file run with a list of seeds; nothing else varies between its runs, so an arm's
result is reproduced by `python scripts/distill.py --config <recipe> --seed <s>`. For every (arm, seed) the runner

1. skips the run when `<results>/<arm>/seed<s>.json` exists with the same fingerprint (SHA-256 of the recipe
   file's text, the seed and the evaluation split), so a study resumes where it stopped and a changed recipe
   reruns;
2. otherwise starts the training entry point in a subprocess (one compute thread, `nice`), resuming from the
   newest complete `checkpoint-*` of its output folder when a previous attempt with the same fingerprint was
   killed (an output folder of another fingerprint is removed first);
3. reads the run's `eval_results.json` and writes the result JSON (metrics, wall / CPU time, the command, the
   commit, and the per-term loss curve from `distill_summary.json`).

`aggregate_unidistill_paths` turns the result JSONs of a plan into the machine-readable table of the four paths
(`docs/results/unidistill_paths.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PATHS",
    "Arm",
    "StudyPlan",
    "aggregate_unidistill_paths",
    "dataroot_fingerprint",
    "latest_complete_checkpoint",
    "load_study_plan",
    "run_arm",
    "run_fingerprint",
    "run_study",
    "train_teachers",
]

PATHS = ("L+C->L", "L+C->C", "C->L", "L->C")
EVAL_SPLITS = ("val", "dev")
FINGERPRINT_FILE = "study_fingerprint"
TEACHER_FILES = ("config.json", "model.safetensors", "eval_results.json")
# alone: a student without teacher; distilled: a path's chosen setting (one per path); variant: another setting of
# a path (e.g. the paper's weights); term: a Table-2 row (one distillation term alone).
ROLES = ("alone", "distilled", "variant", "term")


class StudyPlanError(ValueError):
    """A study plan that cannot be run (the message names the plan file and the key)."""


def run_fingerprint(*parts: Any) -> str:
    """SHA-256 of the JSON of `parts` (sorted keys): what decides whether a finished run can be reused."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Arm:
    """One arm: a recipe run once per seed. `path` / `role` place it in the four-path table."""

    name: str
    recipe: Path
    seeds: tuple[int, ...]
    path: str | None = None
    role: str = "alone"  # one of ROLES
    teacher: str | None = None  # key of `StudyPlan.teachers`
    alone: str | None = None  # a distilled arm's "student alone" arm (same student, no teacher)

    def fingerprint(self, seed: int, split: str, extra_args: Sequence[str] = (), teacher: str | None = None) -> str:
        """What a finished run's result must match to be reused: recipe text, seed, split, extra CLI arguments and
        the teacher folder."""
        return run_fingerprint(self.recipe.read_text(), int(seed), split, list(extra_args), teacher)


@dataclass(frozen=True)
class StudyPlan:
    """A parsed study plan; paths are relative to the repository root the plan is run from."""

    source: Path
    name: str
    scale: str
    data: dict[str, Any]
    teachers: dict[str, dict[str, Any]]
    arms: dict[str, Arm] = field(default_factory=dict)
    dev_split: str = "train_track"

    def eval_split(self, split: str) -> str:
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
        return "val" if split == "val" else self.dev_split


def _teacher_name(plan: StudyPlan, arm: Arm) -> str | None:
    """The arm's teacher folder as the plan names it (part of the fingerprint, so another checkout reuses results)."""
    return plan.teachers[arm.teacher]["folder"] if arm.teacher is not None else None


def _require(mapping: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in mapping:
        raise StudyPlanError(f"{where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise StudyPlanError(f"{where}: {key!r} must be {kind}, got {type(value).__name__}")
    return value


def load_study_plan(path: str | os.PathLike, root: str | os.PathLike = ".") -> StudyPlan:
    """Read and validate a study plan; recipe paths are checked to exist (relative to `root`)."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"study plan {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyPlanError(f"study plan {path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise StudyPlanError(f"study plan {path}: a plan is a mapping")
    where = f"study plan {path}"
    teachers = _require(raw, "teachers", dict, where)
    for i, (key, teacher) in enumerate(teachers.items()):
        _require(teacher, "folder", str, f"{where}, teacher {key!r}")
        _require(teacher, "recipe", str, f"{where}, teacher {key!r}")
        if teacher.get("init_from") is not None and teacher["init_from"] not in list(teachers)[:i]:
            raise StudyPlanError(
                f"{where}, teacher {key!r}: init_from must name a teacher listed before it, "
                f"got {teacher['init_from']!r}"
            )
    arms = {}
    for name, spec in _require(raw, "arms", dict, where).items():
        at = f"{where}, arm {name!r}"
        if not isinstance(spec, dict):
            raise StudyPlanError(f"{at}: an arm is a mapping")
        recipe = root / _require(spec, "recipe", str, at)
        if not recipe.is_file():
            raise StudyPlanError(f"{at}: recipe {recipe} does not exist")
        seeds = _require(spec, "seeds", list, at)
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise StudyPlanError(f"{at}: seeds must be a non-empty list of ints >= 0, got {seeds!r}")
        role = spec.get("role", "alone")
        if role not in ROLES:
            raise StudyPlanError(f"{at}: role must be one of {ROLES}, got {role!r}")
        arm_path = spec.get("path")
        if arm_path is not None and arm_path not in PATHS:
            raise StudyPlanError(f"{at}: path must be one of {PATHS}, got {arm_path!r}")
        teacher = spec.get("teacher")
        if role != "alone" and (teacher not in teachers or arm_path is None):
            raise StudyPlanError(f"{at}: a {role} arm needs a path and a teacher of the plan's teachers")
        alone = spec.get("alone")
        if role == "distilled" and alone is None:
            raise StudyPlanError(f"{at}: a distilled arm names its 'alone' arm (same student without teacher)")
        arms[name] = Arm(name, recipe, tuple(seeds), arm_path, role, teacher, alone)
    for arm in arms.values():
        if arm.alone is not None and (arm.alone not in arms or arms[arm.alone].role != "alone"):
            raise StudyPlanError(f"{where}, arm {arm.name!r}: alone arm {arm.alone!r} is not an alone arm of the plan")
    return StudyPlan(
        source=path,
        name=str(raw.get("name", path.stem)),
        scale=str(_require(raw, "scale", str, where)),
        data=_require(raw, "data", dict, where),
        teachers=teachers,
        arms=arms,
        dev_split=str(raw.get("dev_split", "train_track")),
    )


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest `checkpoint-<N>` with weights and trainer state (a folder killed mid-write is skipped)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    complete = []
    for child in folder.glob("checkpoint-*"):
        step = child.name.split("-", 1)[1]
        if step.isdigit() and (child / "trainer_state.json").is_file() and (child / "model.safetensors").is_file():
            complete.append((int(step), child))
    return max(complete)[1] if complete else None


def _portable(part: str, root: Path) -> str:
    """A command-line word as a reader can reuse it: `python` for this interpreter, paths relative to `root`."""
    if part == sys.executable:
        return "python"
    path = Path(part)
    if path.is_absolute() and path.is_relative_to(root.resolve()):
        return str(path.relative_to(root.resolve()))
    return part


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _term_curve(summary_file: Path) -> list[dict[str, float]]:
    """The logged training entries (step and every loss / diagnostic term) of a run's `distill_summary.json`."""
    if not summary_file.is_file():
        return []
    history = json.loads(summary_file.read_text()).get("log_history", [])
    keep = ("loss", "det_", "kd_weight_", "diag_")
    return [
        {k: v for k, v in entry.items() if k == "step" or k.startswith(keep)}
        for entry in history
        if "loss" in entry and "eval_loss" not in entry
    ]


def run_arm(
    plan: StudyPlan,
    arm: Arm,
    seed: int,
    *,
    split: str,
    out_root: Path,
    results_root: Path,
    root: Path,
    entry_point: Sequence[str] | None = None,
    threads: int = 1,
    nice: int = 10,
    extra_args: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or reuse) one seed of one arm and return its result; see the module docstring."""
    eval_split = plan.eval_split(split)
    result_file = results_root / split / arm.name / f"seed{seed}.json"
    teacher_name = _teacher_name(plan, arm)
    teacher_folder = str(root / teacher_name) if teacher_name is not None else None
    fingerprint = arm.fingerprint(seed, eval_split, extra_args, teacher_name)
    if result_file.is_file():
        previous = json.loads(result_file.read_text())
        if previous.get("fingerprint") == fingerprint:
            log(f"[study] {arm.name} seed {seed} ({split}): done, reused {result_file}")
            return previous
    output_dir = out_root / split / arm.name / f"seed{seed}"
    command = list(entry_point or [sys.executable, str(root / "scripts" / "distill.py")])
    command += ["--config", str(arm.recipe), "--seed", str(seed), "--output_dir", str(output_dir)]
    command += ["--eval_split", eval_split, "--disable_tqdm", "true", *extra_args]
    if teacher_folder is not None:
        command += ["--teacher_model_name_or_path", teacher_folder]
    # Only a folder started with the same fingerprint may be resumed: checkpoints of another recipe, seed or
    # argument list are removed first (a changed recipe would otherwise "resume" at its old final step).
    stamp = output_dir / FINGERPRINT_FILE
    if output_dir.exists() and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        log(f"[study] {arm.name} seed {seed} ({split}): {output_dir} is from another recipe or arguments; removed")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    resume = latest_complete_checkpoint(output_dir)
    if resume is not None:
        command += ["--resume_from_checkpoint", str(resume)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log(f"[study] {arm.name} seed {seed} ({split}): {' '.join(command)}")
    start = time.monotonic()
    with open(output_dir / "study_run.log", "a") as out:
        process = subprocess.Popen(
            ["nice", "-n", str(nice), *command] if nice else command, cwd=root, env=env, stdout=out, stderr=out
        )
        # wait4 gives this child's own CPU time (its loader workers included); os.times() would mix in the other
        # runs that finish meanwhile when `run_study` runs several at a time.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if process.returncode != 0:
        raise RuntimeError(
            f"[study] {arm.name} seed {seed} failed with exit code {process.returncode}; see "
            f"{output_dir / 'study_run.log'}"
        )
    metrics_file = output_dir / "eval_results.json"
    if not metrics_file.is_file():
        raise RuntimeError(f"[study] {arm.name} seed {seed}: the run wrote no {metrics_file}")
    metrics = json.loads(metrics_file.read_text())
    result = {
        "arm": arm.name,
        "seed": seed,
        "split": split,
        "eval_split": eval_split,
        "recipe": str(arm.recipe.relative_to(root) if arm.recipe.is_relative_to(root) else arm.recipe),
        "teacher": arm.teacher,
        "fingerprint": fingerprint,
        "mAP": float(metrics["eval_mAP"]),
        "NDS": float(metrics["eval_NDS"]),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "resumed_from": _portable(str(resume), root) if resume is not None else None,
        "command": " ".join(_portable(part, root) for part in command),
        "commit": _git_commit(root),
        "curve": _term_curve(output_dir / "distill_summary.json"),
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    log(
        f"[study] {arm.name} seed {seed} ({split}): mAP {result['mAP']:.4f} NDS {result['NDS']:.4f} "
        f"({wall / 60:.1f} min)"
    )
    return result


def train_teachers(
    plan: StudyPlan,
    *,
    root: Path,
    out_root: Path,
    results_root: Path,
    install: bool,
    extra_args: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Train the plan's teachers in plan order; returns each teacher's trained folder.

    A teacher with `init_from: <key>` starts from that teacher as trained in this call (`--student_init`, names
    and shapes that match, as BEVFusion starts from its LiDAR detector). With `install` the plan's committed
    folders are the target: a teacher whose folder already has weights is kept, a new one is copied there
    (config, weights, its val metrics). Without it every teacher is retrained into `out_root` only.
    """
    trained: dict[str, Path] = {}
    for key, teacher in plan.teachers.items():
        folder = root / teacher["folder"]
        if install and (folder / "model.safetensors").is_file():
            log(f"[study] teacher {key}: {folder} exists")
            trained[key] = folder
            continue
        arm = Arm(f"teacher_{key}", root / teacher["recipe"], (0,))
        init = teacher.get("init_from")
        extra = [*extra_args, *(["--student_init", str(trained[init])] if init is not None else [])]
        run_arm(plan, arm, 0, split="val", out_root=out_root, results_root=results_root, root=root,
                threads=2, nice=0, extra_args=extra, log=log)  # fmt: skip
        trained[key] = out_root / "val" / arm.name / "seed0"
        if install:
            folder.mkdir(parents=True, exist_ok=True)
            for name in TEACHER_FILES:
                shutil.copy2(trained[key] / name, folder / name)
            log(f"[study] teacher {key}: copied into {folder}")
            trained[key] = folder
    return trained


def run_study(
    plan: StudyPlan,
    arm_names: Sequence[str] | None = None,
    *,
    split: str = "val",
    seeds: Sequence[int] | None = None,
    jobs: int = 2,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Run every (arm, seed) of `arm_names` (default: all arms), `jobs` at a time; finished ones are reused."""
    names = list(arm_names or plan.arms)
    unknown = sorted(set(names) - set(plan.arms))
    if unknown:
        raise StudyPlanError(f"study plan {plan.source}: unknown arm(s) {unknown}; arms: {sorted(plan.arms)}")
    runs = [(plan.arms[n], s) for n in names for s in plan.arms[n].seeds if seeds is None or s in seeds]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_arm, plan, arm, seed, split=split, **kwargs) for arm, seed in runs]
        return [f.result() for f in futures]


def dataroot_fingerprint(dataroot: str | os.PathLike, version: str) -> str:
    """SHA-256 over the dataroot's table files (names and bytes): which generated data a result was measured on."""
    tables = Path(dataroot) / version
    if not tables.is_dir():
        raise FileNotFoundError(f"{tables}: no nuScenes tables")
    digest = hashlib.sha256()
    for file in sorted(tables.glob("*.json")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate_unidistill_paths(
    plan: StudyPlan,
    results_root: Path,
    *,
    machine: str,
    data_hash: str | None = None,
    seeds: Sequence[int] | None = None,
    root: Path = Path("."),
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """The four-path table of a plan from its val result JSONs (paths with no finished arm are left out).

    Shape: `{"scale", "data", "machine", "paths": {path: {"teacher": {"mAP", "NDS"}, "student_alone": {"seeds",
    "mAP", "NDS"}, "distilled": {"recipe", "seeds", "mAP", "NDS"}}}}`, fractions; plus `"terms"` (Table-2 rows:
    one term alone), `"variants"` (other settings of a path) and each entry's mean / std. `seeds` keeps only those
    seeds of every arm. `root` and `extra_args` as given to `run_study` (only results of those runs count).
    """

    def collect(arm: Arm) -> dict[str, Any] | None:
        rows = []
        for seed in arm.seeds:
            if seeds is not None and seed not in seeds:
                continue
            file = results_root / "val" / arm.name / f"seed{seed}.json"
            if file.is_file():
                result = json.loads(file.read_text())
                if result.get("fingerprint") == arm.fingerprint(seed, "val", extra_args, _teacher_name(plan, arm)):
                    rows.append(result)
        if not rows:
            return None
        entry = {
            "arm": arm.name,
            "recipe": rows[0]["recipe"],
            "seeds": [r["seed"] for r in rows],
            "mAP": [r["mAP"] for r in rows],
            "NDS": [r["NDS"] for r in rows],
            "wall_min": [round(r["wall_s"] / 60, 1) for r in rows],
        }
        for key in ("mAP", "NDS"):  # unrounded: criteria compare a difference of means with a std
            entry[f"{key}_mean"], entry[f"{key}_std"] = _mean_std(entry[key])
        return entry

    command = plan.data.get("command", "")
    data = f"{command} (tables sha256 {data_hash})" if data_hash else command
    table: dict[str, Any] = {
        "scale": plan.scale,
        "data": data,
        "machine": machine,
        "paths": {},
        "variants": {},
        "terms": {},
    }
    for arm in plan.arms.values():
        if arm.role == "alone" or arm.path is None:
            continue
        distilled = collect(arm)
        if distilled is None:
            continue
        if arm.role in ("term", "variant"):
            table[f"{arm.role}s"].setdefault(arm.path, {})[arm.name] = distilled
            continue
        teacher_file = root / plan.teachers[arm.teacher]["folder"] / "eval_results.json"
        teacher_metrics = json.loads(teacher_file.read_text()) if teacher_file.is_file() else {}
        alone = collect(plan.arms[arm.alone]) if arm.alone is not None else None
        table["paths"][arm.path] = {
            "teacher": {
                "mAP": teacher_metrics.get("eval_mAP"),
                "NDS": teacher_metrics.get("eval_NDS"),
                "folder": plan.teachers[arm.teacher]["folder"],
            },
            "student_alone": alone,
            "distilled": distilled,
        }
    return table

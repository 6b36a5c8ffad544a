#!/usr/bin/env python
"""UniDistill training entry point, and supervised training of BEV detectors when the recipe names no teacher.

    accelerate launch scripts/distill.py --config hub_configs/recipes/bev_lidar_supervised_tiny.yaml
    accelerate launch scripts/distill.py --config hub_configs/recipes/unidistill_lidar_to_camera_tiny.yaml \
        --teacher_model_name_or_path outputs/bev_lidar_supervised_tiny --max_steps 100

The recipe (YAML or JSON) holds the flat fields of `DistillScriptArguments` and `UniDistillConfig`
(`TrainingArguments` plus the loss settings); any of them can be overridden on the command line. With an
`eval_split`, every evaluation (`eval_strategy`, and once after training) decodes the student's boxes on that split
and scores them with the official nuScenes detection metrics (`eval_mAP`, `eval_NDS`, ...); the final metrics go to
`<output_dir>/eval_results.json`, the devkit's files to `<output_dir>/nuscenes_eval/step-<N>/`. The trained
student is saved as a safetensors `save_pretrained` folder in `output_dir` (checkpoints in `checkpoint-<N>/`);
progress bars show on the terminal and `report_to: tensorboard` logs to `<output_dir>/runs/`.

Launching (accelerate configs in hub_configs/accelerate/):
- one CPU / one GPU: `python scripts/distill.py ...` or `accelerate launch scripts/distill.py ...`;
- several CPU processes (gloo): `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2
  --main_process_port 0 scripts/distill.py ...` (without ACCELERATE_USE_CPU both processes silently run as rank 0);
- many GPUs: `accelerate launch --config_file hub_configs/accelerate/multi_gpu.yaml scripts/distill.py ...
  --sync_batchnorm true`. accelerate has no SyncBatchNorm switch: with `sync_batchnorm: true` this script converts
  the student's BatchNorm layers with `torch.nn.SyncBatchNorm.convert_sync_batchnorm` when the world is larger than
  one CUDA process (batch 1 per GPU as in the paper makes per-GPU batch statistics useless);
- many nodes: `accelerate launch --config_file hub_configs/accelerate/multi_node.yaml --machine_rank <r>
  --main_process_ip <node 0 address> scripts/distill.py ...` on every node.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DistillScriptArguments:
    """What to train on and which student to build (the TrainingArguments side is `UniDistillConfig`)."""

    student_config: str | None = field(
        default=None,
        metadata={"help": "Student architecture: a preset name of hub_configs/models/, a config.json, or a folder."},
    )
    student_init: str | None = field(
        default=None,
        metadata={"help": "Optional save_pretrained folder to initialise the student's weights from."},
    )
    student_init_strict: bool = field(
        default=True,
        metadata={
            "help": "True: student_init must have the student's exact config and every weight. False: load the "
            "tensors whose names and shapes match (e.g. a fusion detector from a trained LiDAR detector, as "
            "BEVFusion does) and report the rest."
        },
    )
    dataroot: str | None = field(default=None, metadata={"help": "nuScenes dataroot (v1.0-mini layout or full)."})
    version: str = field(default="v1.0-mini", metadata={"help": "nuScenes version."})
    train_split: str = field(default="mini_train", metadata={"help": "devkit split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "devkit split for loss evaluation (optional)."})
    num_sweeps: int | None = field(default=None, metadata={"help": "LiDAR sweeps per sample (default: config's)."})
    augment: bool = field(default=True, metadata={"help": "BEV + image augmentation of the training data."})
    data_seed_offset: int = field(default=0, metadata={"help": "Added to --seed for the augmentation draws."})
    sync_batchnorm: bool = field(
        default=False,
        metadata={
            "help": "Convert the student's BatchNorm to SyncBatchNorm when training on more than one CUDA process "
            "(accelerate has no such switch). Ignored on CPU and in a world of one."
        },
    )
    official_eval: bool = field(
        default=True,
        metadata={"help": "Score the eval_split with the official nuScenes metrics at every evaluation."},
    )
    eval_score_threshold: float | None = field(
        default=None, metadata={"help": "Decoding score threshold for the evaluation (default: the config's)."}
    )


def resolve_student_config(spec: str):
    """The student's `BEVDetectorConfig` from a preset name, a config.json or a save_pretrained folder."""
    from hf_crossdistill.models.bev_detector import BEVDetectorConfig
    from hf_crossdistill.presets import resolve_config

    config = resolve_config(spec, what="student_config")
    if not isinstance(config, BEVDetectorConfig):
        raise ValueError(f"student_config {spec!r} is a {type(config).__name__}, not a BEV detector config")
    return config


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file, or a shipped recipe by name (`bev_lidar_supervised_small`, `study/camera_alone`)."""
    from hf_crossdistill.presets import recipe_path

    path = Path(path)
    if not path.is_file():
        if path.is_absolute() or path.suffix not in ("", ".yaml"):
            raise FileNotFoundError(f"--config {path}: no such recipe file")
        try:
            path = recipe_path(str(path))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"--config {path}: no such recipe file, and {err}") from err
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        recipe = yaml.safe_load(text)
    elif path.suffix == ".json":
        recipe = json.loads(text)
    else:
        raise ValueError(f"--config {path}: recipes are .yaml/.yml or .json files")
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {path}: a recipe is a mapping of argument names to values")
    return recipe


def parse_arguments(argv: list[str] | None = None):
    """(script_args, training_args) from `--config <recipe>` defaults overridden by the other CLI arguments."""
    from transformers import HfArgumentParser

    from hf_crossdistill.distill import UniDistillConfig
    from hf_crossdistill.distill._arguments import set_recipe_defaults

    argv = list(sys.argv[1:] if argv is None else argv)
    recipe: dict[str, Any] = {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("--config needs a recipe path")
        recipe = load_recipe(argv[i + 1])
        del argv[i : i + 2]
    parser = HfArgumentParser((DistillScriptArguments, UniDistillConfig))
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"recipe has unknown keys {unknown}")
    set_recipe_defaults(parser, recipe, argv)
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if script_args.student_config is None:
        raise SystemExit("student_config is required (in the recipe or --student_config)")
    if script_args.dataroot is None:
        raise SystemExit("dataroot is required (in the recipe or --dataroot)")
    return script_args, training_args


def build_dataset(script_args: DistillScriptArguments, configs, split: str, *, augment: bool, seed: int):
    """The streaming nuScenes dataset of `split` for the models of `configs` (the student's first)."""
    from hf_crossdistill.data.nuscenes import loader_options, nuscenes_detection_dataset

    kwargs = loader_options(*configs)
    if script_args.num_sweeps is not None:
        kwargs["num_sweeps"] = script_args.num_sweeps
    return nuscenes_detection_dataset(
        script_args.dataroot,
        script_args.version,
        split,
        augment=augment,
        point_cloud_range=configs[0].point_cloud_range,
        seed=seed,
        **kwargs,
    )


def maybe_sync_batchnorm(model, training_args, enabled: bool):
    """SyncBatchNorm conversion when asked for and the run is a multi-process CUDA world; the model otherwise."""
    import torch

    if not enabled:
        return model
    if training_args.world_size > 1 and training_args.device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    print(
        f"sync_batchnorm ignored: world size {training_args.world_size} on {training_args.device.type} "
        "(SyncBatchNorm needs several CUDA processes)"
    )
    return model


def config_differences(saved, wanted) -> dict[str, tuple[Any, Any]]:
    """`{field: (saved value, wanted value)}` for the architecture fields on which two model configs disagree."""
    from hf_crossdistill.presets import SAVE_METADATA_KEYS

    a, b = saved.to_dict(), wanted.to_dict()
    keys = (set(a) | set(b)) - SAVE_METADATA_KEYS
    return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}


def main(argv: list[str] | None = None) -> int:
    import torch

    from hf_crossdistill.distill import NuScenesEvaluation, UniDistillTrainer
    from hf_crossdistill.distill._distributed import shutdown_distributed
    from hf_crossdistill.distill.unidistill_trainer import load_matching_weights, load_pretrained_strict
    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv[:-1]:  # EvDistill recipes (method: evdistill / supervised) have their own runner
        from hf_crossdistill.distill.evdistill_runner import is_evdistill_recipe, run_evdistill

        i = argv.index("--config")
        recipe = load_recipe(argv[i + 1])
        if is_evdistill_recipe(recipe):
            run_evdistill(recipe, argv[:i] + argv[i + 2 :])
            shutdown_distributed()
            return 0
    script_args, training_args = parse_arguments(argv)
    config = resolve_student_config(script_args.student_config)
    if script_args.student_init is not None and script_args.student_init_strict:
        student = load_pretrained_strict(BEVDetectorForObjectDetection, script_args.student_init)
        differences = config_differences(student.config, config)
        if differences:
            raise ValueError(
                f"student_init {script_args.student_init} has a different config than student_config "
                f"{script_args.student_config} (checkpoint, student_config): {differences}"
            )
    else:
        torch.manual_seed(training_args.seed)
        student = BEVDetectorForObjectDetection(config)
        if script_args.student_init is not None:
            report = load_matching_weights(student, script_args.student_init)
            fresh = sorted({".".join(k.split(".")[:2]) for k in report["not_in_checkpoint"]})
            print(
                f"[distill] student_init {script_args.student_init}: {len(report['loaded'])} tensors loaded; "
                f"newly initialised: {fresh or 'nothing'}; checkpoint tensors not used: "
                f"{len(report['not_in_model']) + len(report['shape_mismatched'])}"
            )
    student = maybe_sync_batchnorm(student, training_args, script_args.sync_batchnorm)
    teacher = None
    if training_args.teacher_model_name_or_path is not None:
        teacher = load_pretrained_strict(BEVDetectorForObjectDetection, training_args.teacher_model_name_or_path)
    configs = [config] + ([teacher.config] if teacher is not None else [])

    seed = training_args.seed + script_args.data_seed_offset
    train_dataset = build_dataset(
        script_args, configs, script_args.train_split, augment=script_args.augment, seed=seed
    )
    eval_dataset = evaluation = None
    if script_args.eval_split is not None:
        eval_dataset = build_dataset(script_args, configs, script_args.eval_split, augment=False, seed=seed)
        if script_args.official_eval:
            evaluation = NuScenesEvaluation(
                dataroot=str(script_args.dataroot),
                version=script_args.version,
                eval_set=script_args.eval_split,
                score_threshold=script_args.eval_score_threshold,
            )

    trainer = UniDistillTrainer(
        model=student,
        args=training_args,
        teacher=teacher,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        nuscenes_evaluation=evaluation,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    metrics = trainer.evaluate() if eval_dataset is not None else {}
    if metrics:
        trainer.save_metrics("eval", metrics)
    if trainer.is_world_process_zero():
        summary = {
            "world_size": trainer.accelerator.num_processes,
            "distills": trainer.teacher is not None,
            "log_history": trainer.state.log_history,
            "eval": metrics,
        }
        Path(training_args.output_dir, "distill_summary.json").write_text(json.dumps(summary, indent=2))
        shown = {k: round(v, 4) for k, v in metrics.items() if k in ("eval_mAP", "eval_NDS")}
        print(f"world_size={summary['world_size']} output_dir={training_args.output_dir} {shown}")
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

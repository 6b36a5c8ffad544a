"""Run an EvDistill recipe end to end: data → (teacher | EvDistill student) training → evaluation → saved model.

    accelerate launch scripts/distill.py --config hub_configs/recipes/evdistill_teacher_ddd17_tiny.yaml  # T first
    accelerate launch scripts/distill.py --config hub_configs/recipes/evdistill_ddd17_tiny.yaml          # then S_ev

`scripts/distill.py` hands every recipe whose `method` is `evdistill` or `supervised` to [`run_evdistill`]. A
recipe is a flat mapping: the fields of [`EvDistillScriptArguments`] (what to train on, which networks) plus the
fields of [`EvDistillConfig`] (`method: evdistill`) or of `TrainingArguments` (`method: supervised`, the image
teacher trained on the labelled source images; DeepLabV3+ and the ResNet classifier return their own loss).

After training, S_ev (or T) is written alone as a `save_pretrained` folder in `output_dir` (BMR, S_aps, the
discriminators and h stay in the `checkpoint-*/evdistill_extras/` folders, needed only to resume), evaluated on the
event test split (segmentation: one confusion matrix over the split and all ranks, ignore 255 → mIoU, per-class
IoU, pixel accuracy; recognition: top-1), and the metrics are written to `output_dir/evdistill_metrics.json`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..presets import resolve_config_path
from ._distributed import shutdown_distributed

__all__ = [
    "EVDISTILL_METHODS",
    "EvDistillScriptArguments",
    "evaluate_event_model",
    "is_evdistill_recipe",
    "parse_evdistill_arguments",
    "resolve_model_config",
    "run_evdistill",
]

EVDISTILL_METHODS = ("evdistill", "supervised")
TASKS = ("segmentation", "recognition")
METRICS_FILE = "evdistill_metrics.json"
_DICT_FIELDS = ("event_dataset", "source_dataset", "eval_dataset")


@dataclass
class EvDistillScriptArguments:
    """What an EvDistill recipe trains on and which networks it builds (the training side is `EvDistillConfig`)."""

    method: str = field(
        default="evdistill",
        metadata={"help": "'evdistill' (distil T into S_ev, or a baseline by `mode`) or 'supervised' (train T)."},
    )
    task: str = field(default="segmentation", metadata={"help": "'segmentation' (DeepLabV3+) or 'recognition'."})
    student_config: str | None = field(
        default=None,
        metadata={"help": "Network to train: a preset name of hub_configs/models/, a config.json or a folder."},
    )
    student_init: str | None = field(
        default=None, metadata={"help": "Optional save_pretrained folder to initialise the trained network from."}
    )
    event_root: str | None = field(
        default=None, metadata={"help": "Event data root (DDD17-ESS / DSEC layout, or N-Caltech class folders)."}
    )
    source_root: str | None = field(default=None, metadata={"help": "Labelled source-image root."})
    event_dataset: str | None = field(
        default=None,
        metadata={"help": "JSON object of event dataset arguments (recipes give a mapping), e.g. representation."},
    )
    source_dataset: str | None = field(
        default=None, metadata={"help": "JSON object of `labeled_image_dataset` arguments (kind, split, size)."}
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "JSON object overriding `event_dataset` for the test split (default: split 'test')."},
    )
    do_final_eval: bool = field(default=True, metadata={"help": "Evaluate on the event test split after training."})
    num_overlays: int = field(default=4, metadata={"help": "Segmentation overlay PNGs of test windows to write."})
    shuffle_buffer_size: int = field(default=64, metadata={"help": "Shuffle buffer of the streaming datasets."})


# ----------------------------------------------------------------------------------------------------------------
# Recipe parsing
# ----------------------------------------------------------------------------------------------------------------


def is_evdistill_recipe(recipe: dict[str, Any]) -> bool:
    """True for the recipes `run_evdistill` runs (`method: evdistill` or `method: supervised`)."""
    return isinstance(recipe, dict) and recipe.get("method") in EVDISTILL_METHODS


_NULLS = ("null", "none", "None")


def _apply_overrides(recipe: dict[str, Any], cli_overrides: list[str] | dict[str, Any] | None) -> list[str]:
    """Merge a dict of overrides into `recipe`; for CLI strings, turn `--key null` into `recipe[key] = None` (argparse
    cannot give None) and return the remaining strings for the parser."""
    if cli_overrides is None:
        return []
    if isinstance(cli_overrides, dict):
        recipe.update(cli_overrides)
        return []
    if not (isinstance(cli_overrides, (list, tuple)) and all(isinstance(a, str) for a in cli_overrides)):
        raise TypeError(f"cli_overrides must be a list of CLI strings or a dict, got {type(cli_overrides).__name__}")
    argv, i = [], 0
    while i < len(cli_overrides):
        arg = cli_overrides[i]
        if arg.startswith("--") and i + 1 < len(cli_overrides) and cli_overrides[i + 1] in _NULLS:
            recipe[arg[2:]] = None
            i += 2
            continue
        argv.append(arg)
        i += 1
    return argv


def _json_object(text: str | None, name: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name}: not a JSON object ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


def parse_evdistill_arguments(recipe: dict[str, Any], cli_overrides: list[str] | dict[str, Any] | None = None):
    """`(script_args, training_args)` from a recipe mapping overridden by CLI strings (or a dict of overrides).

    `training_args` is an `EvDistillConfig` for `method: evdistill` and a `TrainingArguments` for
    `method: supervised`. Unknown recipe keys are an error naming them.
    """
    from transformers import HfArgumentParser, TrainingArguments

    from ._arguments import set_recipe_defaults
    from .evdistill_config import EvDistillConfig

    if not isinstance(recipe, dict):
        raise TypeError(f"run_evdistill: recipe must be a mapping, got {type(recipe).__name__}")
    recipe = dict(recipe)
    argv = _apply_overrides(recipe, cli_overrides)
    if "--method" in argv:  # the method picks the argument class, so it is read before parsing
        i = argv.index("--method")
        if i + 1 >= len(argv):
            raise ValueError("--method needs a value")
        recipe["method"] = argv[i + 1]
    method = recipe.get("method")
    if method not in EVDISTILL_METHODS:
        raise ValueError(f"recipe method must be one of {EVDISTILL_METHODS}, got {method!r}")
    for key in _DICT_FIELDS:
        if isinstance(recipe.get(key), dict):
            recipe[key] = json.dumps(recipe[key])  # argparse holds strings; parsed back by `_json_object`
    args_class = EvDistillConfig if method == "evdistill" else TrainingArguments
    parser = HfArgumentParser((EvDistillScriptArguments, args_class))
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"recipe has unknown keys {unknown} for method {method!r}")
    set_recipe_defaults(parser, recipe, argv)
    if method == "supervised":
        parser.set_defaults(remove_unused_columns=False)  # the collator below picks the keys itself
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if script_args.task not in TASKS:
        raise ValueError(f"recipe task must be one of {TASKS}, got {script_args.task!r}")
    if script_args.student_config is None and script_args.student_init is None:
        raise ValueError("recipe needs student_config (or student_init)")
    if script_args.num_overlays < 0 or script_args.shuffle_buffer_size < 1:
        raise ValueError("num_overlays must be >= 0 and shuffle_buffer_size >= 1")
    if training_args.max_steps is None or training_args.max_steps <= 0:
        raise ValueError("EvDistill recipes stream their data: set max_steps > 0")
    return script_args, training_args


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------


def resolve_model_config(spec: str, *, num_labels: int | None = None, class_names: list[str] | None = None):
    """A DeepLabV3+ or ResNet config from a preset name, config.json or save_pretrained folder.

    `num_labels` / `class_names` replace the preset's classes (recognition: the classes of the data set).
    """
    from transformers import AutoConfig

    import hf_crossdistill.models.deeplab  # noqa: F401  (registers DeepLabV3PlusConfig)

    config = AutoConfig.from_pretrained(str(resolve_config_path(spec, what="student_config")))
    if class_names is not None:
        config.id2label = dict(enumerate(class_names))
        config.label2id = {name: i for i, name in enumerate(class_names)}
    elif num_labels is not None and num_labels != config.num_labels:
        config.num_labels = num_labels
    return config


def _build_model(config, init: str | None, seed: int):
    from transformers import AutoModel, ResNetForImageClassification

    from .evdistill_trainer import _load_strict

    torch.manual_seed(seed)
    model = ResNetForImageClassification(config) if config.model_type == "resnet" else AutoModel.from_config(config)
    if init is not None:
        _load_strict(model, Path(init))
    return model


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def _recognition_classes(root: Path) -> list[str]:
    info = root / "synthetic_info.json"
    if info.is_file():
        classes = json.loads(info.read_text()).get("classes")
        if classes:
            return list(classes)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders")
    return classes


def _require_root(value: str | None, name: str, why: str) -> Path:
    if value is None:
        raise ValueError(f"{name} is required ({why}); set it in the recipe or with --{name}")
    root = Path(value)
    if not root.is_dir():
        raise FileNotFoundError(f"{name} {root}: no such folder (generate it with scripts/make_synthetic_events.py)")
    return root


def _event_dataset(script_args: EvDistillScriptArguments, overrides: dict[str, Any], classes: list[str] | None):
    from hf_crossdistill.data.events import event_recognition_dataset, event_segmentation_dataset

    root = _require_root(script_args.event_root, "event_root", "the event recordings")
    kwargs = {**_json_object(script_args.event_dataset, "event_dataset"), **overrides}
    if script_args.task == "segmentation":
        return event_segmentation_dataset(root, **kwargs)
    return event_recognition_dataset(root, classes=classes, **kwargs)


def _source_dataset(script_args: EvDistillScriptArguments, overrides: dict[str, Any] | None = None):
    from hf_crossdistill.data.events import labeled_image_dataset

    root = _require_root(script_args.source_root, "source_root", "the labelled source images")
    kwargs = {**_json_object(script_args.source_dataset, "source_dataset"), **(overrides or {})}
    expected = "segmentation" if script_args.task == "segmentation" else "classification"
    if kwargs.setdefault("kind", expected) != expected:
        raise ValueError(f"source_dataset.kind must be {expected!r} for task {script_args.task!r}")
    return labeled_image_dataset(root, **kwargs)


def _shuffled(dataset, seed: int, buffer_size: int):
    return dataset.shuffle(seed=seed, buffer_size=buffer_size)


def _collate_source(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Labelled images → `pixel_values` / `labels`, the arguments DeepLabV3+ and ResNet take their loss from."""
    images = torch.stack([torch.as_tensor(e["image"], dtype=torch.float32) for e in examples])  # (B, 3, H, W)
    labels = torch.stack([torch.as_tensor(e.get("labels", e.get("label")), dtype=torch.long) for e in examples])
    return {"pixel_values": images, "labels": labels}


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _sync_from_main_process(model: torch.nn.Module) -> None:
    """Give every rank rank 0's weights and buffers before scoring: DDP broadcasts buffers at the START of each
    forward, so after the last step every rank holds BatchNorm statistics updated by its own last batch."""
    _, world = _rank_and_world()
    if world > 1:
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def _batches(dataset, batch_size: int, keys: tuple[str, ...]):
    """Yield lists of examples; every rank sees a disjoint part of `dataset` (examples never dropped)."""
    from datasets.distributed import split_dataset_by_node

    rank, world = _rank_and_world()
    if world > 1:
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world)
    batch = []
    for example in dataset:
        if any(k not in example for k in keys):
            raise KeyError(f"evaluation example lacks one of {keys} (has {sorted(example)})")
        batch.append(example)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def evaluate_event_model(
    model: torch.nn.Module,
    dataset,
    *,
    task: str,
    input_key: str = "events",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    num_overlays: int = 0,
    overlay_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score `model` on a split: mIoU / per-class IoU / pixel accuracy (segmentation) or top-1 (recognition).

    One confusion matrix is accumulated over the whole split and summed over all ranks (every rank must call this
    when `torch.distributed` is initialised); pixels labelled 255 do not count.

    Args:
        model: DeepLabV3+ (logits `(B, C, H, W)`) or a classifier (logits `(B, C)`).
        dataset: iterable of examples with `input_key` (`"events"` or `"image"`) and `labels` / `label`.
        task: `"segmentation"` or `"recognition"`.
        num_overlays, overlay_dir: write this many overlay PNGs of the first test examples (rank 0).
    """
    from hf_crossdistill.evaluation import ClassificationMetric, SegmentationMetric

    if task not in TASKS:
        raise ValueError(f"evaluate_event_model: task must be one of {TASKS}, got {task!r}")
    if batch_size < 1:
        raise ValueError(f"evaluate_event_model: batch_size must be >= 1, got {batch_size}")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    label_key = "labels" if task == "segmentation" else "label"
    if task == "segmentation":
        metric = SegmentationMetric(model.config.num_labels, ignore_index=255, class_names=names)
    else:
        metric = ClassificationMetric(model.config.num_labels, class_names=names)
    was_training = model.training
    _sync_from_main_process(model)
    model.eval()
    overlays: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for batch in _batches(dataset, batch_size, (input_key, label_key)):
        x = torch.stack([torch.as_tensor(e[input_key], dtype=torch.float32) for e in batch]).to(device)
        y = torch.stack([torch.as_tensor(e[label_key], dtype=torch.long) for e in batch])
        if x.shape[1] != model.config.num_channels and x.shape[1] == 1:
            x = x.expand(-1, model.config.num_channels, -1, -1)  # (B, 3, H, W) gray APS frame to an image model
        logits = model(pixel_values=x).logits.float().cpu()
        metric.update(logits, y)
        if task == "segmentation" and len(overlays) < num_overlays:
            for i in range(min(len(batch), num_overlays - len(overlays))):
                overlays.append((x[i].cpu(), logits[i].argmax(0), y[i]))
    model.train(was_training)
    results = metric.compute()
    rank, _ = _rank_and_world()
    if overlays and overlay_dir is not None and rank == 0:
        results["overlays"] = _write_overlays(overlays, Path(overlay_dir))
    return _jsonable(results)


def _write_overlays(overlays, folder: Path) -> list[str]:
    """Panels (input | prediction overlay | ground-truth overlay) of test windows, by `hf_crossdistill.visualization`;
    event inputs are drawn as event frames (positive red, negative blue), APS / RGB frames as they are."""
    from hf_crossdistill.visualization import render_event_frame, segmentation_panel

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (inputs, prediction, labels) in enumerate(overlays):
        picture = inputs.numpy() if inputs.shape[0] in (1, 3) else render_event_frame(inputs.numpy())
        path = folder / f"overlay_{i:03d}.png"
        segmentation_panel(picture, prediction.numpy(), labels.numpy(), save_path=path)
        paths.append(str(path))
    return paths


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if isinstance(value, list):
            value = [None if isinstance(v, float) and not math.isfinite(v) else v for v in value]
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def _train_supervised(script_args, training_args, model):
    from transformers import Trainer

    dataset = _shuffled(_source_dataset(script_args), training_args.seed, script_args.shuffle_buffer_size)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=_collate_source)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    return trainer, trainer.model


def _train_evdistill(script_args, training_args, model, classes):
    from transformers import default_data_collator

    from .evdistill_trainer import EvDistillPairs, EvDistillTrainer

    event_overrides = {"with_images": True} if script_args.task == "segmentation" else {}
    events = _shuffled(
        _event_dataset(script_args, event_overrides, classes), training_args.seed, script_args.shuffle_buffer_size
    )
    source = None
    if training_args.mode == "evdistill":
        source = _source_dataset(script_args, {"classes": classes} if classes is not None else None)
        source = _shuffled(source, training_args.seed + 1, script_args.shuffle_buffer_size)
    pairs = EvDistillPairs(events, source, use_aps=script_args.task == "segmentation")
    trainer = EvDistillTrainer(model, training_args, train_dataset=pairs, data_collator=default_data_collator)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    return trainer, trainer.wrapper.event_student


def run_evdistill(recipe: dict[str, Any], cli_overrides: list[str] | dict[str, Any] | None = None) -> dict[str, Any]:
    """Train what an EvDistill recipe describes, save it, evaluate it and return the metrics.

    Args:
        recipe: the recipe mapping (as loaded from `hub_configs/recipes/evdistill_*.yaml`).
        cli_overrides: CLI strings (`["--max_steps", "10"]`) or a mapping of field → value, applied on top.

    Returns:
        `method`, `task`, `mode`, `output_dir`, `world_size`, `num_parameters` (of the saved network),
        `train_loss`, `train_runtime`, and `eval` (mIoU / per-class IoU / pixel accuracy, or top-1 `accuracy`, on
        the event test split; for a segmentation teacher also `eval_aps`: T on the APS frames of that split, the
        quality of the pseudo labels the baselines train on). The same dict is written to
        `output_dir/evdistill_metrics.json` by the main process.
    """
    script_args, training_args = parse_evdistill_arguments(recipe, cli_overrides)
    classes = None
    if script_args.task == "recognition":
        root = script_args.event_root if script_args.method == "evdistill" else script_args.source_root
        classes = _recognition_classes(_require_root(root, "event_root/source_root", "the class list"))
    config = resolve_model_config(script_args.student_config or script_args.student_init, class_names=classes)
    model = _build_model(config, script_args.student_init, training_args.seed)
    if script_args.method == "supervised":
        trainer, trained = _train_supervised(script_args, training_args, model)
    else:
        trainer, trained = _train_evdistill(script_args, training_args, model, classes)

    # The deliverable: the trained network alone (no BMR, no S_aps, no h), loadable with AutoModel / ResNet.
    if trainer.is_world_process_zero():
        trained.save_pretrained(training_args.output_dir)
    trainer.accelerator.wait_for_everyone()

    history = [e for e in trainer.state.log_history if "train_loss" in e]
    metrics: dict[str, Any] = {
        "method": script_args.method,
        "task": script_args.task,
        "mode": getattr(training_args, "mode", None),
        "use_bmr": getattr(training_args, "use_bmr", None),
        "output_dir": training_args.output_dir,
        "world_size": trainer.accelerator.num_processes,
        "seed": training_args.seed,
        "max_steps": training_args.max_steps,
        "num_parameters": sum(p.numel() for p in trained.parameters()),
        "train_loss": history[-1]["train_loss"] if history else None,
        "train_runtime": history[-1].get("train_runtime") if history else None,
    }
    if script_args.do_final_eval:
        metrics.update(_final_evaluation(script_args, training_args, trained, classes, trainer.args.device))
    if trainer.is_world_process_zero():
        Path(training_args.output_dir, METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def _final_evaluation(script_args, training_args, model, classes, device) -> dict[str, Any]:
    batch = training_args.per_device_eval_batch_size
    overlay_dir = Path(training_args.output_dir) / "overlays"
    out: dict[str, Any] = {}
    if script_args.method == "supervised":
        split = {"split": "val"} if script_args.task == "segmentation" else {"split": "test", "classes": classes}
        source_root = Path(script_args.source_root)
        if script_args.task == "segmentation" and not (source_root / "val").is_dir():
            split = None
        if split is not None:
            out["eval_source"] = evaluate_event_model(
                model, _source_dataset(script_args, split), task=script_args.task, input_key="image",
                batch_size=batch, device=device,
            )  # fmt: skip
        if script_args.task == "segmentation" and script_args.event_root is not None:
            test = _event_dataset(script_args, _eval_overrides(script_args), None)
            out["eval_aps"] = evaluate_event_model(
                model, test, task="segmentation", input_key="image", batch_size=batch, device=device,
                num_overlays=script_args.num_overlays, overlay_dir=overlay_dir,
            )  # fmt: skip
        return out
    test = _event_dataset(script_args, _eval_overrides(script_args), classes)
    out["eval"] = evaluate_event_model(
        model, test, task=script_args.task, input_key="events", batch_size=batch, device=device,
        num_overlays=script_args.num_overlays, overlay_dir=overlay_dir,
    )  # fmt: skip
    return out


def _eval_overrides(script_args: EvDistillScriptArguments) -> dict[str, Any]:
    overrides = {"split": "test"}
    if script_args.task == "segmentation":
        overrides["with_images"] = True
    overrides.update(_json_object(script_args.eval_dataset, "eval_dataset"))
    return overrides


def main(argv: list[str] | None = None) -> int:
    """`python -m hf_crossdistill.distill.evdistill_runner --config <recipe> [overrides]`."""
    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        raise SystemExit("usage: evdistill_runner --config <recipe.yaml> [--field value ...]")
    i = argv.index("--config")
    path = Path(argv[i + 1])
    if not path.is_file():
        raise SystemExit(f"--config {path}: no such recipe file")
    recipe = yaml.safe_load(path.read_text())
    metrics = run_evdistill(recipe, argv[:i] + argv[i + 2 :])
    if _rank_and_world()[0] == 0:
        print(json.dumps({k: v for k, v in metrics.items() if k != "eval"}, indent=None))
        print(json.dumps(metrics.get("eval", metrics.get("eval_aps", {})), indent=None))
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

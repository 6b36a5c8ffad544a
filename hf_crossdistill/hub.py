"""Model cards and Hub helpers: a distilled student becomes a `save_pretrained` folder with a README.md whose YAML
front matter carries a `model-index` (so the Hub renders the evaluation results), then one commit to a repo.

```python
from hf_crossdistill.hub import push_folder_to_hub, save_for_hub

save_for_hub(student, "outputs/hub/student", card_kwargs={
    "method": "evdistill", "teacher": "outputs/teacher", "datasets": ["ddd17"],
    "metrics": {"mean_iou": 0.5802}, "recipe": "hub_configs/recipes/evdistill_ddd17.yaml",
})
push_folder_to_hub("outputs/hub/student", "me/evdistill-ddd17-student", private=True)
```

Loading back needs the package imported (it registers the model classes with the Auto classes):
`import hf_crossdistill; AutoModel.from_pretrained("me/evdistill-ddd17-student")`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PAPERS", "load_recipe", "make_model_card", "push_folder_to_hub", "save_for_hub"]

# What the seed texts state about each paper. No arXiv ids: the seeds do not give them, so none are invented here.
PAPERS: dict[str, dict[str, str]] = {
    "evdistill": {
        "title": "EvDistill: asynchronous events to end-task learning via bidirectional reconstruction-guided "
        "cross-modal knowledge distillation",
        "venue": "CVPR 2021",
        "code": "https://github.com/addisonwang2013/evdistill",
        "summary": "an event-camera student learns from an image teacher on unpaired, unlabeled events through "
        "bidirectional modality reconstruction (BMR), dynamic semantic consistency, distribution adaptation, "
        "affinity-graph and mutual distillation",
    },
    "unidistill": {
        "title": "UniDistill: A Universal Cross-Modality Knowledge Distillation Framework for 3D Object Detection in "
        "Bird's-Eye View",
        "venue": "CVPR 2023",
        "code": "https://github.com/megvii-research/CVPR2023-UniDistill",
        "summary": "any BEV detector (LiDAR, camera or fusion) teaches any other through feature, relation and "
        "response distillation on the foreground of the BEV maps",
    },
}

# model_type -> (model-index task type, task name, pipeline tag)
_TASKS: dict[str, tuple[str, str, str]] = {
    "deeplabv3plus": ("image-segmentation", "Semantic Segmentation", "image-segmentation"),
    "bev_detector": ("object-detection", "3D Object Detection", "object-detection"),
    "resnet": ("image-classification", "Recognition", "image-classification"),
}

# Display names of the metrics this package reports (others keep their key).
_METRIC_NAMES: dict[str, str] = {
    "mean_iou": "mIoU",
    "pixel_accuracy": "Pixel accuracy",
    "mean_accuracy": "Mean class accuracy",
    "accuracy": "Top-1 accuracy",
    "top5_accuracy": "Top-5 accuracy",
    "map": "mAP",
    "nds": "NDS",
}


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------


def _config_of(model_or_config: Any):
    """The `PreTrainedConfig` of a model, a config, a config dict or a folder holding `config.json`."""
    from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel

    if isinstance(model_or_config, PreTrainedModel):
        return model_or_config.config
    if isinstance(model_or_config, PreTrainedConfig):
        return model_or_config
    if isinstance(model_or_config, Mapping):
        if "model_type" not in model_or_config:
            raise ValueError("make_model_card: a config dict needs a 'model_type' key")
        kwargs = {k: v for k, v in model_or_config.items() if k != "model_type"}
        return AutoConfig.for_model(model_or_config["model_type"], **kwargs)
    if isinstance(model_or_config, (str, os.PathLike)):
        folder = Path(model_or_config)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"make_model_card: {folder} has no config.json (expected a save_pretrained folder)"
            )
        _register_model_type(folder / "config.json")
        return AutoConfig.from_pretrained(folder)
    raise TypeError(
        "make_model_card: expected a PreTrainedModel, a PreTrainedConfig, a config dict or a save_pretrained folder, "
        f"got {type(model_or_config).__name__}"
    )


# model_type -> the subpackage whose import registers it with the Auto classes
_REGISTERING_MODULES = {
    "deeplabv3plus": "hf_crossdistill.models.deeplab",
    "bev_detector": "hf_crossdistill.models.bev_detector",
    "bmr_generator": "hf_crossdistill.models.translation",
    "patchgan_discriminator": "hf_crossdistill.models.translation",
    "modality_classifier": "hf_crossdistill.models.translation",
}


def _register_model_type(config_file: Path) -> None:
    import importlib

    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config_file} is not a JSON config object: {err}") from err
    if model_type in _REGISTERING_MODULES:
        importlib.import_module(_REGISTERING_MODULES[model_type])


def load_recipe(recipe: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A training recipe as a dict: a mapping, or a YAML / JSON file path."""
    if isinstance(recipe, Mapping):
        return dict(recipe)
    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"recipe file {path} is not valid JSON: {err}") from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"recipe file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"recipe file {path} must hold a mapping, got {type(data).__name__}")
    return data


def _check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping name -> number, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric names must be non-empty strings, got {key!r}")
        if isinstance(value, bool) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
            raise ValueError(f"metric {key!r} must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {key!r} is {number}: the Hub's model-index only takes finite numbers")
        out[key] = number
    return out


def _str_list(value: str | Sequence[str] | None, name: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"{name} must be a string or a list of non-empty strings, got {value!r}")
    return items


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------


def _architecture_lines(config, model) -> list[str]:
    lines = [f"- Architecture: `{config.model_type}`" + (f" (`{type(model).__name__}`)" if model is not None else "")]
    if model is not None:
        lines.append(f"- Parameters: {sum(p.numel() for p in model.parameters()):,}")
    if getattr(config, "num_channels", None) is not None:
        lines.append(f"- Input channels: {config.num_channels}")
    if getattr(config, "modalities", None):
        lines.append(f"- Modalities: {', '.join(map(str, config.modalities))}")
    id2label = getattr(config, "id2label", None) or {}
    if id2label:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
        lines.append(f"- Classes ({len(names)}): {', '.join(names)}")
    return lines


def _usage_lines(config, load_from: str) -> list[str]:
    """Python lines loading the checkpoint with the class that has its head (`config.architectures[0]`).

    `AutoModel` would build the headless base model for task models such as `BEVDetectorForObjectDetection` and
    drop the head weights, so the card names the saved architecture itself.
    """
    import transformers

    import hf_crossdistill

    architecture = (getattr(config, "architectures", None) or [None])[0]
    if architecture and architecture in hf_crossdistill.__all__:
        imports = [f"from hf_crossdistill import {architecture}"]
    elif architecture and hasattr(transformers, architecture):
        imports = [
            "import hf_crossdistill  # registers the model classes with the Auto classes",
            f"from transformers import {architecture}",
        ]
    else:
        architecture = "AutoModel"
        imports = [
            "import hf_crossdistill  # registers the model classes with the Auto classes",
            "from transformers import AutoModel",
        ]
    return [*imports, "", f'model = {architecture}.from_pretrained("{load_from}").eval()']


def make_model_card(
    model_or_config: Any,
    *,
    model_name: str | None = None,
    repo_id: str | None = None,
    method: str | None = None,
    teacher: str | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    metrics: Mapping[str, float] | None = None,
    eval_dataset: str | None = None,
    eval_dataset_type: str | None = None,
    eval_split: str = "validation",
    task_type: str | None = None,
    license: str = "apache-2.0",
    tags: str | Sequence[str] | None = None,
    recipe: str | os.PathLike | Mapping[str, Any] | None = None,
    description: str | None = None,
    images: Mapping[str, str] | None = None,
):
    """A `huggingface_hub.ModelCard` for a model of this package, with `model-index` results when `metrics` are given.

    Args:
        model_or_config: the model (its parameter count is reported), its config, a config dict, or a
            `save_pretrained` folder.
        model_name: the name in the title and `model-index` (default: the last part of `repo_id`, else the
            model type).
        repo_id: where the card will live; used in the usage snippet.
        method: "evdistill" or "unidistill" — names the paper and its code; None for a model trained alone.
        teacher: the teacher checkpoint (Hub id or description); written in the text, not as `base_model` (the
            student does not inherit the teacher's weights).
        base_model: Hub id(s) the weights were initialised from, if any.
        datasets: dataset names / Hub ids for the `datasets:` metadata.
        metrics: name -> value (e.g. `{"mean_iou": 0.58, "pixel_accuracy": 0.89}`) measured on `eval_dataset`
            (default: the first of `datasets`) / `eval_split`.
        eval_dataset_type: the dataset id in `model-index` (default: `eval_dataset`).
        task_type: the `model-index` task (default: from the model type, e.g. "image-segmentation").
        license: SPDX-style Hub license id.
        tags: extra tags (the method and "knowledge-distillation" are added when `method` is given).
        recipe: the training recipe (mapping or YAML / JSON path), embedded verbatim in the card.
        description: a paragraph placed under the title.
        images: caption -> path relative to the repo root (e.g. "images/overlay.png"), shown in the card.

    Returns:
        the `ModelCard`; `card.save(folder / "README.md")` writes it.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData
    from transformers import PreTrainedModel

    config = _config_of(model_or_config)
    model = model_or_config if isinstance(model_or_config, PreTrainedModel) else None
    if method is not None and method not in PAPERS:
        raise ValueError(f"method must be one of {sorted(PAPERS)} or None, got {method!r}")
    if repo_id is not None and (not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/")):
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
    values = _check_metrics(metrics)
    dataset_list = _str_list(datasets, "datasets")
    base_models = _str_list(base_model, "base_model")
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else f"{config.model_type}")
    default_task, task_name, pipeline_tag = _TASKS.get(config.model_type, (None, None, None))
    task_type = task_type or default_task
    eval_dataset = eval_dataset or (dataset_list[0] if dataset_list else None)
    if values and (task_type is None or eval_dataset is None):
        raise ValueError(
            "make_model_card: metrics need a task_type (no default for model type "
            f"{config.model_type!r}) and an eval_dataset (or datasets)"
        )

    eval_results = [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=eval_dataset_type or eval_dataset,
            dataset_name=eval_dataset,
            dataset_split=eval_split,
            metric_type=key.lower(),
            metric_name=_METRIC_NAMES.get(key.lower(), key),
            metric_value=value,
        )
        for key, value in values.items()
    ]
    tag_list = ["hf_crossdistill", config.model_type, *_str_list(tags, "tags")]
    if method is not None:
        tag_list += [method, "knowledge-distillation"]
    card_data = ModelCardData(
        model_name=model_name,
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=tag_list,
        datasets=dataset_list or None,
        base_model=(base_models[0] if len(base_models) == 1 else base_models) or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        eval_results=eval_results or None,
    )

    sections = [f"# {model_name}", ""]
    if description:
        sections += [description.strip(), ""]
    sections += ["## Model", "", *_architecture_lines(config, model), ""]
    if method is not None:
        paper = PAPERS[method]
        sections += [
            "## Method",
            "",
            f"Trained with {paper['title']} ({paper['venue']}): {paper['summary']}. "
            f"Authors' code: {paper['code']}. This checkpoint comes from the `hf_crossdistill` re-implementation.",
            "",
        ]
        if teacher:
            sections += [f"Teacher: `{teacher}` (frozen during distillation; not needed at inference).", ""]
    load_from = repo_id or "<this folder or repo>"
    sections += [
        "## Usage",
        "",
        "```python",
        *_usage_lines(config, load_from),
        "```",
        "",
    ]
    if values:
        sections += [
            "## Evaluation",
            "",
            f"On `{eval_dataset}` ({eval_split} split):",
            "",
            "| Metric | Value |",
            "| --- | --- |",
            *[f"| {_METRIC_NAMES.get(k.lower(), k)} | {v:.4f} |" for k, v in values.items()],
            "",
        ]
    for caption, path in (images or {}).items():
        sections += [f"![{caption}]({path})", ""]
    if recipe is not None:
        import yaml

        recipe_text = yaml.safe_dump(load_recipe(recipe), sort_keys=False).strip()
        sections += ["## Training recipe", "", "```yaml", recipe_text, "```", ""]
    sections += ["## License", "", f"`{license}`", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(sections))


# ---------------------------------------------------------------------------------------------------------------
# Folder and push
# ---------------------------------------------------------------------------------------------------------------


def save_for_hub(
    model: Any,
    folder: str | os.PathLike,
    *,
    card_kwargs: Mapping[str, Any] | None = None,
    images: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Hub-ready folder: `save_pretrained` (config.json + model.safetensors) and a README.md model card.

    Args:
        model: a `PreTrainedModel` (a distillation wrapper must be unwrapped to the student first).
        folder: the output folder (created).
        card_kwargs: keyword arguments of `make_model_card`.
        images: file stem -> `(H, W, 3)` uint8 array (e.g. from `visualization.overlay_segmentation`); written
            to `images/<stem>.png` and shown in the card.

    Returns:
        the folder as a `Path`.
    """
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"save_for_hub expects a transformers PreTrainedModel (the student), got {type(model).__name__}"
        )
    card_kwargs = dict(card_kwargs or {})
    if "images" in card_kwargs:
        raise ValueError("save_for_hub: pass images through its own `images` argument, not card_kwargs")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    image_paths: dict[str, str] = {}
    if images:
        from .visualization import save_png

        for stem, image in images.items():
            if not isinstance(stem, str) or not stem or "/" in stem or stem.startswith("."):
                raise ValueError(f"save_for_hub: image names must be plain file stems, got {stem!r}")
            save_png(image, folder / "images" / f"{stem}.png")
            image_paths[stem] = f"images/{stem}.png"
    card = make_model_card(model, images=image_paths or None, **card_kwargs)
    card.save(folder / "README.md")
    return folder


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload hf_crossdistill model",
    revision: str | None = None,
    endpoint: str | None = None,
    ignore_patterns: Sequence[str] | None = None,
):
    """Create `repo_id` (if missing) and upload `folder` in one commit with `HfApi.create_repo` + `upload_folder`.

    Args:
        folder: a `save_for_hub` folder (must hold config.json; README.md recommended).
        repo_id: "namespace/name".
        token: a write token (default: the logged-in one / `HF_TOKEN`).
        private: create the repo private (ignored when it already exists).
        endpoint: Hub URL (default: `HF_ENDPOINT` or huggingface.co).
        ignore_patterns: glob patterns not to upload (checkpoint sub-folders, caches...).

    Returns:
        the `huggingface_hub.CommitInfo` of the commit (`.oid`, `.commit_url`).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"push_folder_to_hub: folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"push_folder_to_hub: {folder} has no config.json (write it with save_for_hub)")
    if not isinstance(repo_id, str) or "/" not in repo_id:
        raise ValueError(f"push_folder_to_hub: repo_id must be 'namespace/name', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"push_folder_to_hub: invalid repo_id {repo_id!r}: {err}") from err
    if not commit_message:
        raise ValueError("push_folder_to_hub: commit_message must not be empty")
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    ignore = ["**/.cache/**", ".cache/**", "**/__pycache__/**", *(ignore_patterns or [])]
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        revision=revision,
        ignore_patterns=ignore,
        repo_type="model",
    )

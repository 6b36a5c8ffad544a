"""Model presets and training recipes shipped with the package, and the one place that resolves a model config.

The files live here as package data, so an installed wheel resolves them by name; a checkout also shows them as
`hub_configs/models/` and `hub_configs/recipes/` (links to these folders).

- `models/<name>.json`: exactly what `save_pretrained` writes as `config.json`, one per preset.
- `recipes/<name>.yaml`: training recipes for `scripts/distill.py` (`recipes/study/`, `recipes/quickstart/`: the
  UniDistill study's and the main job's arms).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "MODELS_DIR",
    "RECIPES_DIR",
    "SAVE_METADATA_KEYS",
    "preset_names",
    "preset_path",
    "recipe_path",
    "resolve_config",
    "resolve_config_path",
]

MODELS_DIR = Path(__file__).resolve().parent / "models"
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
# What `save_pretrained` records about a saved model rather than its architecture.
SAVE_METADATA_KEYS = frozenset({"architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path"})


def preset_names() -> list[str]:
    """Names of the shipped model presets."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def preset_path(name: str) -> Path:
    """The JSON file of a shipped preset; `FileNotFoundError` listing the presets when there is none."""
    path = MODELS_DIR / f"{name}.json"
    if not isinstance(name, str) or not name or "/" in name or not path.is_file():
        raise FileNotFoundError(f"no model preset {name!r} (presets: {preset_names()})")
    return path


def recipe_path(name: str) -> Path:
    """A shipped recipe by name (`"bev_lidar_supervised_small"`, `"study/camera_alone"`; `.yaml` optional)."""
    stem = name[: -len(".yaml")] if isinstance(name, str) and name.endswith(".yaml") else name
    path = RECIPES_DIR / f"{stem}.yaml"
    if not isinstance(name, str) or not name or ".." in Path(stem).parts or not path.is_file():
        known = sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.rglob("*.yaml"))
        raise FileNotFoundError(f"no recipe {name!r} (recipes: {known})")
    return path


def resolve_config_path(spec: str | os.PathLike, *, what: str = "config") -> Path:
    """The `config.json` that `spec` names: a JSON file, a `save_pretrained` folder, or a preset name."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{what} {str(spec)!r}: folder without config.json (not a save_pretrained folder)")
        return path / "config.json"
    if path.is_file():
        return path
    if not path.suffix and len(path.parts) == 1:
        try:
            return preset_path(str(spec))
        except FileNotFoundError:
            pass
    raise FileNotFoundError(f"{what} {str(spec)!r}: no such file, folder or preset (presets: {preset_names()})")


def resolve_config(spec: str | os.PathLike, *, what: str = "config", **overrides):
    """A model config (through `AutoConfig`) from a preset name, a JSON file or a `save_pretrained` folder.

    What `save_pretrained` records about a saved model rather than its architecture (`SAVE_METADATA_KEYS`) is
    dropped, so a saved folder resolves to the same config as its preset. `overrides` replace config fields (e.g.
    `num_labels`). Every model type of the package is registered first.
    """
    import json

    from transformers import AutoConfig

    import hf_crossdistill  # noqa: F401 - registers the package's configs with AutoConfig

    path = resolve_config_path(spec, what=what)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{what} {str(spec)!r}: {path} is not a readable JSON config ({err})") from err
    if not isinstance(values, dict) or not isinstance(values.get("model_type"), str):
        raise ValueError(f"{what} {str(spec)!r}: {path} has no model_type (not a model config)")
    model_type = values.pop("model_type")
    values = {k: v for k, v in values.items() if k not in SAVE_METADATA_KEYS}
    try:
        return AutoConfig.for_model(model_type, **{**values, **overrides})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{what} {str(spec)!r}: {path} is not a model config this package knows ({err})") from err

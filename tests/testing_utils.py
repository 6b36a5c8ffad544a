"""Shared test helpers: tiny configs, save/load round trips, gradient coverage.

Real classes at tiny size, no mocks (the diffusers testing style).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
HUB_CONFIGS = REPO_ROOT / "hub_configs"


def load_script(path: str | Path, name: str) -> ModuleType:
    """Import a script (or Space app) by path as module `name`, registered in `sys.modules` first so that the
    dataclasses it defines can resolve their module while it executes."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_preset(name: str) -> dict[str, Any]:
    """The config dict of a shipped preset (`hf_crossdistill.presets`, also `hub_configs/models/<name>.json`)."""
    from hf_crossdistill.presets import preset_path

    return json.loads(preset_path(name).read_text())


def tiny_config(config_cls: type, preset: str | None = None, **overrides: Any):
    """A config of `config_cls` built from a `*_tiny` preset (when given) with keyword overrides."""
    kwargs: dict[str, Any] = {}
    if preset is not None:
        from hf_crossdistill.presets import SAVE_METADATA_KEYS

        kwargs = {k: v for k, v in load_preset(preset).items() if k != "model_type" and k not in SAVE_METADATA_KEYS}
    kwargs.update(overrides)
    return config_cls(**kwargs)


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix or "."] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if value is not None:
                out.update(_flatten_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(_flatten_tensors(value, f"{prefix}[{i}]"))
    return out


def assert_outputs_close(a: Any, b: Any, *, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Every tensor in two (nested) model outputs has the same key, shape and value."""
    fa, fb = _flatten_tensors(a), _flatten_tensors(b)
    assert fa.keys() == fb.keys(), f"output keys differ: {sorted(fa.keys() ^ fb.keys())}"
    for key in fa:
        assert fa[key].shape == fb[key].shape, f"{key}: shape {fa[key].shape} != {fb[key].shape}"
        torch.testing.assert_close(fa[key], fb[key], atol=atol, rtol=rtol, msg=lambda m, k=key: f"{k}: {m}")


def check_save_load_round_trip(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    *,
    load: Callable[[str], torch.nn.Module] | None = None,
    atol: float = 1e-5,
) -> torch.nn.Module:
    """save_pretrained → from_pretrained (AutoModel unless `load` is given) gives identical eval outputs.

    Returns the reloaded model.
    """
    from transformers import AutoModel

    model.eval()
    with torch.no_grad():
        expected = model(**inputs)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        assert (Path(tmp) / "model.safetensors").exists(), "save_pretrained did not write model.safetensors"
        reloaded = load(tmp) if load is not None else AutoModel.from_pretrained(tmp)
    assert type(reloaded) is type(model), f"reloaded {type(reloaded).__name__}, saved {type(model).__name__}"
    reloaded.eval()
    with torch.no_grad():
        actual = reloaded(**inputs)
    assert_outputs_close(dict(expected), dict(actual), atol=atol, rtol=atol)
    return reloaded


def check_gradients_reach_all_parameters(
    model: torch.nn.Module,
    loss: torch.Tensor,
    *,
    allow_missing: Iterable[str] = (),
) -> None:
    """Backward `loss` and assert every trainable parameter got a finite, non-zero gradient.

    `allow_missing` lists name substrings that may legitimately get no gradient (document why at the call).
    """
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss must be a finite scalar, got {loss}"
    model.zero_grad(set_to_none=True)
    loss.backward()
    allowed = tuple(allow_missing)
    missing, non_finite = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or any(a in name for a in allowed):
            continue
        if param.grad is None or not bool(param.grad.abs().sum() > 0):
            missing.append(name)
        elif not bool(torch.isfinite(param.grad).all()):
            non_finite.append(name)
    assert not missing, f"no gradient reached {len(missing)} parameters: {missing[:10]}"
    assert not non_finite, f"non-finite gradients in: {non_finite[:10]}"

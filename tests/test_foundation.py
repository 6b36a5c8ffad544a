"""The package skeleton: version, layout, hub_configs files parse, test helpers work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from testing_utils import assert_outputs_close, check_gradients_reach_all_parameters

import hf_crossdistill

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", hf_crossdistill.__version__)


@pytest.mark.parametrize("folder", ["models", "recipes"])
def test_hub_configs_folder_has_readme(folder):
    assert (REPO_ROOT / "hub_configs" / folder / "README.md").is_file()


def _hub_config_files():
    root = REPO_ROOT / "hub_configs"
    return sorted(p for p in root.rglob("*") if p.suffix in (".json", ".yaml", ".yml"))


@pytest.mark.parametrize("path", _hub_config_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_hub_config_file_parses(path):
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    assert isinstance(data, dict) and data, f"{path} must hold a non-empty mapping"
    if path.parent.name == "models":
        assert "model_type" in data, f"{path}: a config.json preset needs model_type"


def test_gradient_checker_catches_a_dead_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    dead = torch.nn.Linear(3, 3)
    model.add_module("dead", dead)
    loss = model[1](model[0](torch.randn(4, 3))).sum()
    with pytest.raises(AssertionError, match="dead"):
        check_gradients_reach_all_parameters(model, loss)


def test_output_comparison_catches_a_difference():
    a = {"x": torch.zeros(2), "y": torch.ones(3)}
    assert_outputs_close(a, {"x": torch.zeros(2), "y": torch.ones(3)})
    with pytest.raises(AssertionError):
        assert_outputs_close(a, {"x": torch.zeros(2), "y": torch.ones(3) * 1.1})


def test_test_environment_is_hermetic(tmp_path):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert not os.environ["HF_HOME"].startswith(str(Path.home() / ".cache"))


def test_every_public_name_resolves():
    missing = [name for name in hf_crossdistill.__all__ if not hasattr(hf_crossdistill, name)]
    assert not missing, f"hf_crossdistill.__all__ names that do not resolve: {missing}"
    with pytest.raises(AttributeError, match="no attribute"):
        hf_crossdistill.not_a_public_name  # noqa: B018


@pytest.mark.parametrize(
    "model_type", ["bev_detector", "deeplabv3plus", "bmr_generator", "patchgan_discriminator", "modality_classifier"]
)
def test_import_registers_auto_classes(model_type):
    from transformers import CONFIG_MAPPING

    assert model_type in CONFIG_MAPPING, f"{model_type} is not registered with AutoConfig"

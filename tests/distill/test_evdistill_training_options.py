"""EvDistill training options on the wrapper (tiny presets, CPU): BMR warm-up (`bmr_warmup_steps`),
`detach_translated_source` and `dsc_trains_generator`."""

from __future__ import annotations

import pytest
import torch
from testing_utils import HUB_CONFIGS
from transformers import AutoConfig, AutoModel

from hf_crossdistill.distill.evdistill_config import EvDistillConfig
from hf_crossdistill.distill.evdistill_trainer import build_evdistill_model

MODELS = HUB_CONFIGS / "models"
TRANSLATION = {"bmr_pixel", "bmr_adversarial", "bmr_discriminator", "bmr_cycle"}


def _deeplab(name: str):
    return AutoModel.from_config(AutoConfig.from_pretrained(MODELS / f"deeplabv3plus_tiny_{name}.json"))


def _args(tmp_path, **overrides) -> EvDistillConfig:
    kwargs = {"output_dir": str(tmp_path), "max_steps": 2, "use_cpu": True, "report_to": [],
              "generator_base_channels": 4, "generator_residual_blocks": 1, "discriminator_base_channels": 4,
              "discriminator_layers": 2, "modality_hidden_channels": 8,
              "aps_student_config": str(MODELS / "deeplabv3plus_tiny_aps.json")}  # fmt: skip
    return EvDistillConfig(**{**kwargs, **overrides})


def _batch(size=(32, 48)):
    g = torch.Generator().manual_seed(0)
    return {
        "event_pixel_values": torch.rand(2, 2, *size, generator=g),
        "source_pixel_values": torch.rand(2, 3, *size, generator=g),
        "source_labels": torch.randint(0, 6, (2, *size), generator=g),
        "aps_pixel_values": torch.rand(2, 1, *size, generator=g),
    }


def _wrapper(args):
    torch.manual_seed(0)
    teacher = _deeplab("image").eval().requires_grad_(False)
    return build_evdistill_model(_deeplab("events"), teacher, args, aps_student=_deeplab("aps")).train()


def test_warmup_trains_only_the_translation_then_everything(tmp_path):
    wrapper = _wrapper(_args(tmp_path, bmr_warmup_steps=3))
    wrapper.global_step = 2
    out = wrapper(**_batch())
    assert set(out.terms) == TRANSLATION  # only the translation terms count (and are logged)
    # The waiting networks stay in the graph (DDP) with zero gradients; the generators get real ones.
    out.loss.backward()
    assert all(p.grad is not None for p in wrapper.parameters())
    assert all(float(p.grad.abs().sum()) == 0.0 for p in wrapper.event_student.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in wrapper.g_s2t.parameters())
    wrapper.zero_grad()
    wrapper.global_step = 3
    out = wrapper(**_batch())
    assert set(out.terms) > TRANSLATION and {"ce_event", "bmr_dsc", "md"} <= set(out.terms)
    out.loss.backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in wrapper.event_student.parameters())
    # At evaluation time there is no warm-up: the loss is the full objective.
    wrapper.eval()
    wrapper.global_step = 0
    assert {"ce_event", "md"} <= set(wrapper(**_batch()).terms)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_translated_source_stops_the_student_ce_at_the_generator(tmp_path, detach):
    off = ("lambda_bmr_pixel", "lambda_bmr_cycle", "lambda_bmr_dsc", "lambda_da", "lambda_ag", "lambda_md",
           "lambda_ce_aps", "lambda_bmr_adversarial", "lambda_bmr_discriminator")  # fmt: skip
    only_ce = dict.fromkeys(off, 0.0)
    wrapper = _wrapper(_args(tmp_path, aps_student_config=None, detach_translated_source=detach, **only_ce))
    out = wrapper(**_batch())
    assert set(out.terms) == {"ce_event"}
    out.loss.backward()
    generator_moved = any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in wrapper.g_s2t.parameters())
    assert generator_moved is not detach
    assert any(float(p.grad.abs().sum()) > 0 for p in wrapper.event_student.parameters())


@pytest.mark.parametrize("through", [True, False])
def test_dsc_trains_the_generator_only_when_asked(tmp_path, through):
    only_dsc = dict.fromkeys(
        ("lambda_bmr_pixel", "lambda_bmr_cycle", "lambda_ce_event", "lambda_da", "lambda_ag", "lambda_md",
         "lambda_ce_aps", "lambda_bmr_adversarial", "lambda_bmr_discriminator"), 0.0,
    )  # fmt: skip
    wrapper = _wrapper(_args(tmp_path, aps_student_config=None, dsc_trains_generator=through, **only_dsc))
    out = wrapper(**_batch())
    assert set(out.terms) == {"bmr_dsc"}
    out.loss.backward()
    generator_moved = any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in wrapper.g_t2s.parameters())
    assert generator_moved is through
    assert any(float(p.grad.abs().sum()) > 0 for p in wrapper.event_student.parameters())


def test_warmup_validation(tmp_path):
    with pytest.raises(ValueError, match="bmr_warmup_steps"):
        _args(tmp_path, bmr_warmup_steps=-1)

"""EvDistill training options on the wrapper (tiny presets, CPU): BMR warm-up (`bmr_warmup_steps`),
`detach_translated_source`, `dsc_trains_generator`, the edge prior of G_S→T and the event augmentation."""

from __future__ import annotations

import pytest
import torch
from testing_utils import HUB_CONFIGS
from transformers import AutoConfig, AutoModel

from hf_crossdistill.data.events import augment_event_frames
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


def test_augment_event_frames():
    frames = torch.rand(4, 2, 12, 16) + 0.1  # no empty pixel
    assert augment_event_frames(frames) is frames  # both off: identity
    assert augment_event_frames(frames, drop_prob=0.0, max_shift=0) is frames
    g = torch.Generator().manual_seed(0)
    dropped = augment_event_frames(frames, drop_prob=0.5, generator=g)
    assert dropped.shape == frames.shape
    empty = dropped == 0
    assert torch.equal(empty[:, 0], empty[:, 1])  # a pixel loses the events of both polarities
    assert 0.35 < float(empty.float().mean()) < 0.65
    assert torch.equal(dropped[~empty], frames[~empty])  # kept pixels are not rescaled
    # Translation: an impulse moves by at most max_shift per axis, nothing wraps around, the mass is kept.
    impulse = torch.zeros(64, 1, 11, 11)
    impulse[:, 0, 5, 5] = 1.0
    moved = augment_event_frames(impulse, max_shift=2, generator=torch.Generator().manual_seed(1))
    assert moved.shape == impulse.shape and torch.equal(moved.sum(dim=(1, 2, 3)), torch.ones(64))
    where = moved[:, 0].flatten(1).argmax(dim=1)
    rows, cols = where // 11, where % 11
    assert rows.min() == 3 and rows.max() == 7 and cols.min() == 3 and cols.max() == 7
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # per-example offsets
    corner = torch.zeros(1, 1, 5, 5)
    corner[0, 0, 0, 0] = 1.0
    assert augment_event_frames(corner.expand(32, -1, -1, -1), max_shift=1).sum() < 32  # falls off, no wrap
    # Differentiable (translated G_S->T outputs are augmented inside the graph).
    x = frames.clone().requires_grad_(True)
    augment_event_frames(x, drop_prob=0.2, max_shift=1).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for kwargs, match in (({"drop_prob": 1.0}, "drop_prob"), ({"drop_prob": -0.1}, "drop_prob"),
                          ({"max_shift": -1}, "max_shift"), ({"max_shift": 1.5}, "max_shift")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            augment_event_frames(frames, **kwargs)
    with pytest.raises(ValueError, match="B, C, H, W"):
        augment_event_frames(torch.rand(2, 8, 8), drop_prob=0.1)


def test_edge_prior_and_event_augmentation_switches_in_the_wrapper(tmp_path):
    default = _args(tmp_path)
    assert default.generator_events_edge_prior == "none" and default.event_pixel_dropout == 0.0
    assert default.event_max_shift == 0
    wrapper = _wrapper(
        _args(tmp_path, generator_events_edge_prior="log_gradient", generator_events_edge_prior_spread=5,
              generator_events_activation="sigmoid", event_pixel_dropout=0.5)
    )  # fmt: skip
    assert wrapper.g_s2t.config.edge_prior == "log_gradient" and wrapper.g_s2t.config.edge_prior_spread == 5
    assert wrapper.g_t2s.config.edge_prior == "none"  # events -> image has no such prior
    events = torch.rand(2, 2, 32, 48) + 0.1
    assert float((wrapper._augment(events) == 0).float().mean()) > 0.3  # training: S_ev's inputs augmented
    assert wrapper.eval()._augment(events) is events  # evaluation: never
    wrapper.train()
    out = wrapper(**_batch())
    assert {"ce_event", "bmr_dsc", "bmr_adversarial"} <= set(out.terms) and torch.isfinite(out.loss)
    out.loss.backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in wrapper.g_s2t.parameters())
    # Translation would misalign dense targets: refused for segmentation students.
    with pytest.raises(ValueError, match="event_max_shift"):
        _wrapper(_args(tmp_path, event_max_shift=2))


def test_event_translation_for_recognition(tmp_path):
    from hf_crossdistill.models.deeplab import build_resnet_classifier

    args = _args(tmp_path, aps_student_config=None, event_max_shift=3, event_pixel_dropout=0.2,
                 generator_events_edge_prior="log_gradient")  # fmt: skip
    torch.manual_seed(0)
    teacher = build_resnet_classifier(MODELS / "resnet_tiny_image_ncaltech.json").eval().requires_grad_(False)
    student = build_resnet_classifier(MODELS / "resnet_tiny_events_ncaltech.json")
    wrapper = build_evdistill_model(student, teacher, args).train()
    g = torch.Generator().manual_seed(0)
    out = wrapper(
        event_pixel_values=torch.rand(2, 2, 32, 40, generator=g),
        source_pixel_values=torch.rand(2, 3, 32, 40, generator=g),
        source_labels=torch.randint(0, 10, (2,), generator=g),
    )
    assert torch.isfinite(out.loss) and "ce_event" in out.terms


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"generator_events_edge_prior": "sobel"}, "generator_events_edge_prior"),
        ({"generator_events_edge_prior_spread": 2}, "generator_events_edge_prior_spread"),
        ({"event_pixel_dropout": 1.0}, "event_pixel_dropout"),
        ({"event_pixel_dropout": float("nan")}, "event_pixel_dropout"),
        ({"event_max_shift": -1}, "event_max_shift"),
    ],
)
def test_edge_prior_and_augmentation_validation(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **overrides)

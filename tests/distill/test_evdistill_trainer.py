"""EvDistill trainer: a few steps on tiny synthetic tensors with the tiny presets (real classes, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testing_utils import HUB_CONFIGS, check_gradients_reach_all_parameters
from torch.utils.data import Dataset
from transformers import AutoConfig, AutoModel, ResNetForImageClassification

from hf_crossdistill.distill.evdistill_config import EvDistillConfig
from hf_crossdistill.distill.evdistill_trainer import EXTRAS_DIR, EvDistillTrainer, build_evdistill_model
from hf_crossdistill.models.deeplab import DeepLabV3PlusForSemanticSegmentation, build_resnet_classifier

MODELS = HUB_CONFIGS / "models"


class _Batches(Dataset):
    """Random events (2 ch), APS frames (1 ch) and labelled source images (3 ch), unpaired with the events."""

    def __init__(self, n=4, size=(32, 48), aps=True, segmentation=True, num_labels=6):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(n):
            item = {
                "event_pixel_values": torch.rand(2, *size, generator=g),
                "source_pixel_values": torch.randn(3, *size, generator=g),
                "source_labels": torch.randint(0, num_labels, size if segmentation else (), generator=g),
            }
            if aps:
                item["aps_pixel_values"] = torch.randn(1, *size, generator=g)
            self.items.append(item)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _deeplab(name: str) -> DeepLabV3PlusForSemanticSegmentation:
    return AutoModel.from_config(AutoConfig.from_pretrained(MODELS / f"deeplabv3plus_tiny_{name}.json"))


def _args(tmp_path: Path, **overrides) -> EvDistillConfig:
    kwargs = {
        "output_dir": str(tmp_path / "run"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "generator_base_channels": 4,
        "generator_residual_blocks": 1,
        "discriminator_base_channels": 4,
        "discriminator_layers": 2,
        "modality_hidden_channels": 8,
        "aps_student_config": str(MODELS / "deeplabv3plus_tiny_aps.json"),
        "seed": 0,
    }
    kwargs.update(overrides)
    return EvDistillConfig(**kwargs)


def test_wrapper_forward_reaches_every_trainable_parameter(tmp_path):
    args = _args(tmp_path)
    teacher = _deeplab("image").eval().requires_grad_(False)
    wrapper = build_evdistill_model(_deeplab("events"), teacher, args, aps_student=_deeplab("aps")).train()
    batch = {k: torch.stack([d[k] for d in _Batches(n=2).items]) for k in _Batches(n=1).items[0]}
    out = wrapper(**batch)
    expected = {"ce_event", "ce_aps", "bmr_pixel", "bmr_adversarial", "bmr_discriminator", "bmr_cycle", "bmr_dsc"}
    expected |= {"da_aps", "da_event", "da_match", "ag", "md"}
    assert set(out.terms) == expected
    # Every trainable module is used in forward (DDP would fail otherwise), and the teacher is not trained.
    check_gradients_reach_all_parameters(wrapper, out.loss)
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    assert not any(name.startswith("_teacher") or "teacher" in name for name, _ in wrapper.named_parameters())


def test_adversarial_gradients_reach_only_their_side(tmp_path):
    # Only the BMR adversarial terms: the generator term must not move D, the discriminator term must not move G.
    zero = dict.fromkeys(("lambda_ce_event", "lambda_bmr_pixel", "lambda_bmr_cycle", "lambda_bmr_dsc"), 0.0)
    teacher = _deeplab("image").eval().requires_grad_(False)
    batch = {k: torch.stack([d[k] for d in _Batches(n=2).items]) for k in _Batches(n=1).items[0]}
    grads = {}
    for term in ("bmr_adversarial", "bmr_discriminator"):
        args = _args(tmp_path, aps_student_config=None, lambda_da=0.0, lambda_ag=0.0, **zero)
        wrapper = build_evdistill_model(_deeplab("events"), teacher, args).train()
        wrapper.weights = {term: 1.0}
        out = wrapper(**batch)
        assert set(out.terms) == {term}
        out.loss.backward()
        grads[term] = {
            part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(wrapper, part).parameters())
            for part in ("g_t2s", "g_s2t", "d_image", "d_events")
        }
    assert grads["bmr_adversarial"] == {"g_t2s": True, "g_s2t": True, "d_image": False, "d_events": False}
    assert grads["bmr_discriminator"] == {"g_t2s": False, "g_s2t": False, "d_image": True, "d_events": True}


def test_train_logs_every_term_saves_student_alone_and_resumes(tmp_path):
    teacher = _deeplab("image")
    student = _deeplab("events")
    args = _args(tmp_path, save_strategy="steps", save_steps=2)
    trainer = EvDistillTrainer(student, args, teacher=teacher, train_dataset=_Batches())
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.train()
    logged = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logged) == 2
    for term in ("ce_event", "bmr_dsc", "bmr_cycle", "da_match", "ag", "md", "da_aps", "bmr_pixel"):
        assert all(f"loss_{term}" in log for log in logged), term
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k], msg=f"teacher {k} changed")
    assert not teacher.training

    checkpoint = Path(args.output_dir) / "checkpoint-2"
    reloaded = AutoModel.from_pretrained(checkpoint)
    assert type(reloaded) is DeepLabV3PlusForSemanticSegmentation
    # BMR, S_aps and h add nothing at inference: the checkpoint is S_ev alone, same size as S_ev trained alone.
    alone = sum(p.numel() for p in _deeplab("events").parameters())
    assert sum(p.numel() for p in reloaded.parameters()) == alone
    for name in ("g_t2s", "g_s2t", "d_image", "d_events", "modality_classifier", "aps_student"):
        assert (checkpoint / EXTRAS_DIR / name / "model.safetensors").is_file(), name
    x = torch.rand(1, 2, 32, 48)
    trainer.wrapper.event_student.eval()
    reloaded.eval()
    torch.testing.assert_close(reloaded(x).logits, trainer.wrapper.event_student(x).logits)

    # Resume: a fresh trainer restores every module and the optimiser state and continues to step 3.
    args2 = _args(tmp_path, max_steps=3, save_strategy="no")
    trainer2 = EvDistillTrainer(_deeplab("events"), args2, teacher=_deeplab("image"), train_dataset=_Batches())
    trainer2._load_from_checkpoint(str(checkpoint))
    for name in ("g_t2s", "modality_classifier", "event_student"):
        saved = getattr(trainer.wrapper, name).state_dict()
        for k, v in getattr(trainer2.wrapper, name).state_dict().items():
            torch.testing.assert_close(v, saved[k], msg=f"{name}.{k}")
    trainer2.train(resume_from_checkpoint=str(checkpoint))
    assert trainer2.state.global_step == 3


def test_recognition_without_aps(tmp_path):
    teacher = build_resnet_classifier(MODELS / "resnet_tiny_image_ncaltech.json")
    student = build_resnet_classifier(MODELS / "resnet_tiny_events_ncaltech.json")
    args = _args(tmp_path, aps_student_config=None, max_steps=1)
    data = _Batches(aps=False, segmentation=False, num_labels=10, size=(48, 48))
    trainer = EvDistillTrainer(student, args, teacher=teacher, train_dataset=data)
    trainer.train()
    log = next(log for log in trainer.state.log_history if "loss" in log)
    assert {"loss_ce_event", "loss_bmr_dsc", "loss_ag", "loss_da_match", "loss_bmr_adversarial"} <= set(log)
    assert "loss_md" not in log and "loss_bmr_pixel" not in log
    assert isinstance(trainer.wrapper.event_student, ResNetForImageClassification)


@pytest.mark.parametrize(
    ("mode", "terms"), [("pseudo_labels", {"ce_pseudo"}), ("events_aps_kd", {"da_event", "ag", "da_match"})]
)
def test_baselines(tmp_path, mode, terms):
    args = _args(tmp_path, mode=mode, use_bmr=False, aps_student_config=None)
    teacher = _deeplab("image").eval().requires_grad_(False)
    wrapper = build_evdistill_model(_deeplab("events"), teacher, args).train()
    assert wrapper.g_t2s is None and wrapper.aps_student is None
    batch = {k: torch.stack([d[k] for d in _Batches(n=2).items]) for k in _Batches(n=1).items[0]}
    out = wrapper(**batch)
    assert set(out.terms) == terms
    check_gradients_reach_all_parameters(wrapper, out.loss)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        _args(tmp_path, mode="nope")
    with pytest.raises(ValueError, match="lambda_ag"):
        _args(tmp_path, lambda_ag=-1.0)
    with pytest.raises(ValueError, match="baseline"):
        _args(tmp_path, mode="pseudo_labels")
    with pytest.raises(ValueError, match="teacher is required"):
        EvDistillTrainer(_deeplab("events"), _args(tmp_path))


def test_train_on_tiny_synthetic_ddd17_and_source_images(tmp_path, tiny_ddd17_root, tiny_source_images_root):
    from hf_crossdistill.data.events import datasets as event_datasets
    from hf_crossdistill.distill.evdistill_trainer import EvDistillPairs

    size = (64, 128)
    events = event_datasets.event_segmentation_dataset(
        tiny_ddd17_root, split="train", representation="normalized_count", output_size=size
    )
    source = event_datasets.labeled_image_dataset(tiny_source_images_root, split="train", output_size=size)
    pairs = EvDistillPairs(events, source)
    first = next(iter(pairs))
    assert first["event_pixel_values"].shape == (2, *size) and first["aps_pixel_values"].shape == (1, *size)
    assert first["source_pixel_values"].shape == (3, *size) and first["source_labels"].shape == size
    assert "labels" not in first  # event labels never reach training
    args = _args(tmp_path, generator_image_activation="sigmoid", generator_events_activation="sigmoid", max_steps=2)
    trainer = EvDistillTrainer(_deeplab("events"), args, teacher=_deeplab("image"), train_dataset=pairs)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 2 and all(torch.isfinite(torch.tensor(log["loss"])) for log in logs)
    assert {"loss_bmr_pixel", "loss_md", "loss_da_event", "loss_ce_event"} <= set(logs[0])


def test_trainer_registers_the_process_group_exit_hook(tmp_path, monkeypatch):
    from hf_crossdistill.distill import evdistill_trainer

    calls = []
    monkeypatch.setattr(evdistill_trainer, "destroy_process_group_at_exit", lambda: calls.append(1))
    EvDistillTrainer(_deeplab("events"), _args(tmp_path), teacher=_deeplab("image"), train_dataset=_Batches())
    assert calls == [1]


def test_nonfinite_steps_are_skipped_and_nonfinite_weights_never_saved(tmp_path):
    class DivergingTrainer(EvDistillTrainer):
        """Eq. 9 times NaN: what a diverged step looks like to the guard (NaN loss and gradients)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, inputs) * float("nan")

    trainer = DivergingTrainer(
        _deeplab("events"), _args(tmp_path), teacher=_deeplab("image"), train_dataset=_Batches()
    )
    before = {k: v.clone() for k, v in trainer.wrapper.event_student.named_parameters()}
    trainer.train()
    assert [log["nonfinite_skipped_steps"] for log in trainer.state.log_history if "loss" in log] == [1, 2]
    for name, value in trainer.wrapper.event_student.named_parameters():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    with pytest.raises(FloatingPointError, match="2 consecutive"):
        DivergingTrainer(
            _deeplab("events"),
            _args(tmp_path / "stop", max_consecutive_nonfinite_steps=2, max_steps=4),
            teacher=_deeplab("image"),
            train_dataset=_Batches(),
        ).train()
    with torch.no_grad():
        next(trainer.wrapper.event_student.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="refusing to write"):
        trainer.save_model(str(tmp_path / "final"))
    with pytest.raises(ValueError, match="max_consecutive_nonfinite_steps"):
        _args(tmp_path, max_consecutive_nonfinite_steps=0)

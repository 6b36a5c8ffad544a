"""BMR adds nothing at inference: the S_ev that EvDistill saves is exactly the architecture of S_ev trained alone."""

from __future__ import annotations

import json

import torch
from testing_utils import HUB_CONFIGS
from torch.utils.data import Dataset
from transformers import AutoConfig, AutoModel

from hf_crossdistill.distill.evdistill_config import EvDistillConfig
from hf_crossdistill.distill.evdistill_trainer import EXTRAS_DIR, EvDistillTrainer

MODELS = HUB_CONFIGS / "models"


class _Batches(Dataset):
    def __init__(self, n=2, size=(32, 48)):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "event_pixel_values": torch.rand(2, *size, generator=g),
                "aps_pixel_values": torch.rand(1, *size, generator=g),
                "source_pixel_values": torch.rand(3, *size, generator=g),
                "source_labels": torch.randint(0, 6, size, generator=g),
            }
            for _ in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _preset(role: str):
    return AutoModel.from_config(AutoConfig.from_pretrained(MODELS / f"deeplabv3plus_tiny_{role}.json"))


def _signature(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_saved_event_student_has_the_architecture_of_a_student_trained_alone(tmp_path):
    out = tmp_path / "run"
    args = EvDistillConfig(
        output_dir=str(out), max_steps=1, per_device_train_batch_size=2, save_strategy="no", report_to=[],
        disable_tqdm=True, use_cpu=True, generator_base_channels=4, generator_residual_blocks=1,
        discriminator_base_channels=4, discriminator_layers=2, modality_hidden_channels=8,
        aps_student_config=str(MODELS / "deeplabv3plus_tiny_aps.json"), seed=0,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = EvDistillTrainer(_preset("events"), args, teacher=_preset("image"), train_dataset=_Batches())
    wrapper = trainer.wrapper
    # Every training-only module was really built and trained (so "adds nothing" is not trivially true).
    for name in ("aps_student", "g_t2s", "g_s2t", "d_image", "d_events", "modality_classifier"):
        assert getattr(wrapper, name) is not None, name
    wrapper_params = sum(p.numel() for p in wrapper.parameters())
    trainer.train()
    trainer.save_model(str(out))

    saved = AutoModel.from_pretrained(str(out)).eval()
    alone = _preset("events").eval()
    n_saved = sum(p.numel() for p in saved.parameters())
    assert n_saved == sum(p.numel() for p in alone.parameters())
    assert n_saved < wrapper_params  # the extras exist in training, not in the saved student
    assert type(saved) is type(alone) and _signature(saved) == _signature(alone)
    saved_config = json.loads((out / "config.json").read_text())
    assert saved_config["architectures"] == ["DeepLabV3PlusForSemanticSegmentation"]
    # The training-only modules are kept apart (for resume), never inside S_ev's weights.
    assert (out / EXTRAS_DIR / "g_t2s" / "model.safetensors").is_file()
    x = torch.rand(1, 2, 32, 48)
    with torch.no_grad():
        assert saved(pixel_values=x).logits.shape == alone(pixel_values=x).logits.shape == (1, 6, 32, 48)

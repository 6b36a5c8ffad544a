"""UniDistillTrainer end to end on tiny real detectors and the tiny synthetic nuScenes dataroot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from hf_crossdistill.data.nuscenes import nuscenes_detection_dataset
from hf_crossdistill.distill import DISTILL_EXTRAS_NAME, UniDistillConfig, UniDistillTrainer, load_pretrained_strict
from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection

TINY_COMMON = {
    "point_cloud_range": [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0],
    "voxel_size": [0.4, 0.4, 8.0],
    "out_size_factor": 8,  # 32 × 32 BEV cells of 3.2 m
    "bev_backbone_layers": [1, 1],
    "bev_backbone_channels": [16, 32],
    "bev_upsample_channels": [16, 16],
    "head_channels": 16,
    "num_sweeps": 1,
}
TINY_IMAGE_BACKBONE = {
    "model_type": "resnet",
    "embedding_size": 8,
    "hidden_sizes": [8, 16, 32, 64],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
    "out_features": ["stage3", "stage4"],
}


def tiny_config(modality: str, low: int = 16, high: int = 32, **overrides) -> BEVDetectorConfig:
    kwargs = {**TINY_COMMON, "low_bev_channels": low, "high_bev_channels": high, **overrides}
    kwargs["bev_upsample_channels"] = [high // 2, high - high // 2]
    if modality == "lidar":
        return BEVDetectorConfig(modalities=["lidar"], lidar_encoder="pillar", pillar_channels=16, **kwargs)
    return BEVDetectorConfig(
        modalities=["camera"],
        image_size=[64, 176],
        neck_channels=32,
        depth_bins=[2.0, 58.0, 4.0],
        image_backbone_config=TINY_IMAGE_BACKBONE,
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_samples(tiny_nuscenes_root) -> list[dict]:
    dataset = nuscenes_detection_dataset(
        tiny_nuscenes_root, "v1.0-mini", "mini_train", num_sweeps=1, image_size=(176, 64), seed=0
    )
    return [sample for _, sample in zip(range(4), dataset)]


def save_teacher(config: BEVDetectorConfig, folder: Path) -> Path:
    torch.manual_seed(1)
    BEVDetectorForObjectDetection(config).save_pretrained(folder)
    return folder


def make_args(tmp_path: Path, **overrides) -> UniDistillConfig:
    defaults = {
        "output_dir": str(tmp_path / "run"),
        "max_steps": 3,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_steps": 2,
        "report_to": "none",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    defaults.update(overrides)
    return UniDistillConfig(**defaults)


def logged(trainer: UniDistillTrainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_lidar_to_camera_distillation_logs_every_term_and_keeps_the_teacher_frozen(tmp_path, tiny_samples):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    teacher_before = safetensors.torch.load_file(str(teacher_dir / "model.safetensors"))
    torch.manual_seed(0)
    student = BEVDetectorForObjectDetection(tiny_config("camera"))
    args = make_args(tmp_path, teacher_model_name_or_path=str(teacher_dir), lambda_feature=100.0, lambda_relation=40.0)
    trainer = UniDistillTrainer(model=student, args=args, train_dataset=tiny_samples)

    teacher_ids = {id(p) for p in trainer.teacher.parameters()}
    optimised = {id(p) for group in trainer.create_optimizer().param_groups for p in group["params"]}
    assert not teacher_ids & optimised, "teacher parameters are in the optimiser"
    assert not any(name.startswith("teacher") for name, _ in trainer.model.named_parameters())
    trainer.train()

    entries = logged(trainer)
    assert len(entries) == 3
    for entry in entries:
        for key in ("loss_det", "loss_feature", "loss_relation", "loss_response", "det_heatmap_loss", "det_bbox_loss"):
            assert key in entry and entry[key] == entry[key], f"{key} missing or NaN in {entry}"
        assert entry["loss_feature"] > 0 and entry["loss_relation"] > 0 and entry["loss_response"] > 0
        total = entry["loss_det"] + 100 * entry["loss_feature"] + 40 * entry["loss_relation"]
        total += 10 * entry["loss_response"]
        assert entry["loss"] == pytest.approx(total, rel=1e-3)

    # The teacher stayed frozen, in eval mode, and unchanged.
    assert not trainer.teacher.training
    assert all(not m.training for m in trainer.teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in trainer.teacher.parameters())
    for name, value in trainer.teacher.state_dict().items():
        torch.testing.assert_close(value, teacher_before[name], msg=name)

    # Checkpoint = the student's save_pretrained folder only (no adaptive layers on this path).
    checkpoint = Path(args.output_dir) / "checkpoint-2"
    saved = safetensors.torch.load_file(str(checkpoint / "model.safetensors"))
    assert set(saved) == set(student.state_dict())
    assert not (checkpoint / DISTILL_EXTRAS_NAME).exists()
    assert json.loads((checkpoint / "config.json").read_text())["modalities"] == ["camera"]
    reloaded = load_pretrained_strict(BEVDetectorForObjectDetection, Path(args.output_dir) / "checkpoint-3")
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, student.state_dict()[name], msg=name)


def test_camera_to_lidar_with_adaptive_layers_saves_extras_and_resumes(tmp_path, tiny_samples):
    # Teacher channels differ from the student's: only the adaptive layers make them comparable.
    teacher_dir = save_teacher(tiny_config("camera", low=24, high=48), tmp_path / "teacher")
    torch.manual_seed(0)
    args = make_args(tmp_path, teacher_model_name_or_path=str(teacher_dir), use_adaptive_layers=True, max_steps=2)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=args, train_dataset=tiny_samples
    )
    assert trainer.model.adaptive_layers.low.out_channels == 24
    trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-2"
    extras = safetensors.torch.load_file(str(checkpoint / DISTILL_EXTRAS_NAME))
    assert set(extras) == {f"adaptive_layers.{k}" for k in trainer.model.adaptive_layers.state_dict()}
    student_keys = set(safetensors.torch.load_file(str(checkpoint / "model.safetensors")))
    assert student_keys == set(trainer.model.student.state_dict())  # no adaptive / teacher keys in the student

    # Resume into a fresh run: both the student and the adaptive layers come back, training continues.
    torch.manual_seed(123)
    resumed_args = make_args(
        tmp_path, teacher_model_name_or_path=str(teacher_dir), use_adaptive_layers=True, max_steps=3
    )
    resumed = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=resumed_args, train_dataset=tiny_samples
    )
    resumed._load_from_checkpoint(str(checkpoint))
    for name, value in resumed.model.adaptive_layers.state_dict().items():
        torch.testing.assert_close(value, extras[f"adaptive_layers.{name}"], msg=name)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    assert [e["step"] for e in logged(resumed)] == [1, 2, 3]  # restored history + the new step


def test_incompatible_teachers_are_clear_errors(tmp_path, tiny_samples):
    wide = save_teacher(tiny_config("camera", low=24, high=48), tmp_path / "wide")
    with pytest.raises(ValueError, match="low_bev_channels differs.*use_adaptive_layers"):
        UniDistillTrainer(
            model=BEVDetectorForObjectDetection(tiny_config("lidar")),
            args=make_args(tmp_path, teacher_model_name_or_path=str(wide)),
        )
    finer = save_teacher(tiny_config("lidar", voxel_size=[0.2, 0.2, 8.0]), tmp_path / "finer")
    with pytest.raises(ValueError, match="bev_shape differs"):
        UniDistillTrainer(
            model=BEVDetectorForObjectDetection(tiny_config("lidar")),
            args=make_args(tmp_path, teacher_model_name_or_path=str(finer), use_adaptive_layers=True),
        )


def test_teacher_checkpoint_is_loaded_strictly(tmp_path):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    state = safetensors.torch.load_file(str(teacher_dir / "model.safetensors"))
    first = sorted(state)[0]
    state[f"renamed.{first}"] = state.pop(first)
    safetensors.torch.save_file(state, str(teacher_dir / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 missing keys.*1 unexpected keys"):
        load_pretrained_strict(BEVDetectorForObjectDetection, teacher_dir)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained_strict(BEVDetectorForObjectDetection, tmp_path)


def test_without_teacher_it_trains_the_detector_alone(tmp_path, tiny_samples):
    args = make_args(tmp_path, max_steps=2, save_steps=10)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=args, train_dataset=tiny_samples
    )
    assert trainer.teacher is None
    trainer.train()
    for entry in logged(trainer):
        assert entry["loss"] == pytest.approx(entry["loss_det"], rel=1e-4)
        assert not any(k in entry for k in ("loss_feature", "loss_relation", "loss_response"))


@pytest.fixture(scope="module")
def tiny_val_samples(tiny_nuscenes_root) -> list[dict]:
    dataset = nuscenes_detection_dataset(
        tiny_nuscenes_root, "v1.0-mini", "mini_val", num_sweeps=1, image_size=(176, 64), seed=0
    )
    return list(dataset)


@pytest.mark.parametrize("score_threshold", [0.0, 0.9999], ids=["boxes", "no-boxes"])
def test_evaluate_reports_the_official_nuscenes_metrics(
    tmp_path, tiny_nuscenes_root, tiny_val_samples, score_threshold
):
    from hf_crossdistill.data.nuscenes import NUSCENES_CLASSES
    from hf_crossdistill.distill import NuScenesEvaluation

    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(tiny_config("lidar"))
    evaluation = NuScenesEvaluation(
        dataroot=str(tiny_nuscenes_root), version="v1.0-mini", eval_set="mini_val", score_threshold=score_threshold
    )
    args = make_args(tmp_path, per_device_eval_batch_size=3)  # 4 samples: the last batch is short
    trainer = UniDistillTrainer(model=model, args=args, eval_dataset=tiny_val_samples, nuscenes_evaluation=evaluation)
    metrics = trainer.evaluate()

    assert metrics["eval_nuscenes_samples"] == len(tiny_val_samples) == 4  # every sample once
    for name in ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE", *(f"AP_{c}" for c in NUSCENES_CLASSES)):
        assert f"eval_{name}" in metrics, name
        assert 0.0 <= metrics[f"eval_{name}"] <= 10.0, name
    assert metrics["eval_loss"] > 0
    logged_eval = [e for e in trainer.state.log_history if "eval_mAP" in e]
    assert logged_eval and logged_eval[-1]["eval_NDS"] == metrics["eval_NDS"]
    written = json.loads((Path(args.output_dir) / "nuscenes_eval" / "step-0" / "metrics.json").read_text())
    assert written["mAP"] == metrics["eval_mAP"]
    if score_threshold == 0.0:
        # Real boxes went through the devkit: its own summary exists and agrees with what was logged.
        summary = json.loads((Path(args.output_dir) / "nuscenes_eval" / "step-0" / "metrics_summary.json").read_text())
        assert summary["nd_score"] == pytest.approx(metrics["eval_NDS"])
        submission = json.loads((Path(args.output_dir) / "nuscenes_eval" / "step-0" / "submission.json").read_text())
        assert len(submission["results"]) == 4 and sum(len(v) for v in submission["results"].values()) > 0
    else:
        assert metrics["eval_mAP"] == 0.0 and metrics["eval_NDS"] == 0.0 and metrics["eval_mATE"] == 1.0


def test_nuscenes_evaluation_settings_are_validated(tmp_path):
    from hf_crossdistill.distill import NuScenesEvaluation

    with pytest.raises(ValueError, match="eval_set"):
        NuScenesEvaluation(dataroot="x", version="v1.0-mini", eval_set="")
    with pytest.raises(ValueError, match="score_threshold"):
        NuScenesEvaluation(dataroot="x", version="v1.0-mini", eval_set="mini_val", score_threshold=1.5)
    with pytest.raises(TypeError, match="NuScenesEvaluation"):
        UniDistillTrainer(
            model=BEVDetectorForObjectDetection(tiny_config("lidar")),
            args=make_args(tmp_path),
            nuscenes_evaluation={"dataroot": "x"},
        )


def test_load_matching_weights_initialises_a_fusion_detector_from_a_lidar_one(tmp_path):
    """BEVFusion's recipe: the LiDAR branch, BEV backbone and head come from a trained LiDAR detector; the camera
    branch and the fuser start fresh; a folder with nothing in common is an error."""
    from hf_crossdistill.distill import load_matching_weights

    torch.manual_seed(0)
    lidar = BEVDetectorForObjectDetection(tiny_config("lidar"))
    lidar.save_pretrained(tmp_path / "lidar")
    fusion_config = BEVDetectorConfig(
        **{**TINY_COMMON, "low_bev_channels": 16, "high_bev_channels": 32, "bev_upsample_channels": [16, 16]},
        modalities=["lidar", "camera"],
        lidar_encoder="pillar",
        pillar_channels=16,
        image_size=[64, 176],
        neck_channels=32,
        depth_bins=[2.0, 58.0, 4.0],
        image_backbone_config=TINY_IMAGE_BACKBONE,
    )
    fusion = BEVDetectorForObjectDetection(fusion_config)
    report = load_matching_weights(fusion, tmp_path / "lidar")
    prefixes = {k.split(".")[1] for k in report["loaded"] if k.startswith("model.")}
    assert prefixes == {"lidar_encoder", "bev_backbone"}
    assert any(k.startswith("head.") for k in report["loaded"])
    fresh = {k.split(".")[1] for k in report["not_in_checkpoint"]}
    assert fresh == {"camera_encoder", "fuser"}
    assert not report["not_in_model"] and not report["shape_mismatched"]
    lidar_state, fusion_state = lidar.state_dict(), fusion.state_dict()
    for key in report["loaded"]:
        assert torch.equal(lidar_state[key], fusion_state[key]), key
    safetensors.torch.save_file({"unrelated.weight": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no tensor matches"):
        load_matching_weights(fusion, tmp_path)
    with pytest.raises(FileNotFoundError, match="not a save_pretrained folder"):
        load_matching_weights(fusion, tmp_path / "missing")


def test_trainer_registers_the_process_group_exit_hook(tmp_path, monkeypatch):
    from hf_crossdistill.distill import unidistill_trainer

    calls = []
    monkeypatch.setattr(unidistill_trainer, "destroy_process_group_at_exit", lambda: calls.append(1))
    UniDistillTrainer(model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=make_args(tmp_path))
    assert calls == [1]


# ------------------------------------------------------------------------------------ study switches (issue 11)

LAMBDAS = {"lambda_feature": 100.0, "lambda_relation": 40.0, "lambda_response": 10.0}


def test_kd_warm_up_ramps_every_distillation_weight(tmp_path, tiny_samples):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    torch.manual_seed(0)
    args = make_args(tmp_path, teacher_model_name_or_path=str(teacher_dir), kd_warmup_steps=2, **LAMBDAS)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("camera")), args=args, train_dataset=tiny_samples
    )
    trainer.train()
    for entry, ramp in zip(logged(trainer), (0.0, 0.5, 1.0), strict=True):
        kd = 100 * entry["loss_feature"] + 40 * entry["loss_relation"] + 10 * entry["loss_response"]
        assert entry["loss"] == pytest.approx(entry["loss_det"] + ramp * kd, rel=1e-3), (ramp, entry)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_gradient_share_balancing_sets_each_terms_gradient_to_its_share(tmp_path, tiny_samples, bf16):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    torch.manual_seed(0)
    shares = {"lambda_feature": 0.5, "lambda_relation": 0.25, "lambda_response": 2.0}
    args = make_args(
        tmp_path,
        teacher_model_name_or_path=str(teacher_dir),
        loss_balancing="gradient_share",
        loss_balancing_interval=1,
        max_steps=2,
        bf16=bf16,
        **shares,
    )
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("camera")), args=args, train_dataset=tiny_samples
    )
    trainer.train()
    for entry in logged(trainer):  # the logged weights are the ones the loss used
        kd = sum(entry[f"kd_weight_{n}"] * entry[f"loss_{n}"] for n in ("feature", "relation", "response"))
        assert entry["loss"] == pytest.approx(entry["loss_det"] + kd, rel=1e-3)

    # On a fixed batch: weight × ‖∇_F L_term‖ = share × ‖∇_F L_det‖ at the student's low-level BEV map F
    # (gradients taken here with plain autograd, independently of the trainer's helper). Under bf16 the caller gets
    # float32 copies of the maps; F is the student's own tensor, which the detection loss also reaches.
    from hf_crossdistill.data.nuscenes import collate_bev_batch

    batch = {k: v for k, v in collate_bev_batch(tiny_samples[:2]).items() if isinstance(v, torch.Tensor)}
    trainer.model.train()
    trainer._balancing_weights = None
    with trainer.compute_loss_context_manager():
        trainer.compute_loss(trainer.model, batch)
        weights = trainer._balancing_weights
        assert all(float(w) > 0 for w in weights.values()), weights
        outputs = trainer.model(**batch)
        raw = trainer._distillation_terms(trainer.model, outputs, trainer._teacher_forward(batch), batch)
    low = trainer.model.shared_bev[0]
    (det_grad,) = torch.autograd.grad(outputs.loss, low, retain_graph=True)
    for name, key in (("feature", "lambda_feature"), ("relation", "lambda_relation"), ("response", "lambda_response")):
        (grad,) = torch.autograd.grad(raw[name], low, retain_graph=True)
        assert float(weights[name] * grad.norm()) == pytest.approx(shares[key] * float(det_grad.norm()), rel=1e-2)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_diagnostics_are_logged_every_n_steps_and_do_not_change_training(tmp_path, tiny_samples, bf16):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    states = {}
    for steps in (0, 2):
        torch.manual_seed(0)
        args = make_args(
            tmp_path / f"diag{steps}",
            teacher_model_name_or_path=str(teacher_dir),
            diagnostics_steps=steps,
            bf16=bf16,
            **LAMBDAS,
        )
        trainer = UniDistillTrainer(
            model=BEVDetectorForObjectDetection(tiny_config("camera")), args=args, train_dataset=tiny_samples
        )
        trainer.train()
        states[steps] = {k: v.clone() for k, v in trainer.model.student.state_dict().items()}
        entries = logged(trainer)
    for name, value in states[0].items():
        torch.testing.assert_close(states[2][name], value, msg=name, rtol=0, atol=0)
    # Measured at global steps 0 and 2, i.e. in the log entries of steps 1 and 3.
    with_diag = [e["step"] for e in entries if "diag_gradratio_low_feature" in e]
    assert with_diag == [1, 3]
    entry = entries[0]
    for where in ("low", "high", "params"):
        for name in ("feature", "relation", "response"):
            value = entry[f"diag_gradratio_{where}_{name}"]
            assert value == value and value >= 0, (where, name, entry)
    assert entry["diag_gradratio_params_feature"] > 0 and entry["diag_gradratio_low_response"] > 0
    assert entry["diag_gradratio_high_feature"] == 0  # the feature term never reaches the high-level map
    for where in ("low", "high", "params"):  # the detection loss reaches every measuring point
        assert entry[f"diag_gradnorm_{where}_det"] > 0, where
    assert entry["diag_gradratio_low_feature"] > 0 and entry["diag_gradratio_high_relation"] > 0
    for name in ("student_low", "teacher_low", "student_high", "teacher_high"):
        assert entry[f"diag_{name}_rms"] > 0 and entry[f"diag_{name}_channel_std_spread"] >= 1


def test_resume_keeps_the_balancing_weights_of_the_checkpoint(tmp_path, tiny_samples):
    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")

    def run(out: str, max_steps: int, resume: str | None = None):
        torch.manual_seed(0)
        args = make_args(
            tmp_path,
            output_dir=str(tmp_path / out),
            teacher_model_name_or_path=str(teacher_dir),
            loss_balancing="gradient_share",
            loss_balancing_interval=3,  # measured at steps 0 and 3: the resumed step 2 must reuse step 0's
            max_steps=max_steps,
            save_steps=2,
            lambda_feature=0.5,
            lambda_relation=0.5,
            lambda_response=1.0,
        )
        trainer = UniDistillTrainer(
            model=BEVDetectorForObjectDetection(tiny_config("camera")), args=args, train_dataset=tiny_samples
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run("full", 4)
    extras = safetensors.torch.load_file(str(tmp_path / "full" / "checkpoint-2" / DISTILL_EXTRAS_NAME))
    assert set(extras) == {"loss_balancing.feature", "loss_balancing.relation", "loss_balancing.response"}
    resumed = run("resumed", 4, resume=str(tmp_path / "full" / "checkpoint-2"))
    for name, value in full.model.student.state_dict().items():
        torch.testing.assert_close(resumed.model.student.state_dict()[name], value, msg=name, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("region", "normalize"), [("crucial_points", "none"), ("crucial_points", "layer"), ("foreground", "channel")]
)
def test_the_feature_term_uses_the_configured_region_and_normalisation(tmp_path, tiny_samples, region, normalize):
    from hf_crossdistill.data.nuscenes import collate_bev_batch
    from hf_crossdistill.losses.unidistill import feature_distillation_loss, foreground_feature_distillation_loss

    teacher_dir = save_teacher(tiny_config("lidar"), tmp_path / "teacher")
    torch.manual_seed(0)
    args = make_args(
        tmp_path, teacher_model_name_or_path=str(teacher_dir), feature_region=region, feature_normalization=normalize
    )
    trainer = UniDistillTrainer(model=BEVDetectorForObjectDetection(tiny_config("camera")), args=args)
    batch = {k: v for k, v in collate_bev_batch(tiny_samples[:2]).items() if isinstance(v, torch.Tensor)}
    trainer.model.eval()
    with torch.no_grad():
        outputs = trainer.model(**batch)
        teacher_output = trainer._teacher_forward(batch)
        raw = trainer._distillation_terms(trainer.model, outputs, teacher_output, batch)
        loss = foreground_feature_distillation_loss if region == "foreground" else feature_distillation_loss
        expected = loss(
            outputs.low_level_bev,
            teacher_output.low_level_bev,
            batch["gt_boxes"],
            batch["gt_mask"],
            tuple(trainer.student.config.bev_range),
            normalize=normalize,
        )
        other = loss(
            outputs.low_level_bev,
            teacher_output.low_level_bev,
            batch["gt_boxes"],
            batch["gt_mask"],
            tuple(trainer.student.config.bev_range),
            normalize="channel" if normalize != "channel" else "none",
        )
    torch.testing.assert_close(raw["feature"], expected, rtol=0, atol=0)
    assert not torch.allclose(raw["feature"], other)  # the setting matters for these maps


def test_evaluate_detector_scores_a_saved_folder_and_the_cli_prints_the_same(tmp_path, tiny_nuscenes_root, capsys):
    from testing_utils import REPO_ROOT, load_script

    from hf_crossdistill.evaluation import evaluate_detector

    folder = save_teacher(tiny_config("lidar"), tmp_path / "detector")
    root = str(tiny_nuscenes_root)
    metrics = evaluate_detector(folder, root, "v1.0-mini", "mini_val", num_sweeps=1, score_threshold=0.0)
    assert metrics["nuscenes_samples"] == 4  # every mini_val key frame of the tiny dataroot, once
    assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["NDS"] <= 1.0 and "mATE" in metrics

    cli = load_script(REPO_ROOT / "scripts" / "evaluate.py", "evaluate_cli_model")
    out = tmp_path / "eval"
    argv = ["--model", str(folder), "--dataroot", root, "--version", "v1.0-mini", "--eval-set", "mini_val"]
    # The CLI decodes at the config's threshold; the same call in the package gives the same figures.
    assert cli.main([*argv, "--num-sweeps", "1", "--output-dir", str(out)]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    same = evaluate_detector(folder, root, "v1.0-mini", "mini_val", num_sweeps=1)
    assert saved["mAP"] == pytest.approx(same["mAP"]) and saved["NDS"] == pytest.approx(same["NDS"])
    assert "NDS" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / "p.json"), *argv])  # a predictions file and --model: one or the other
    with pytest.raises(TypeError, match="not a BEV detector"):
        evaluate_detector(torch.nn.Linear(2, 2), root, "v1.0-mini", "mini_val")


# ------------------------------------------------------------------------------------ non-finite guard (issue 13)


def _with_nan_points(samples: list[dict]) -> list[dict]:
    out = []
    for sample in samples:
        points = torch.as_tensor(sample["points"]).clone()
        points[0, 3] = float("nan")  # one point's intensity
        out.append({**sample, "points": points})
    return out


def test_nonfinite_steps_are_skipped_and_a_run_of_them_stops_training(tmp_path, tiny_samples):
    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(tiny_config("lidar"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = make_args(tmp_path, max_steps=3, save_steps=10)
    trainer = UniDistillTrainer(model=model, args=args, train_dataset=_with_nan_points(tiny_samples))
    trainer.train()
    # Every step had a NaN loss: none was applied (weights, BatchNorm statistics aside, and optimiser untouched).
    for name, value in trainer.model.student.state_dict().items():
        if "running_" not in name and "num_batches_tracked" not in name:
            torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    assert all(not state for state in trainer.optimizer.state.values())
    assert [e["nonfinite_skipped_steps"] for e in logged(trainer)] == [1, 2, 3]

    torch.manual_seed(0)
    args = make_args(tmp_path / "stop", max_steps=5, save_steps=10, max_consecutive_nonfinite_steps=2)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")),
        args=args,
        train_dataset=_with_nan_points(tiny_samples),
    )
    with pytest.raises(FloatingPointError, match=r"2 consecutive steps \(the last at step 2.*loss_det"):
        trainer.train()


def test_finite_steps_train_as_before_and_non_finite_weights_are_never_saved(tmp_path, tiny_samples):
    torch.manual_seed(0)
    args = make_args(tmp_path, max_steps=2, save_steps=10)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=args, train_dataset=tiny_samples
    )
    trainer.train()
    assert [e["nonfinite_skipped_steps"] for e in logged(trainer)] == [0, 0]
    assert all(state for state in trainer.optimizer.state.values())  # steps were applied
    with torch.no_grad():
        next(trainer.model.student.parameters())[0].fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="refusing to write"):
        trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final" / "model.safetensors").exists()


def test_a_diverging_learning_rate_leaves_only_finite_weights(tmp_path, tiny_samples):
    torch.manual_seed(0)
    args = make_args(tmp_path, learning_rate=1e6, max_steps=12, save_steps=3, max_consecutive_nonfinite_steps=3)
    trainer = UniDistillTrainer(
        model=BEVDetectorForObjectDetection(tiny_config("lidar")), args=args, train_dataset=tiny_samples
    )
    try:
        trainer.train()
        trainer.save_model()
    except FloatingPointError as err:  # diverged: stopped (or refused to save) with a clear message
        assert "not finite" in str(err) or "refusing to write" in str(err)
    for weights in Path(args.output_dir).rglob("model.safetensors"):
        for name, value in safetensors.torch.load_file(str(weights)).items():
            assert torch.isfinite(value).all(), (weights, name)

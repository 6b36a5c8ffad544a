"""UniDistill step cost: distillation vs the same student trained alone, per path.

Reports, per path (L→C, C→L, L+C→L, L+C→C): the student's training step alone, the teacher's forward pass, the
full distillation step, and the cost of everything beyond the teacher's forward pass (the three losses, Gaussian
masks, bilinear sampling, adaptive layers; forward and backward) as a % of the student's step, measured two ways:
in isolation on fixed BEV maps (`extras_pct_of_student_step`) and end to end (distill − student − teacher forward).
`--quick` (or a CPU device) uses the tiny presets the tiny recipes train (pillar LiDAR, one sweep); a CUDA device
uses the paper-size presets. Peak memory: `torch.cuda.max_memory_allocated` on CUDA, the process's peak resident
set (VmHWM, reset before each measurement) on CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from benchmarks._timing import median_seconds

# Paths as (teacher modalities, student modalities, paper λ).
PATHS = {
    "lidar_to_camera": (["lidar"], ["camera"], (100.0, 40.0, 10.0)),
    "camera_to_lidar": (["camera"], ["lidar"], (10.0, 5.0, 1.0)),
    "lidar_camera_to_lidar": (["lidar", "camera"], ["lidar"], (10.0, 1.0, 10.0)),
    "lidar_camera_to_camera": (["lidar", "camera"], ["camera"], (10.0, 5.0, 10.0)),
}


# The presets the recipes train: tiny (hub_configs/recipes/*_tiny.yaml) and paper size.
PRESET_NAMES = {
    ("lidar",): ("bev_lidar_pillar_nuscenes_tiny", "bev_lidar_nuscenes"),
    ("camera",): ("bev_camera_nuscenes_tiny", "bev_camera_nuscenes"),
    ("camera", "lidar"): ("bev_fusion_nuscenes_tiny", "bev_fusion_nuscenes"),
}
TINY_NUM_SWEEPS = 1  # as in the tiny recipes


def _find_preset(modalities: list[str], tiny: bool) -> dict:
    """The BEV detector preset of hub_configs/models for these modalities (tiny or paper-size)."""
    key = tuple(sorted(modalities))
    if key not in PRESET_NAMES:
        raise ValueError(f"no preset for modalities {modalities}; known: {sorted(PRESET_NAMES)}")
    from hf_crossdistill.presets import SAVE_METADATA_KEYS, preset_path

    values = json.loads(preset_path(PRESET_NAMES[key][0 if tiny else 1]).read_text())
    return {k: v for k, v in values.items() if k != "model_type" and k not in SAVE_METADATA_KEYS}


def _load_batch(configs, batch_size: int, root: Path, device: str, num_sweeps: int) -> dict:
    """A real collated batch from a small synthetic dataroot, with what every model of `configs` needs."""
    from hf_crossdistill.data.nuscenes import collate_bev_batch, nuscenes_detection_dataset
    from hf_crossdistill.data.synthetic.nuscenes_generator import make_synthetic_nuscenes

    camera_configs = [c for c in configs if "camera" in c.modalities]
    sizes = {tuple(c.image_size) for c in camera_configs}
    if len(sizes) > 1:
        raise ValueError(f"teacher and student cameras disagree on image_size: {sorted(sizes)}")
    height, width = sizes.pop() if sizes else (90, 160)
    dataroot = root / f"nuscenes_{width}x{height}"
    if not dataroot.exists():
        make_synthetic_nuscenes(dataroot, num_scenes=2, image_size=(width, height), scene_duration_s=2.0)
    dataset = nuscenes_detection_dataset(
        dataroot,
        "v1.0-mini",
        "mini_train",
        num_sweeps=num_sweeps,
        point_cloud_range=configs[0].point_cloud_range,
        **({"image_size": (width, height)} if camera_configs else {"cameras": ()}),
    )
    # Skip each scene's first key frame: it has no earlier sweeps, so it is lighter than a typical sample.
    samples = [s for i, s in enumerate(dataset) if i % 4 != 0][:batch_size]
    batch = collate_bev_batch(samples)
    return {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux: writing 5 to clear_refs); False when unsupported."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_gib() -> float | None:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB → GiB
    except OSError:
        return None
    return None


def _benchmark_path(name: str, args, root: Path) -> dict:
    from hf_crossdistill.distill._diagnostics import gradient_norms
    from hf_crossdistill.losses.unidistill import (
        feature_distillation_loss,
        foreground_feature_distillation_loss,
        relation_distillation_loss,
        response_distillation_loss,
    )
    from hf_crossdistill.models.adaptive import BEVAdaptiveLayers
    from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection

    teacher_modalities, student_modalities, (l_fea, l_rel, l_resp) = PATHS[name]
    tiny = args.quick or not str(args.device).startswith("cuda")
    student_config = BEVDetectorConfig(**_find_preset(student_modalities, tiny))
    teacher_config = BEVDetectorConfig(**_find_preset(teacher_modalities, tiny))
    device = args.device
    torch.manual_seed(0)
    student = BEVDetectorForObjectDetection(student_config).to(device).train()
    teacher = BEVDetectorForObjectDetection(teacher_config).to(device).eval().requires_grad_(False)
    # The paper puts adaptive layers on the C→L path; build them there.
    adaptive = None
    if name == "camera_to_lidar":
        adaptive = BEVAdaptiveLayers(
            student_config.low_bev_channels,
            teacher_config.low_bev_channels,
            student_config.high_bev_channels,
            teacher_config.high_bev_channels,
        ).to(device)
    params = list(student.parameters()) + (list(adaptive.parameters()) if adaptive is not None else [])
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = _load_batch(
        [student_config, teacher_config], 1 if not tiny else 2, root, device, TINY_NUM_SWEEPS if tiny else 10
    )
    # As in the trainer: no targets for the teacher (it skips its loss), so it is told the batch size.
    teacher_batch = {k: v for k, v in batch.items() if k not in ("gt_boxes", "gt_labels", "gt_mask")}
    teacher_batch["batch_size"] = batch["gt_boxes"].shape[0]
    bev_range = tuple(student_config.bev_range)
    boxes, mask = batch["gt_boxes"], batch["gt_mask"]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else None

    def distill_terms(low, high, heat, reg, teacher_out, region="crucial_points", normalize="none"):
        if adaptive is not None:
            low, high = adaptive(low, high)
        feature_loss = foreground_feature_distillation_loss if region == "foreground" else feature_distillation_loss
        return (
            l_fea * feature_loss(low, teacher_out.low_level_bev, boxes, mask, bev_range, normalize=normalize)
            + l_rel * relation_distillation_loss(high, teacher_out.high_level_bev, boxes, mask, bev_range)
            + l_resp
            * response_distillation_loss(
                heat,
                reg,
                teacher_out.heatmap_logits,
                teacher_out.regression,
                boxes,
                mask,
                bev_range,
                teacher_temperature=2.0,
            )
        )

    def student_step():
        output = student(**batch)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def teacher_forward():
        with torch.no_grad():
            return teacher(**teacher_batch)

    def distill_step():
        teacher_out = teacher_forward()
        output = student(**batch)
        loss = output.loss + distill_terms(
            output.low_level_bev, output.high_level_bev, output.heatmap_logits, output.regression, teacher_out
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with torch.no_grad():
        reference = student(**batch)
    fixed_teacher = teacher_forward()
    leaves = [
        t.detach()
        for t in (reference.low_level_bev, reference.high_level_bev, reference.heatmap_logits, reference.regression)
    ]

    def extras_step(**switches):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        distill_terms(*inputs, fixed_teacher, **switches).backward()

    def balancing_measurement():
        # What loss_balancing="gradient_share" adds once per interval: each term's gradient at the low-level map
        # (paths without adaptive layers, whose student maps the terms take as they are).
        teacher_out = teacher_forward()
        output = student(**batch)
        low, high, heat, reg = output.low_level_bev, output.high_level_bev, output.heatmap_logits, output.regression
        terms = [
            feature_distillation_loss(low, teacher_out.low_level_bev, boxes, mask, bev_range),
            relation_distillation_loss(high, teacher_out.high_level_bev, boxes, mask, bev_range),
            response_distillation_loss(heat, reg, teacher_out.heatmap_logits, teacher_out.regression, boxes, mask,
                                       bev_range),
        ]  # fmt: skip
        gradient_norms([output.loss, *terms], low)

    def timed(fn):
        peak = None
        if sync is not None:
            torch.cuda.reset_peak_memory_stats()
            seconds = median_seconds(fn, repeats=args.repeats, warmup=1, sync=sync)
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            reset = _reset_peak_rss()
            seconds = median_seconds(fn, repeats=args.repeats, warmup=1)
            peak = _peak_rss_gib() if reset else None
        return seconds, peak

    student_s, student_mem = timed(student_step)
    teacher_s, _ = timed(teacher_forward)
    distill_s, distill_mem = timed(distill_step)
    extras_s, _ = timed(extras_step)
    # The study's switches (issue 11), timed the same way; the balancing measurement end to end (forward + the
    # gradient norms, minus a forward), amortised over the default interval of 50 steps.
    switches = {
        "feature_normalization=layer": {"normalize": "layer"},
        "feature_normalization=channel": {"normalize": "channel"},
        "feature_region=foreground": {"region": "foreground"},
        "feature_region=foreground,channel": {"region": "foreground", "normalize": "channel"},
    }
    switch_pct = {}
    for label, switch in switches.items():
        seconds, _ = timed(lambda switch=switch: extras_step(**switch))
        switch_pct[label] = 100.0 * seconds / student_s
    if adaptive is None:
        forward_s, _ = timed(lambda: (teacher_forward(), student(**batch)))
        measure_s, _ = timed(balancing_measurement)
        switch_pct["loss_balancing=gradient_share (per measurement)"] = 100.0 * (measure_s - forward_s) / student_s
        switch_pct["loss_balancing=gradient_share (amortised, interval 50)"] = (
            100.0 * (measure_s - forward_s) / 50 / student_s
        )
    result = {
        "presets": "tiny" if tiny else "paper",
        "student_step_s": student_s,
        "teacher_forward_s": teacher_s,
        "distill_step_s": distill_s,
        "distill_vs_student_time": distill_s / student_s,
        "extras_s": extras_s,
        "extras_pct_of_student_step": 100.0 * extras_s / student_s,
        "beyond_teacher_pct_end_to_end": 100.0 * (distill_s - student_s - teacher_s) / student_s,
        "student_peak_gib": student_mem,
        "distill_peak_gib": distill_mem,
        "peak_memory_kind": "cuda_allocated" if sync is not None else "process_peak_rss",
        "switch_extras_pct_of_student_step": switch_pct,
    }
    print(
        f"{name:24s} student {student_s * 1e3:8.1f} ms  teacher fwd {teacher_s * 1e3:8.1f} ms  "
        f"distill {distill_s * 1e3:8.1f} ms (x{distill_s / student_s:.2f})  extras {extras_s * 1e3:7.2f} ms "
        f"= {result['extras_pct_of_student_step']:.1f}% of the student step"
        + (f"  peak {student_mem:.2f} → {distill_mem:.2f} GiB" if student_mem is not None else "")
    )
    for label, pct in switch_pct.items():
        print(f"{'':24s}   extras with {label}: {pct:.1f}% of the student step")
    return result


def distill_step(args) -> dict:
    """UniDistill step time / memory vs the student alone, and the overhead beyond the teacher forward, per path."""
    paths = ["lidar_to_camera"] if args.quick else list(PATHS)
    with tempfile.TemporaryDirectory() as tmp:
        return {name: _benchmark_path(name, args, Path(tmp)) for name in paths}


ENTRIES = {"distill_step": distill_step}

"""BEV detector benchmarks: training step time / peak memory per modality, and BEV pooling speed.

    python scripts/benchmark.py bev_train_step bev_pooling [--quick] [--device cuda]

`bev_train_step`: forward + backward + AdamW step of the tiny presets on hand-built contract batches (CPU, each
modality in its own process so the peak RSS is its own), then (without `--quick`) the small quality presets at
batch 4, including the small LiDAR preset with five regression branches per task as the baseline of the shared
branch; with `--device cuda` also the paper-size presets at batch 1 (the paper's Table 17 setting: 6 cameras at
256 × 704, 10-sweep point clouds).
`bev_pooling`: our sparse-matrix pooling vs the materialised depth ⊗ context + `index_add_` baseline at the
paper shapes (6 cameras × 112 bins × 16 × 44 pixels, C = 256, 180 × 180 cells), forward and forward + backward.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "lidar_voxel": "bev_lidar_nuscenes_tiny",
    "lidar_pillar": "bev_lidar_pillar_nuscenes_tiny",
    "camera": "bev_camera_nuscenes_tiny",
    "fusion": "bev_fusion_nuscenes_tiny",
}
PAPER = {"lidar_voxel": "bev_lidar_nuscenes", "camera": "bev_camera_nuscenes", "fusion": "bev_fusion_nuscenes"}
# The quality presets of docs/RESULTS.md (0.8 m cells, 128 × 128), and the small LiDAR preset with CenterPoint's five
# separate regression branches per task (the baseline of `shared_regression_branch`), measured in the same run.
SMALL = {
    "lidar_pillar": ("bev_lidar_pillar_nuscenes_small", {}),
    "lidar_pillar_separate_branches": ("bev_lidar_pillar_nuscenes_small", {"shared_regression_branch": False}),
    "camera_depth": ("bev_camera_depth_nuscenes_small", {}),
    "fusion_pillar": ("bev_fusion_pillar_nuscenes_small", {}),
}


def _ring_cameras(torch, batch: int, num_cams: int, height: int, width: int) -> dict:
    """Outward-looking pinhole cameras around the ego (camera z forward, x right, y down)."""
    focal = 0.8 * width
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    extrinsics = []
    for i in range(num_cams):
        yaw = 2 * math.pi * i / num_cams
        c, s = math.cos(yaw), math.sin(yaw)
        m = torch.eye(4)
        m[:3, 0] = torch.tensor([s, -c, 0.0])
        m[:3, 1] = torch.tensor([0.0, 0.0, -1.0])
        m[:3, 2] = torch.tensor([c, s, 0.0])
        m[:3, 3] = torch.tensor([0.5 * c, 0.5 * s, 1.6])
        extrinsics.append(m)
    return {
        "intrinsics": intrinsics.expand(batch, num_cams, 3, 3).clone(),
        "camera_to_lidar": torch.stack(extrinsics).expand(batch, num_cams, 4, 4).clone(),
        "image_aug_matrix": torch.eye(3).expand(batch, num_cams, 3, 3).clone(),
    }


def _contract_batch(torch, config, batch: int, points_per_sample: int, device: str) -> dict:
    """Random points (ground plane + objects), 6 ring cameras, 20 boxes per sample."""
    gen = torch.Generator().manual_seed(0)

    def z_objects(generator):
        return torch.rand(points_per_sample, generator=generator) * 1.8 - 1.8

    x_min, y_min, _, x_max, y_max, _ = config.point_cloud_range
    out: dict = {"bev_aug_matrix": torch.eye(4).expand(batch, 4, 4).clone()}
    if "lidar" in config.modalities or getattr(config, "depth_loss_weight", 0.0) > 0:  # depth targets need points
        clouds = []
        for b in range(batch):
            radius = torch.rand(points_per_sample, generator=gen).sqrt() * 0.95 * x_max
            angle = torch.rand(points_per_sample, generator=gen) * 2 * math.pi
            # LiDAR-like: most returns on the ground plane, the rest on objects up to 1 m above it.
            on_ground = torch.rand(points_per_sample, generator=gen) < 0.7
            z = torch.where(on_ground, -1.8 + 0.05 * torch.randn(points_per_sample, generator=gen), z_objects(gen))
            extra = torch.rand(points_per_sample, 2, generator=gen) * torch.tensor([1.0, 0.5])
            xyz = torch.stack([radius * angle.cos(), radius * angle.sin(), z], 1)
            clouds.append(torch.cat([torch.full((points_per_sample, 1), float(b)), xyz, extra], 1))
        out["points"] = torch.cat(clouds)
    if "camera" in config.modalities:
        height, width = config.image_size
        out["images"] = torch.rand(batch, 6, 3, height, width, generator=gen)
        out.update(_ring_cameras(torch, batch, 6, height, width))
    boxes = torch.zeros(batch, 20, 9)
    boxes[..., 0] = torch.rand(batch, 20, generator=gen) * (x_max - x_min) * 0.8 + x_min * 0.8
    boxes[..., 1] = torch.rand(batch, 20, generator=gen) * (y_max - y_min) * 0.8 + y_min * 0.8
    boxes[..., 3:6] = torch.rand(batch, 20, 3, generator=gen) * 3 + 0.5
    out["gt_boxes"] = boxes
    out["gt_labels"] = torch.randint(0, config.num_classes, (batch, 20), generator=gen)
    out["gt_mask"] = torch.ones(batch, 20, dtype=torch.bool)
    return {k: v.to(device) for k, v in out.items()}


def _rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB; NaN elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0), so the peak is the training steps' own.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _train_step_worker(
    preset: str, overrides: dict, batch: int, points: int, device: str, repeats: int, queue
) -> None:
    import torch

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from benchmarks._timing import median_seconds
    from hf_crossdistill.models.bev_detector import BEVDetectorForObjectDetection
    from hf_crossdistill.presets import resolve_config

    config = resolve_config(preset, **overrides)
    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = _contract_batch(torch, config, batch, points, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    rss_before = _rss_mib("VmRSS")
    _reset_peak_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = median_seconds(step, repeats=repeats, warmup=1, sync=sync)
    result = {
        "preset": preset,
        "overrides": overrides,
        "batch": batch,
        "points_per_sample": points if "points" in inputs else 0,
        "step_s": seconds,
        "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6,
    }
    if device.startswith("cuda"):
        result["peak_memory_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_rss_MiB"] = _rss_mib("VmHWM")
        result["rss_before_steps_MiB"] = rss_before
    queue.put(result)


def _run_isolated(*args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_train_step_worker, args=(*args, queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark worker for {args[0]} failed with exit code {process.exitcode}")
    return queue.get()


def bev_train_step(args) -> dict:
    """Training step time and peak memory per modality (tiny on CPU; paper-size at batch 1 on CUDA)."""
    repeats = 2 if args.quick else args.repeats
    results = {}
    print(f"{'preset':34s} {'batch':>5s} {'points':>7s} {'step s':>8s} {'peak MiB':>9s} {'params M':>9s}")
    points = 4000 if args.quick else 25000
    runs = [("tiny", name, preset, {}, 2, points, "cpu") for name, preset in TINY.items()]
    if not args.quick:
        runs += [("small", name, preset, overrides, 4, 40000, "cpu") for name, (preset, overrides) in SMALL.items()]
    if args.device.startswith("cuda"):
        runs += [("paper", name, preset, {}, 1, 250000, args.device) for name, preset in PAPER.items()]
    for size, name, preset, overrides, batch, points, device in runs:
        r = _run_isolated(preset, overrides, batch, points, device, repeats)
        peak = r.get("peak_memory_MiB", r.get("peak_rss_MiB"))
        figures = f"{r['points_per_sample']:7d} {r['step_s']:8.3f} {peak:9.0f} {r['parameters_M']:9.2f}"
        label = preset + (" (separate branches)" if overrides else "")
        print(f"{label:34s} {batch:5d} {figures}")
        results[f"{size}_{name}_{device.split(':')[0]}"] = r
    base = results.get("tiny_lidar_voxel_cpu")
    if base:
        for key, r in results.items():
            if key.startswith("tiny"):
                r["step_vs_tiny_lidar_voxel"] = r["step_s"] / base["step_s"]
    separate, shared = results.get("small_lidar_pillar_separate_branches_cpu"), results.get("small_lidar_pillar_cpu")
    if separate and shared:
        shared["speedup_vs_separate_branches"] = separate["step_s"] / shared["step_s"]
        print(f"shared regression branch: ×{shared['speedup_vs_separate_branches']:.2f} vs five branches per task")
    return results


def bev_pooling(args) -> dict:
    """Sparse-matrix BEV pooling vs the materialised depth ⊗ context baseline at the paper's shapes."""
    import torch

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from benchmarks._timing import median_seconds
    from hf_crossdistill.models.bev_detector.camera_encoder import (
        bev_pool,
        bev_pool_reference,
        frustum_cells,
        frustum_points,
    )

    device = args.device
    num_cams, bins, h, w, channels, grid = (6, 112, 16, 44, 256, 180) if not args.quick else (6, 40, 8, 22, 64, 90)
    cams = _ring_cameras(torch, 1, num_cams, h * 16, w * 16)
    depths = 2.0 + 0.5 * torch.arange(bins, dtype=torch.float32)
    cell = 108.0 / grid
    points = frustum_points(
        (h, w),
        (h * 16, w * 16),
        depths,
        cams["intrinsics"],
        cams["image_aug_matrix"],
        cams["camera_to_lidar"],
        torch.eye(4)[None],
    )
    cells, valid = frustum_cells(points, [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], cell, (grid, grid))
    gen = torch.Generator().manual_seed(0)
    pixels = num_cams * h * w
    depth = torch.randn(pixels, bins, generator=gen).softmax(-1).to(device).requires_grad_()
    context = torch.randn(pixels, channels, generator=gen).to(device).requires_grad_()
    cells = cells.reshape(pixels, bins).to(device)
    valid = valid.reshape(pixels, bins).to(device)
    num_cells = grid * grid
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    weights = torch.randn(num_cells, channels, generator=gen).to(device)

    def forward(fn):
        with torch.no_grad():
            fn(depth, context, cells, valid, num_cells)

    def forward_backward(fn):
        out = fn(depth, context, cells, valid, num_cells)
        torch.autograd.grad((out * weights).sum(), (depth, context))

    with torch.no_grad():
        ours_out = bev_pool(depth, context, cells, valid, num_cells)
        err = ours_out - bev_pool_reference(depth, context, cells, valid, num_cells)
    result = {
        "shape": {"cameras": num_cams, "depth_bins": bins, "feature_hw": [h, w], "channels": channels, "grid": grid},
        "inside_fraction": float(valid.float().mean()),
        "max_abs_difference": float(err.abs().max()),
        "device": device,
    }
    for mode, runner in (("forward", forward), ("forward_backward", forward_backward)):
        ours = median_seconds(lambda r=runner: r(bev_pool), repeats=args.repeats, sync=sync)
        baseline = median_seconds(lambda r=runner: r(bev_pool_reference), repeats=args.repeats, sync=sync)
        result[mode] = {"sparse_s": ours, "materialised_s": baseline, "speedup": baseline / ours}
        times = f"sparse {ours * 1e3:8.1f} ms   materialised {baseline * 1e3:8.1f} ms"
        print(f"bev_pool {mode:17s} {times}   ×{baseline / ours:.1f}")
    print(f"inside fraction {result['inside_fraction']:.2f}, max |difference| {result['max_abs_difference']:.2e}")
    return result


ENTRIES = {"bev_train_step": bev_train_step, "bev_pooling": bev_pooling}

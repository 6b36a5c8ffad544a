"""BEV detector configuration: one config for the LiDAR, camera and fusion detectors of UniDistill."""

from __future__ import annotations

import math
from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ...data.nuscenes import NUSCENES_CLASSES

# CenterPoint's nuScenes task split: classes that share a heatmap head (similar size and shape).
DEFAULT_TASKS = (
    ("car",),
    ("truck", "construction_vehicle"),
    ("bus", "trailer"),
    ("barrier",),
    ("motorcycle", "bicycle"),
    ("pedestrian", "traffic_cone"),
)
# CenterPoint's nuScenes circle-NMS radii (metres) per default task.
DEFAULT_NMS_RADII = (4.0, 12.0, 10.0, 1.0, 0.85, 0.175)

_MODALITIES = ("lidar", "camera")
_LIDAR_ENCODERS = ("voxel", "pillar")

# Regression channels per task: offset 2, height 1, log-dim 3, sin/cos 2, velocity 2.
REGRESSION_CHANNELS = 10


def _default_image_backbone() -> dict:
    # ResNet-50 (the transformers default ResNetConfig) tapped at strides 16 and 32, as in BEVDet.
    return {"model_type": "resnet", "out_features": ["stage3", "stage4"]}


@strict
class BEVDetectorConfig(PreTrainedConfig):
    r"""
    Configuration of a UniDistill BEV detector (`BEVDetectorModel` / `BEVDetectorForObjectDetection`).

    The same class describes the LiDAR (CenterPoint-Voxel or PointPillars-style), camera (BEVDet / LSS) and
    fusion (BEVFusion-style) detectors; all of them produce BEV maps on the same grid with the same channel
    counts, so any detector can teach any other. The BEV grid has `H = W = (range / voxel) / out_size_factor`
    cells; row = y, col = x.

    Args:
        modalities (`list[str]`, defaults to `["lidar"]`):
            `["lidar"]`, `["camera"]` or `["lidar", "camera"]` (fusion).
        class_names (`list[str]`, *optional*):
            Detection classes; label `i` is `class_names[i]`. Defaults to `NUSCENES_CLASSES`.
        tasks (`list[list[str]]`, *optional*):
            Classes grouped into heatmap heads; concatenated in order they must equal `class_names`.
            Defaults to CenterPoint's 6 nuScenes tasks.
        point_cloud_range (`list[float]`): `[x_min, y_min, z_min, x_max, y_max, z_max]` in metres.
        voxel_size (`list[float]`): voxel size `[dx, dy, dz]` in metres.
        out_size_factor (`int`): BEV cell size / voxel size (the LiDAR encoder's total stride).
        low_bev_channels (`int`): channels of the encoder / fuser output (low-level BEV).
        high_bev_channels (`int`): channels of the BEV backbone output (high-level BEV).
        lidar_encoder (`str`): `"voxel"` (spconv voxelisation + sparse 3D ResNet) or `"pillar"` (dense).
        num_point_features (`int`): features per point after the batch index: x, y, z, intensity, Δt.
        num_sweeps (`int`): LiDAR sweeps the data pipeline aggregates (metadata for the data pipeline).
        max_points_per_voxel (`int`), max_voxels (`int`): voxelisation limits per sample.
        sparse_channels (`list[int]`): sparse 3D ResNet stage widths; `len - 1` stride-2 stages.
        sparse_blocks (`list[int]`): residual blocks per sparse stage.
        pillar_channels (`int`): point-feature width of the pillar encoder.
        pillar_upsample (`int`): pillars per BEV cell along each axis (1 or 2).
        image_backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Backbone config for `AutoBackbone` (any transformers backbone); defaults to ResNet-50 tapped at
            `stage3` and `stage4`.
        image_size (`list[int]`): network input `[H, W]` (metadata for the data pipeline; the model reads
            the actual size from its input).
        image_mean, image_std (`list[float]`): RGB normalisation applied to `images` in [0, 1].
        neck_channels (`int`): FPN-style neck output channels.
        depth_bins (`list[float]`): `[d_min, d_max, step]` in metres; `D = round((d_max - d_min) / step)`.
        depth_loss_weight (`float`): weight of a BEVDepth-style cross-entropy of the depth distribution against
            the nearest LiDAR point of each depth-map cell (training batches then need `points`); 0 = BEVDet,
            as in the paper.
        bev_backbone_layers, bev_backbone_strides, bev_backbone_channels (`list[int]`): SECOND levels.
        bev_upsample_strides, bev_upsample_channels (`list[int]`): deconvs back to stride 1; their channels
            sum to `high_bev_channels`.
        head_channels (`int`): width of the CenterPoint head's shared and branch convs.
        shared_regression_branch (`bool`): one regression branch (10 outputs) per task instead of CenterPoint's
            five (offset, height, size, heading, velocity); a third of the head's cost, for small presets.
        min_overlap (`float`), min_radius (`int`): Gaussian heatmap target radius parameters.
        code_weights (`list[float]`): L1 weights of the 10 regression channels.
        heatmap_loss_weight, bbox_loss_weight (`float`): weights of the focal and L1 terms.
        max_objects (`int`): boxes kept per sample by decoding (top-K per task).
        score_threshold (`float`), nms_radii (`list[float]`, one per task, metres), post_max_size (`int`):
            decoding parameters (circle NMS; a radius ≤ 0 disables NMS for that task).
    """

    model_type: ClassVar[str] = "bev_detector"
    sub_configs_defaults = {
        "image_backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet", optional=True),
    }

    modalities: list[str] | tuple[str, ...] = ("lidar",)
    class_names: list[str] | tuple[str, ...] | None = None
    tasks: list[list[str]] | None = None

    point_cloud_range: list[float] | tuple[float, ...] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
    voxel_size: list[float] | tuple[float, ...] = (0.075, 0.075, 0.2)
    out_size_factor: int = 8
    low_bev_channels: int = 256
    high_bev_channels: int = 512

    lidar_encoder: str = "voxel"
    num_point_features: int = 5
    num_sweeps: int = 10
    max_points_per_voxel: int = 10
    max_voxels: int = 120000
    sparse_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    sparse_blocks: list[int] | tuple[int, ...] = (1, 2, 2, 2)
    pillar_channels: int = 64
    pillar_upsample: int = 1

    image_backbone_config: dict | PreTrainedConfig | None = None
    image_size: list[int] | tuple[int, ...] = (256, 704)
    image_mean: list[float] | tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: list[float] | tuple[float, ...] = (0.229, 0.224, 0.225)
    neck_channels: int = 512
    depth_bins: list[float] | tuple[float, ...] = (2.0, 58.0, 0.5)
    depth_loss_weight: float = 0.0

    bev_backbone_layers: list[int] | tuple[int, ...] = (5, 5)
    bev_backbone_strides: list[int] | tuple[int, ...] = (1, 2)
    bev_backbone_channels: list[int] | tuple[int, ...] = (128, 256)
    bev_upsample_strides: list[int] | tuple[int, ...] = (1, 2)
    bev_upsample_channels: list[int] | tuple[int, ...] = (256, 256)

    head_channels: int = 64
    shared_regression_branch: bool = False
    min_overlap: float = 0.1
    min_radius: int = 2
    code_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    heatmap_loss_weight: float = 1.0
    bbox_loss_weight: float = 0.25
    max_objects: int = 500
    score_threshold: float = 0.1
    nms_radii: list[float] | tuple[float, ...] | None = None
    post_max_size: int = 83
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # Lists, not tuples: the JSON round trip must give back an equal config.
        self.modalities = list(self.modalities)
        self.class_names = list(NUSCENES_CLASSES if self.class_names is None else self.class_names)
        if self.tasks is None:
            if self.class_names != list(NUSCENES_CLASSES):
                raise ValueError("BEVDetectorConfig: `tasks` must be given when `class_names` is not NUSCENES_CLASSES")
            self.tasks = [list(t) for t in DEFAULT_TASKS]
        self.tasks = [list(t) for t in self.tasks]
        if self.nms_radii is None:
            self.nms_radii = list(DEFAULT_NMS_RADII) if len(self.tasks) == len(DEFAULT_NMS_RADII) else None
            if self.nms_radii is None:
                raise ValueError("BEVDetectorConfig: `nms_radii` (one per task) must be given for custom tasks")
        for name in (
            "point_cloud_range",
            "voxel_size",
            "sparse_channels",
            "sparse_blocks",
            "image_size",
            "image_mean",
            "image_std",
            "depth_bins",
            "bev_backbone_layers",
            "bev_backbone_strides",
            "bev_backbone_channels",
            "bev_upsample_strides",
            "bev_upsample_channels",
            "code_weights",
            "nms_radii",
        ):
            setattr(self, name, list(getattr(self, name)))
        self.point_cloud_range = [float(v) for v in self.point_cloud_range]
        self.voxel_size = [float(v) for v in self.voxel_size]
        self.depth_bins = [float(v) for v in self.depth_bins]
        if "camera" in self.modalities and self.image_backbone_config is None:
            self.image_backbone_config = _default_image_backbone()
        # The transformers label maps always mirror class_names (label i is class_names[i]).
        self.id2label = dict(enumerate(self.class_names))
        self.label2id = {name: i for i, name in enumerate(self.class_names)}
        super().__post_init__(**kwargs)
        self._check_consistency()

    # ----------------------------------------------------------------------------------------------------------
    # Derived geometry
    # ----------------------------------------------------------------------------------------------------------

    @property
    def voxel_grid_shape(self) -> tuple[int, int, int]:
        """Sparse voxel grid `(Z, Y, X)`."""
        r, v = self.point_cloud_range, self.voxel_size
        return tuple(int(round((r[i + 3] - r[i]) / v[i])) for i in (2, 1, 0))

    @property
    def bev_shape(self) -> tuple[int, int]:
        """BEV map `(H, W)` = (rows along y, cols along x)."""
        _, y, x = self.voxel_grid_shape
        return y // self.out_size_factor, x // self.out_size_factor

    @property
    def bev_cell_size(self) -> float:
        """BEV cell edge in metres."""
        return self.voxel_size[0] * self.out_size_factor

    @property
    def bev_range(self) -> tuple[float, float, float, float]:
        """`(x_min, y_min, x_max, y_max)` of the BEV map."""
        r = self.point_cloud_range
        return (r[0], r[1], r[3], r[4])

    @property
    def num_depth_bins(self) -> int:
        d_min, d_max, step = self.depth_bins
        return int(round((d_max - d_min) / step))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sparse_output_depth(self) -> int:
        """Height cells left after the sparse backbone's strided stages and the (3, 1, 1)/2 compression conv."""
        z = self.voxel_grid_shape[0]
        for _ in range(len(self.sparse_channels) - 1):
            z = (z + 2 - 3) // 2 + 1
        return (z - 3) // 2 + 1 if z >= 3 else 1

    # ----------------------------------------------------------------------------------------------------------
    # Validation
    # ----------------------------------------------------------------------------------------------------------

    def _check_consistency(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"BEVDetectorConfig: {msg}")

        if not self.modalities or any(m not in _MODALITIES for m in self.modalities):
            fail(f"modalities must be a non-empty subset of {list(_MODALITIES)}, got {self.modalities}")
        if len(set(self.modalities)) != len(self.modalities):
            fail(f"modalities has duplicates: {self.modalities}")
        if self.lidar_encoder not in _LIDAR_ENCODERS:
            fail(f"lidar_encoder must be one of {list(_LIDAR_ENCODERS)}, got {self.lidar_encoder!r}")
        if "camera" in self.modalities and self.image_backbone_config is None:
            fail("a camera detector needs image_backbone_config")

        r, v = self.point_cloud_range, self.voxel_size
        if len(r) != 6 or len(v) != 3:
            fail(f"point_cloud_range needs 6 values and voxel_size 3, got {len(r)} and {len(v)}")
        if any(r[i + 3] <= r[i] for i in range(3)):
            fail(f"point_cloud_range {r} must have max > min on every axis")
        if any(s <= 0 for s in v):
            fail(f"voxel_size {v} must be positive")
        for i, axis in enumerate("xyz"):
            cells = (r[i + 3] - r[i]) / v[i]
            if abs(cells - round(cells)) > 1e-4:
                fail(
                    f"point_cloud_range extent along {axis} ({r[i + 3] - r[i]} m) is not a multiple of "
                    f"voxel_size {v[i]}"
                )
        if abs(v[0] - v[1]) > 1e-9:
            fail(f"BEV cells must be square: voxel_size x {v[0]} != y {v[1]}")
        if self.out_size_factor < 1:
            fail(f"out_size_factor must be ≥ 1, got {self.out_size_factor}")
        _, gy, gx = self.voxel_grid_shape
        if gx % self.out_size_factor or gy % self.out_size_factor:
            fail(f"voxel grid {gx}×{gy} (x×y) is not divisible by out_size_factor {self.out_size_factor}")

        if self.lidar_encoder == "voxel" and "lidar" in self.modalities:
            if len(self.sparse_channels) != len(self.sparse_blocks) or not self.sparse_channels:
                fail(f"sparse_channels {self.sparse_channels} and sparse_blocks {self.sparse_blocks} differ in length")
            stride = 2 ** (len(self.sparse_channels) - 1)
            if stride != self.out_size_factor:
                fail(
                    f"the sparse backbone downsamples by {stride} (2 ** (len(sparse_channels) - 1)) but "
                    f"out_size_factor is {self.out_size_factor}"
                )
            lidar_out = self.sparse_channels[-1] * self.sparse_output_depth
            if lidar_out != self.low_bev_channels:
                fail(
                    f"height compression gives {self.sparse_channels[-1]} × {self.sparse_output_depth} = {lidar_out} "
                    f"channels but low_bev_channels is {self.low_bev_channels}"
                )
        if self.lidar_encoder == "pillar" and "lidar" in self.modalities and self.pillar_upsample not in (1, 2):
            fail(f"pillar_upsample must be 1 or 2, got {self.pillar_upsample}")

        if "camera" in self.modalities:
            d_min, d_max, step = self.depth_bins
            if not (0 < d_min < d_max and step > 0):
                fail(f"depth_bins [d_min, d_max, step] = {self.depth_bins} must have 0 < d_min < d_max, step > 0")
            if abs((d_max - d_min) / step - self.num_depth_bins) > 1e-4:
                fail(f"depth_bins range {d_max - d_min} m is not a multiple of step {step}")
            if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s <= 0 for s in self.image_std):
                fail("image_mean / image_std need 3 values each, std positive")
            if not (math.isfinite(self.depth_loss_weight) and self.depth_loss_weight >= 0):
                fail(f"depth_loss_weight must be finite and ≥ 0, got {self.depth_loss_weight}")
            if len(self.image_size) != 2:
                fail(f"image_size must be [H, W], got {self.image_size}")

        levels = len(self.bev_backbone_layers)
        lists = (self.bev_backbone_strides, self.bev_backbone_channels, self.bev_upsample_strides)
        if levels == 0 or any(len(x) != levels for x in (*lists, self.bev_upsample_channels)):
            fail("bev_backbone_layers/strides/channels and bev_upsample_strides/channels must have equal lengths")
        total = 1
        for stride, up in zip(self.bev_backbone_strides, self.bev_upsample_strides):
            total *= stride
            if total != up:
                fail(
                    f"BEV backbone level at cumulative stride {total} is upsampled by {up}: every level must come "
                    "back to stride 1 (bev_upsample_strides = cumulative bev_backbone_strides)"
                )
        h, w = self.bev_shape
        if h % total or w % total:
            fail(f"BEV map {h}×{w} is not divisible by the BEV backbone stride {total}")
        if sum(self.bev_upsample_channels) != self.high_bev_channels:
            fail(
                f"bev_upsample_channels {self.bev_upsample_channels} sum to {sum(self.bev_upsample_channels)} but "
                f"high_bev_channels is {self.high_bev_channels}"
            )

        flat = [c for task in self.tasks for c in task]
        if flat != list(self.class_names):
            fail(f"tasks {self.tasks} concatenated must equal class_names {self.class_names} (same order)")
        if len(self.nms_radii) != len(self.tasks):
            fail(f"nms_radii has {len(self.nms_radii)} values for {len(self.tasks)} tasks")
        if len(self.code_weights) != REGRESSION_CHANNELS:
            fail(f"code_weights needs {REGRESSION_CHANNELS} values, got {len(self.code_weights)}")
        if not isinstance(self.shared_regression_branch, bool):
            fail(f"shared_regression_branch must be true or false, got {self.shared_regression_branch!r}")
        if not 0 < self.min_overlap < 1:
            fail(f"min_overlap must be in (0, 1), got {self.min_overlap}")
        if self.min_radius < 0 or self.max_objects < 1 or self.post_max_size < 1:
            fail("min_radius must be ≥ 0, max_objects and post_max_size ≥ 1")
        if not math.isfinite(self.score_threshold):
            fail(f"score_threshold must be finite, got {self.score_threshold}")


__all__ = ["BEVDetectorConfig"]

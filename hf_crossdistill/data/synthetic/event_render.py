"""A procedural driving world, ray cast per pixel (numpy, vectorised over pixels): radiance and labels.

The world is a road along +z (y up, x to the right) with sidewalks and grass verges, facades on both sides
(buildings, walls, fences, hedges), a back row of taller buildings, poles with traffic signs and street lamps,
trees, pedestrians walking on the sidewalks, parked cars, cars driving in both lanes, and optional tunnels.
Everything except the ground is an axis-aligned textured rectangle (optionally masked to a shape: ellipse,
person, fence slats, car profile), intersected exactly with each pixel's ray inside its projected bounding box,
with a depth buffer. Radiance is high-dynamic-range and linear: a day sky is ~10x a lit wall and the sun disc
thousands of times; tunnels are lit at a few percent of daylight; at night lamps, lit windows and car lights emit.

Labels are the 11 DSEC-Semantic classes (`DSEC_CLASSES`); `DSEC_TO_DDD17` groups them into the 6 DDD17 classes
of Ev-SegNet, so both label sets come from the same rendering.

A frame is a bit-exact function of (scene, time, size) in any process and at any thread count: the 3-vector products
are spelled out elementwise (no BLAS, whose kernels and threading are outside our control) and `arctan2`, the one
transcendental fed strided views, goes through `_fixed_loop` (see there). The event simulator turns last-bit radiance
differences into 1 µs timestamp differences, so this matters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DDD17_CLASSES",
    "DSEC_CLASSES",
    "DSEC_TO_DDD17",
    "DrivingScene",
    "DrivingStyle",
    "SOURCE_STYLE",
    "TARGET_STYLE",
    "make_driving_scene",
    "render_driving_frame",
]

DSEC_CLASSES = (
    "background", "building", "fence", "person", "pole", "road", "sidewalk", "vegetation", "car", "wall",
    "traffic sign",
)  # fmt: skip
DDD17_CLASSES = ("flat", "construction+sky", "object", "nature", "human", "vehicle")
# background (sky) / building / fence / wall -> construction+sky; road / sidewalk -> flat; pole / sign -> object.
DSEC_TO_DDD17 = np.array([1, 1, 1, 4, 2, 0, 0, 3, 5, 1, 2], dtype=np.uint8)

BACKGROUND, BUILDING, FENCE, PERSON, POLE, ROAD, SIDEWALK, VEGETATION, CAR, WALL, SIGN = range(11)

# rectangle shapes
_RECT, _ELLIPSE, _PERSON, _SLATS, _CAR = range(5)
# rectangle textures
_T_PLAIN, _T_WINDOWS, _T_LEAVES, _T_CAR, _T_SIGN, _T_LAMP, _T_CEILING = range(7)


@dataclass(frozen=True)
class DrivingStyle:
    """How a world looks: camera, colours, texture scale. Two styles make the unpaired source / target domains.

    Attributes:
        camera_height: metres above the road.
        focal_scale: focal length in units of the image width.
        palette: (11, 3) linear RGB albedo per DSEC class.
        texture_scale: multiplies every texture frequency (finer or coarser patterns).
        texture_contrast: amplitude of the albedo textures (0 = flat colours).
    """

    camera_height: float = 1.3
    focal_scale: float = 0.75
    palette: tuple = (
        (0.55, 0.65, 0.85), (0.45, 0.40, 0.35), (0.50, 0.45, 0.35), (0.35, 0.25, 0.45), (0.40, 0.40, 0.42),
        (0.16, 0.16, 0.17), (0.45, 0.43, 0.40), (0.12, 0.28, 0.10), (0.45, 0.10, 0.10), (0.50, 0.50, 0.48),
        (0.75, 0.70, 0.20),
    )  # fmt: skip
    texture_scale: float = 1.0
    texture_contrast: float = 0.15


TARGET_STYLE = DrivingStyle()
# A different "camera and city": higher mount, longer lens, saturated paint, finer textures.
SOURCE_STYLE = DrivingStyle(
    camera_height=1.8,
    focal_scale=0.95,
    palette=(
        (0.35, 0.55, 0.95),
        (0.65, 0.35, 0.25),
        (0.60, 0.60, 0.62),
        (0.85, 0.55, 0.15),
        (0.20, 0.20, 0.25),
        (0.30, 0.28, 0.32),
        (0.70, 0.60, 0.55),
        (0.25, 0.55, 0.15),
        (0.15, 0.25, 0.75),
        (0.75, 0.72, 0.60),
        (0.10, 0.35, 0.80),
    ),  # fmt: skip
    texture_scale=1.8,
    texture_contrast=0.25,
)


@dataclass
class DrivingScene:
    """The static and moving geometry of one recording (see `make_driving_scene`)."""

    rects: dict[str, np.ndarray]  # one array per attribute, length R
    road_half_width: float
    sidewalk_width: float
    tunnels: np.ndarray  # (K, 2) z ranges
    tunnel_height: float
    night: bool
    speed: float  # camera m/s
    lane_x: float
    sun_direction: np.ndarray
    seed: int
    style: DrivingStyle = field(default_factory=DrivingStyle)

    def camera_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera centre (3,) and rotation (3, 3) (columns: camera x, y, z axes in the world) at time t."""
        ph = self.seed * 0.37
        z = self.speed * t_s + 1.5 * np.sin(0.4 * t_s + ph)  # speed varies a little
        x = self.lane_x + 0.25 * np.sin(0.7 * t_s + ph)
        y = self.style.camera_height + 0.02 * np.sin(9.0 * t_s + 2 * ph)  # road bumps
        yaw = 0.03 * np.sin(0.5 * t_s + 3 * ph)
        pitch = 0.005 * np.sin(7.0 * t_s + ph) - 0.02
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        # r_yaw @ r_pitch with r_yaw = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], r_pitch = [[1, 0, 0], [0, cp, -sp],
        # [0, sp, cp]], multiplied out: every entry is a single product, so no summation order is involved.
        rot = np.array([[cy, sy * sp, sy * cp], [0.0, cp, -sp], [-sy, cy * sp, cy * cp]])
        return np.array([x, y, z]), rot


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3) · (..., 3) -> (...): dot products over the last axis, summed left to right (no BLAS)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _rotate(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(..., 3) vectors `v` -> (..., 3) `m @ v` for each, for a (3, 3) `m`; summed left to right (no BLAS)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]  # (...,) each; one component at a time is ~10x faster than broadcasting
    return np.stack([x * m[i, 0] + y * m[i, 1] + z * m[i, 2] for i in range(3)], -1)


def _fixed_loop(ufunc: np.ufunc, *inputs: np.ndarray) -> np.ndarray:
    """`ufunc(*inputs)` evaluated so that numpy runs the same inner loop in every process (bit-reproducible).

    numpy (1.x) runs its SIMD (SVML) loop for `arctan2`, `power`, `log`, ... only when no input's memory range
    touches the output's (`nomemoverlap` counts touching ends as overlap) and the scalar libm loop otherwise; the two
    differ in the last bit. The range of a strided view like `rays[..., 2]` ends past its buffer, so whether a fresh
    output lands right there depends on the heap of the process: the same call gave different bits in a pytest
    process and a plain one. Here input k is copied to row 2k of one buffer (a spare row between any two) and the
    result overwrites row 0: input 0 and the output share their range exactly, the others are a row away.
    """
    shape = np.broadcast_shapes(*(np.shape(x) for x in inputs))
    buf = np.empty((2 * len(inputs) - 1, *shape), dtype=np.result_type(*inputs))  # (2K - 1, *shape)
    for k, x in enumerate(inputs):
        buf[2 * k] = x
    return ufunc(*buf[::2], out=buf[0])


def _hash(*ints) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer grid cell."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around multiplication is the point of the hash
        return _mix(h, ints)


def _mix(h: np.ndarray, ints) -> np.ndarray:
    for k, v in enumerate(ints):
        h ^= (np.asarray(v).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15 + k)) * np.uint64(
            0xBF58476D1CE4E5B9
        )
        h ^= h >> np.uint64(31)
    return (h % np.uint64(1 << 20)).astype(np.float64) / float(1 << 20)


def _noise(a: np.ndarray, b: np.ndarray, phase: float | np.ndarray, freq: float) -> np.ndarray:
    """Band-limited pseudo-noise in [-1, 1] from a few sine products (cheap, smooth, seedable by phase)."""
    f = freq
    return (
        0.5 * np.sin(1.7 * f * a + 3.1 * phase) * np.sin(2.3 * f * b + 1.3 * phase)
        + 0.3 * np.sin(5.3 * f * a - 2.1 * f * b + phase)
        + 0.2 * np.sin(11.9 * f * a + 7.7 * f * b + 2.0 * phase)
    )


def make_driving_scene(
    seed: int,
    duration_s: float,
    *,
    style: DrivingStyle = TARGET_STYLE,
    night: bool | None = None,
    tunnel: bool | None = None,
    speed: float | None = None,
) -> DrivingScene:
    """Lay out a road and everything around it for a drive of `duration_s` seconds (deterministic by seed)."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    rng = np.random.default_rng(seed)
    speed = float(rng.uniform(6.0, 12.0) if speed is None else speed)
    night = bool(rng.random() < 0.25) if night is None else night
    tunnel = bool(rng.random() < 0.35) if tunnel is None else tunnel
    road_half, sidewalk = float(rng.uniform(3.2, 4.5)), float(rng.uniform(1.5, 3.0))
    z_end = speed * duration_s + 140.0
    curb = road_half + sidewalk
    rows: list[tuple] = []  # (axis, c, a0, a1, b0, b1, vz, label, shape, texture, albedo, phase)

    def add(axis, c, a0, a1, b0, b1, label, shape=_RECT, texture=_T_PLAIN, vz=0.0, albedo=1.0):
        rows.append((axis, c, a0, a1, b0, b1, vz, label, shape, texture, albedo, rng.uniform(0, 100)))

    # The very first segments start behind the camera so the view is never empty.
    tunnels = []
    if tunnel:
        z0 = float(rng.uniform(0.25, 0.6) * speed * duration_s + 25.0)
        tunnels.append((z0, z0 + float(rng.uniform(40, 120))))
    tunnels_arr = np.array(tunnels, dtype=np.float64).reshape(-1, 2)
    tunnel_h = 5.5

    def in_tunnel(z0, z1):
        return any(z1 > a and z0 < b for a, b in tunnels)

    for side in (-1.0, 1.0):
        z = -30.0
        while z < z_end:
            length = float(rng.uniform(8, 30))
            gap = float(rng.uniform(0, 6)) if rng.random() < 0.5 else 0.0
            z0, z1 = z, z + length
            z = z1 + gap
            if in_tunnel(z0 - 5, z1 + 5):
                continue
            x = side * (curb + rng.uniform(0.5, 3.0))
            kind = rng.choice(4, p=[0.5, 0.15, 0.15, 0.2])
            if kind == 0:
                add(
                    0,
                    x,
                    z0,
                    z1,
                    0.0,
                    float(rng.uniform(6, 22)),
                    BUILDING,
                    texture=_T_WINDOWS,
                    albedo=rng.uniform(0.6, 1.4),
                )
            elif kind == 1:
                add(0, x, z0, z1, 0.0, float(rng.uniform(1.5, 3.0)), WALL, albedo=rng.uniform(0.7, 1.3))
            elif kind == 2:
                add(0, x, z0, z1, 0.0, float(rng.uniform(1.2, 2.0)), FENCE, shape=_SLATS, albedo=rng.uniform(0.7, 1.3))
            else:
                add(
                    0,
                    x,
                    z0,
                    z1,
                    0.0,
                    float(rng.uniform(2, 5)),
                    VEGETATION,
                    texture=_T_LEAVES,
                    albedo=rng.uniform(0.7, 1.3),
                )
        # back row: taller buildings so the sky does not dominate behind low walls and fences
        z = -30.0
        while z < z_end:
            length = float(rng.uniform(15, 40))
            if not in_tunnel(z - 5, z + length + 5):
                add(
                    0,
                    side * (curb + rng.uniform(12, 20)),
                    z,
                    z + length,
                    0.0,
                    float(rng.uniform(10, 35)),
                    BUILDING,
                    texture=_T_WINDOWS,
                    albedo=rng.uniform(0.5, 1.3),
                )
            z += length + float(rng.uniform(0, 15))
        # poles (some with signs, lamps at night) and trees on the verge
        z = float(rng.uniform(0, 15))
        while z < z_end:
            x = side * (road_half + sidewalk * rng.uniform(0.6, 0.9))
            if not in_tunnel(z - 2, z + 2):
                if rng.random() < 0.55:
                    top = float(rng.uniform(4, 8))
                    add(2, z, x - 0.08, x + 0.08, 0.0, top, POLE)
                    if rng.random() < 0.5:
                        size = float(rng.uniform(0.5, 0.9))
                        y0 = float(rng.uniform(2.0, 3.0))
                        add(
                            2,
                            z - 0.02,
                            x - size / 2,
                            x + size / 2,
                            y0,
                            y0 + size,
                            SIGN,
                            shape=_ELLIPSE if rng.random() < 0.6 else _RECT,
                            texture=_T_SIGN,
                        )
                    add(2, z - 0.01, x - 0.25, x + 0.25, top - 0.2, top, POLE, texture=_T_LAMP)
                else:
                    trunk = float(rng.uniform(1.5, 3.0))
                    add(2, z, x - 0.12, x + 0.12, 0.0, trunk + 0.5, VEGETATION, texture=_T_LEAVES, albedo=0.6)
                    crown = float(rng.uniform(2.0, 4.5))
                    add(
                        2,
                        z - 0.05,
                        x - crown / 2,
                        x + crown / 2,
                        trunk,
                        trunk + crown * 1.1,
                        VEGETATION,
                        shape=_ELLIPSE,
                        texture=_T_LEAVES,
                        albedo=rng.uniform(0.7, 1.3),
                    )
            z += float(rng.uniform(8, 25))
        # pedestrians walking on the sidewalk
        for _ in range(int(rng.poisson(z_end / 25))):
            zp = float(rng.uniform(5, z_end))
            if in_tunnel(zp - 3, zp + 3):
                continue
            x = side * (road_half + sidewalk * rng.uniform(0.15, 0.5))
            h = float(rng.uniform(1.5, 1.9))
            add(
                2,
                zp,
                x - 0.28 * h / 1.75,
                x + 0.28 * h / 1.75,
                0.0,
                h,
                PERSON,
                shape=_PERSON,
                vz=float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)),
                albedo=rng.uniform(0.4, 1.6),
            )
        # parked cars along the curb
        for _ in range(int(rng.poisson(z_end / 30))):
            zc = float(rng.uniform(5, z_end))
            _add_car(add, rng, side * (road_half - 1.1), zc, 0.0, facing=1, side=side)
    # traffic: same direction in the camera's lane and oncoming in the other
    lane_x = road_half / 2
    # Every drive starts with a car ahead, a pedestrian and a signed pole in view, so that short clips hold
    # every class (the rest of the traffic is random).
    _add_car(add, rng, lane_x, float(rng.uniform(12, 20)), speed * float(rng.uniform(0.95, 1.05)), facing=1, side=1)
    side = float(rng.choice([-1.0, 1.0]))
    zp, xp = float(rng.uniform(9, 14)), side * (road_half + sidewalk * 0.3)
    add(2, zp, xp - 0.27, xp + 0.27, 0.0, 1.75, PERSON, shape=_PERSON, vz=float(rng.uniform(-1.2, 1.2)))
    zs, xs = float(rng.uniform(10, 16)), -side * (road_half + sidewalk * 0.7)
    add(2, zs, xs - 0.08, xs + 0.08, 0.0, 4.5, POLE)
    add(2, zs - 0.02, xs - 0.4, xs + 0.4, 2.2, 3.0, SIGN, shape=_ELLIPSE, texture=_T_SIGN)
    for _ in range(int(rng.poisson(duration_s * 0.8 + 1))):
        zc = float(rng.uniform(12, 40 + speed * duration_s))
        _add_car(add, rng, lane_x, zc, speed * rng.uniform(0.5, 1.1), facing=1, side=1)
    for _ in range(int(rng.poisson(duration_s * 1.5 + 1))):
        zc = float(rng.uniform(30, z_end + speed * duration_s))
        _add_car(add, rng, -lane_x, zc, -float(rng.uniform(5, 12)), facing=-1, side=-1)
    for z0, z1 in tunnels:
        wall_x = curb + 0.5
        add(0, -wall_x, z0, z1, 0.0, tunnel_h, WALL, albedo=0.9)
        add(0, wall_x, z0, z1, 0.0, tunnel_h, WALL, albedo=0.9)
        add(1, tunnel_h, -wall_x, wall_x, z0, z1, BUILDING, texture=_T_CEILING, albedo=0.7)
        # portal around the entrance (three rectangles around the opening)
        add(2, z0, -40.0, -wall_x, 0.0, 25.0, BUILDING, albedo=0.8)
        add(2, z0, wall_x, 40.0, 0.0, 25.0, BUILDING, albedo=0.8)
        add(2, z0, -wall_x, wall_x, tunnel_h, 25.0, BUILDING, albedo=0.8)
    names = ("axis", "c", "a0", "a1", "b0", "b1", "vz", "label", "shape", "texture", "albedo", "phase")
    cols = list(zip(*rows))
    rects = {
        n: np.asarray(v, dtype=np.int64 if n in ("axis", "label", "shape", "texture") else np.float64)
        for n, v in zip(names, cols)
    }
    sun = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.08, 0.25), 1.0])
    return DrivingScene(
        rects=rects,
        road_half_width=road_half,
        sidewalk_width=sidewalk,
        tunnels=tunnels_arr,
        tunnel_height=tunnel_h,
        night=night,
        speed=speed,
        lane_x=lane_x,
        sun_direction=sun / np.linalg.norm(sun),
        seed=seed,
        style=style,
    )


def _add_car(add, rng, x_center, z_back, vz, *, facing, side):
    """A car as its camera-facing end (rear or front) plus the side facing the road centre."""
    w, h, length = float(rng.uniform(1.7, 2.0)), float(rng.uniform(1.4, 1.7)), float(rng.uniform(3.8, 4.8))
    albedo = float(rng.uniform(0.3, 2.0))
    add(
        2,
        z_back,
        x_center - w / 2,
        x_center + w / 2,
        0.15,
        0.15 + h,
        CAR,
        shape=_CAR,
        texture=_T_CAR,
        vz=vz,
        albedo=albedo,
    )
    x_side = x_center - side * w / 2
    add(0, x_side, z_back, z_back + length, 0.15, 0.15 + h, CAR, shape=_CAR, texture=_T_CAR, vz=vz, albedo=albedo)


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray, a: np.ndarray, t_s: float, phase: float) -> np.ndarray:
    if shape == _RECT:
        return np.ones(u.shape, dtype=bool)
    if shape == _ELLIPSE:
        return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1
    if shape == _PERSON:
        swing = 0.16 * np.sin(phase + 9.0 * t_s)
        head = ((u - 0.5) / 0.2) ** 2 + ((v - 0.91) / 0.075) ** 2 <= 1
        torso = (np.abs(u - 0.5) < 0.34) & (v > 0.45) & (v < 0.84)
        legs = ((np.abs(u - 0.5 + swing) < 0.13) | (np.abs(u - 0.5 - swing) < 0.13)) & (v <= 0.47)
        return head | torso | legs
    if shape == _SLATS:
        return (np.mod(a, 0.22) < 0.12) | (v > 0.9) | ((v > 0.45) & (v < 0.52))
    if shape == _CAR:
        return (v < 0.58) | ((np.abs(u - 0.5) < 0.36) & (v < 0.97))
    raise ValueError(f"unknown shape {shape}")


def _texture(
    texture: int, u, v, a, b, phase: float, freq: float, contrast: float, night: bool
) -> tuple[np.ndarray, np.ndarray | float]:
    """(albedo multiplier, emitted radiance) on a rectangle."""
    base = 1.0 + contrast * _noise(a, b, phase, freq)
    if texture == _T_PLAIN:
        return base, 0.0
    if texture == _T_WINDOWS:
        ca, cb = np.floor(a / 3.0), np.floor(b / 3.2)
        window = (np.mod(a, 3.0) > 0.8) & (np.mod(a, 3.0) < 2.2) & (np.mod(b, 3.2) > 1.0) & (np.mod(b, 3.2) < 2.5)
        alb = np.where(window, 0.25, base)
        emit = np.where(window & (_hash(ca, cb, int(phase * 1000)) > 0.55), 0.8, 0.0) if night else 0.0
        return alb, emit
    if texture == _T_LEAVES:
        return 1.0 + 1.6 * contrast * _noise(a, b, phase, 4.0 * freq), 0.0
    if texture == _T_CAR:
        glass = v > 0.6
        lights = (v > 0.35) & (v < 0.48) & ((u < 0.14) | (u > 0.86))
        alb = np.where(glass, 0.12, np.where(lights, 1.4, base))
        return alb, (np.where(lights, 6.0, 0.0) if night else 0.0)
    if texture == _T_SIGN:
        r = np.hypot(2 * u - 1, 2 * v - 1)
        return np.where(r > 0.7, 0.45, 1.3), 0.0
    if texture == _T_LAMP:  # a street-lamp head: lit at night only
        return base, (4.0 if night else 0.0)
    if texture == _T_CEILING:  # tunnel lights: stripes across the ceiling, always on
        return base, np.where(np.mod(b, 10.0) < 1.2, 3.0, 0.0)
    raise ValueError(f"unknown texture {texture}")


@functools.lru_cache(maxsize=8)
def _camera_rays(h: int, w: int, focal_scale: float) -> np.ndarray:
    f = focal_scale * w
    u = (np.arange(w) + 0.5 - w / 2) / f
    v = -(np.arange(h) + 0.5 - h / 2) / f
    d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), -1)  # (H, W, 3)
    d = (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)
    d.flags.writeable = False
    return d


def render_driving_frame(
    scene: DrivingScene, t_s: float, sensor_size: tuple[int, int], *, rgb: bool = False, far: float = 160.0
) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast one frame.

    Returns:
        radiance: (H, W) float64 linear luminance (or (H, W, 3) linear RGB when `rgb`), HDR.
        labels: (H, W) uint8 DSEC class ids (`DSEC_CLASSES`).
    """
    h, w = sensor_size
    style = scene.style
    centre, rot = scene.camera_pose(t_s)
    rays = _rotate(_camera_rays(h, w, style.focal_scale), rot.astype(np.float32))  # (H, W, 3) world directions
    depth = np.full((h, w), far, dtype=np.float32)
    labels = np.full((h, w), BACKGROUND, dtype=np.uint8)
    albedo = np.ones((h, w), dtype=np.float32)
    emit = np.zeros((h, w), dtype=np.float32)
    hit = np.zeros((h, w, 3), dtype=np.float32)  # world hit point, for lighting
    freq, contrast = style.texture_scale, style.texture_contrast

    # ground plane y = 0, evaluated on the pixels that look down only
    gi = np.flatnonzero(rays[..., 1].reshape(-1) < -1e-4)
    gd = rays.reshape(-1, 3)[gi]  # (G, 3)
    t_g = -centre[1] / gd[:, 1]
    near_enough = t_g < far
    gi, gd, t_g = gi[near_enough], gd[near_enough], t_g[near_enough]
    gx = centre[0] + t_g * gd[:, 0]
    gz = centre[2] + t_g * gd[:, 2]
    ax = np.abs(gx)
    road_edge = scene.road_half_width
    g_label = np.where(ax < road_edge, ROAD, np.where(ax < road_edge + scene.sidewalk_width, SIDEWALK, VEGETATION))
    marking = ((ax < 0.08) & (np.mod(gz, 9.0) < 4.5)) | (np.abs(ax - road_edge + 0.2) < 0.08)
    tiles = (np.mod(gx, 1.0) < 0.05) | (np.mod(gz, 1.0) < 0.05)
    grass = g_label == VEGETATION
    g_alb = 1.0 + np.where(grass, 1.5, 1.0) * contrast * _noise(
        gx, gz, scene.seed % 97, np.where(grass, 5.0, 3.0) * freq
    )
    g_alb = np.where((g_label == ROAD) & marking, 4.5, g_alb)
    g_alb = np.where((g_label == SIDEWALK) & tiles, 0.6, g_alb)
    depth.reshape(-1)[gi] = t_g
    labels.reshape(-1)[gi] = g_label
    albedo.reshape(-1)[gi] = g_alb
    hit.reshape(-1, 3)[gi] = np.stack([gx, np.zeros_like(gx), gz], -1)

    r = scene.rects
    z_shift = r["vz"] * t_s
    # z extent of each rectangle after moving (axis 0: a is z; axis 1: b is z; axis 2: c is z)
    zmin = np.where(r["axis"] == 2, r["c"], np.where(r["axis"] == 0, r["a0"], r["b0"])) + z_shift
    zmax = np.where(r["axis"] == 2, r["c"], np.where(r["axis"] == 0, r["a1"], r["b1"])) + z_shift
    near = 0.5
    visible = np.flatnonzero((zmax > centre[2] + near) & (zmin < centre[2] + far))
    f = style.focal_scale * w
    for i in visible:
        axis = int(r["axis"][i])
        c, a0, a1, b0, b1 = r["c"][i], r["a0"][i], r["a1"][i], r["b0"][i], r["b1"][i]
        if axis == 2:
            c = c + z_shift[i]
        elif axis == 0:
            a0, a1 = a0 + z_shift[i], a1 + z_shift[i]
        else:
            b0, b1 = b0 + z_shift[i], b1 + z_shift[i]
        bbox = _project_bbox(axis, c, a0, a1, b0, b1, centre, rot, f, h, w, near)
        if bbox is None:
            continue
        r0, r1, c0, c1 = bbox
        d = rays[r0:r1, c0:c1]  # (h', w', 3)
        dn = d[..., axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_hit = (c - centre[axis]) / dn
        ia, ib = {0: (2, 1), 1: (0, 2), 2: (0, 1)}[axis]
        pa = centre[ia] + t_hit * d[..., ia]
        pb = centre[ib] + t_hit * d[..., ib]
        u = (pa - a0) / (a1 - a0)
        v = (pb - b0) / (b1 - b0)
        inside = (t_hit > near) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1) & (t_hit < depth[r0:r1, c0:c1])
        if not inside.any():
            continue
        # texture coordinates move with the object
        la, lb = pa - (a0 if axis != 2 else 0.0), pb - (b0 if axis == 1 else 0.0)
        inside &= _shape_mask(int(r["shape"][i]), u, v, la, t_s, float(r["phase"][i]))
        if not inside.any():
            continue
        alb, em = _texture(int(r["texture"][i]), u, v, la, lb, float(r["phase"][i]), freq, contrast, scene.night)
        sub = (slice(r0, r1), slice(c0, c1))
        depth[sub] = np.where(inside, t_hit, depth[sub])
        labels[sub] = np.where(inside, int(r["label"][i]), labels[sub])
        albedo[sub] = np.where(inside, r["albedo"][i] * alb, albedo[sub])
        emit[sub] = np.where(inside, em, emit[sub])
        hit[sub] = np.where(inside[..., None], centre + t_hit[..., None] * d, hit[sub])

    sky = labels == BACKGROUND
    sky &= depth >= far
    light = _illumination(scene, hit)
    palette = np.asarray(style.palette)  # (11, 3)
    colour = palette[labels] if rgb else _dot3(palette, np.array([0.3, 0.59, 0.11]))[labels]
    shade = np.maximum(albedo, 0.02) * light + emit
    radiance = colour * shade[..., None] if rgb else colour * shade
    sky_rad = _sky(scene, rays[sky], freq)  # (S,)
    if rgb:
        radiance[sky] = sky_rad[:, None] * np.array([0.75, 0.85, 1.0] if not scene.night else [0.6, 0.6, 0.8])
    else:
        radiance[sky] = sky_rad
    return radiance.astype(np.float64), labels


def _project_bbox(axis, c, a0, a1, b0, b1, centre, rot, f, h, w, near):
    """Pixel bounding box (r0, r1, c0, c1) of a rectangle clipped to z >= camera z + near; None if off-screen."""
    ia, ib = {0: (2, 1), 1: (0, 2), 2: (0, 1)}[axis]
    z_lo = centre[2] + near
    if axis == 0:
        a0 = max(a0, z_lo)
        if a1 <= a0:
            return None
    elif axis == 1:
        b0 = max(b0, z_lo)
        if b1 <= b0:
            return None
    corners = np.empty((4, 3))
    corners[:, axis] = c
    corners[:, ia] = [a0, a1, a0, a1]
    corners[:, ib] = [b0, b0, b1, b1]
    cam = _rotate(corners - centre, rot.T)  # (4, 3) camera coordinates
    if np.any(cam[:, 2] <= 1e-3):
        return None
    px = cam[:, 0] / cam[:, 2] * f + w / 2
    py = -cam[:, 1] / cam[:, 2] * f + h / 2
    c0, c1 = int(np.floor(px.min())) - 1, int(np.ceil(px.max())) + 1
    r0, r1 = int(np.floor(py.min())) - 1, int(np.ceil(py.max())) + 1
    c0, c1, r0, r1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
    if c1 <= c0 or r1 <= r0:
        return None
    return r0, r1, c0, c1


def _illumination(scene: DrivingScene, hit: np.ndarray) -> np.ndarray:
    """Irradiance at each hit point: daylight (or night ambient), dimmed inside tunnels."""
    ambient = 0.015 if scene.night else 1.0
    light = np.full(hit.shape[:2], ambient)
    if len(scene.tunnels):
        z, x = hit[..., 2], np.abs(hit[..., 0])
        inside = np.zeros(z.shape, dtype=bool)
        for z0, z1 in scene.tunnels:
            inside |= (z > z0 + 0.05) & (z < z1) & (x < scene.road_half_width + scene.sidewalk_width + 0.6)
        light = np.where(inside, 0.03 * (1.0 + 0.5 * (np.mod(z, 10.0) < 3.0)), light)
    return light


def _sky(scene: DrivingScene, rays: np.ndarray, freq: float) -> np.ndarray:
    elev = np.clip(rays[..., 1], 0.0, 1.0)
    if scene.night:
        return 0.004 * (1.0 + 0.5 * elev)
    # a dimmer band near the horizon keeps the sky from being one flat value
    base = 6.0 * (0.7 + 0.6 * elev)
    az = _fixed_loop(np.arctan2, rays[..., 0], rays[..., 2])  # strided views: see `_fixed_loop`
    clouds = 1.0 + 0.25 * np.clip(_noise(az * 8, elev * 12, scene.seed % 31, freq), 0, None)
    sun = _dot3(rays.astype(np.float64), scene.sun_direction) > np.cos(np.deg2rad(2.0))
    return np.where(sun, 2000.0, base * clouds)

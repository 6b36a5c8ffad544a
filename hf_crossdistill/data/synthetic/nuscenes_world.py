"""A simulated driving world for the synthetic nuScenes generator: road, static structures, annotated objects.

Everything lives on a straight road. Its own "road frame" has `s` along the road and `t` to the left of it;
the road frame is placed in the global frame by a rotation `road_yaw` and an `origin`. Objects move with
constant velocity in the road frame, so the annotation tracks are smooth and the velocities the devkit
derives from consecutive annotations are exact.

Road layout across `t` (metres): lanes of 3.5 m with boundaries at 0, ±3.5, ±7; the outer lanes
(|t| in 3.5–7) are parking / construction lanes, the inner ones carry traffic (the ego drives at
t = -1.75 towards +s, oncoming traffic at t = +1.75). Sidewalks span 7–11 (a bike strip 7–8, a walking band
8–10, a band for standing pedestrians and parked cycles 10–11). Walls, poles and buildings stand beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# nuScenes category name, detection class, mean size (w, l, h), size std (w, l, h).
OBJECT_CLASSES: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "car": ("vehicle.car", (1.95, 4.62, 1.73), (0.12, 0.35, 0.15)),
    "truck": ("vehicle.truck", (2.52, 6.94, 2.84), (0.2, 1.2, 0.4)),
    "construction_vehicle": ("vehicle.construction", (2.82, 6.56, 3.20), (0.25, 0.8, 0.35)),
    "bus": ("vehicle.bus.rigid", (2.95, 11.19, 3.49), (0.1, 0.8, 0.2)),
    "trailer": ("vehicle.trailer", (2.90, 12.29, 3.87), (0.15, 1.5, 0.3)),
    "barrier": ("movable_object.barrier", (2.53, 0.50, 0.98), (0.3, 0.06, 0.08)),
    "motorcycle": ("vehicle.motorcycle", (0.77, 2.11, 1.47), (0.08, 0.15, 0.1)),
    "bicycle": ("vehicle.bicycle", (0.60, 1.70, 1.28), (0.06, 0.12, 0.1)),
    "pedestrian": ("human.pedestrian.adult", (0.67, 0.73, 1.77), (0.06, 0.08, 0.1)),
    "traffic_cone": ("movable_object.trafficcone", (0.41, 0.41, 1.07), (0.04, 0.04, 0.08)),
}
VEHICLE_CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer")

# Sub-boxes of each class in fractions of the annotation box: (x0, x1, y0, y1, z0, z1) with x along the
# heading in [-0.5, 0.5], y across in [-0.5, 0.5], z up in [0, 1].
SHAPES: dict[str, tuple[tuple[float, ...], ...]] = {
    "car": ((-0.5, 0.5, -0.5, 0.5, 0.12, 0.56), (-0.30, 0.16, -0.44, 0.44, 0.56, 1.0)),
    "truck": (
        (0.26, 0.5, -0.5, 0.5, 0.1, 0.82),
        (-0.5, 0.23, -0.5, 0.5, 0.15, 1.0),
        (-0.5, 0.5, -0.4, 0.4, 0.08, 0.2),
    ),
    "construction_vehicle": (
        (-0.5, 0.28, -0.5, 0.5, 0.08, 0.45),
        (-0.32, 0.08, -0.5, 0.1, 0.45, 1.0),
        (0.28, 0.5, -0.25, 0.25, 0.15, 0.7),
    ),
    "bus": ((-0.5, 0.5, -0.5, 0.5, 0.08, 1.0),),
    "trailer": (
        (-0.5, 0.44, -0.5, 0.5, 0.28, 1.0),
        (0.44, 0.5, -0.1, 0.1, 0.22, 0.34),
        (-0.42, -0.12, -0.5, 0.5, 0.0, 0.28),
    ),
    "barrier": (
        (-0.5, 0.5, -0.5, 0.5, 0.12, 1.0),
        (-0.5, 0.5, -0.5, -0.3, 0.0, 0.12),
        (-0.5, 0.5, 0.3, 0.5, 0.0, 0.12),
    ),
    "pedestrian": (
        (-0.3, 0.3, -0.35, 0.35, 0.0, 0.48),
        (-0.5, 0.5, -0.5, 0.5, 0.48, 0.86),
        (-0.22, 0.22, -0.2, 0.2, 0.87, 1.0),
    ),
    "traffic_cone": ((-0.5, 0.5, -0.5, 0.5, 0.0, 0.1), (-0.28, 0.28, -0.28, 0.28, 0.1, 1.0)),
    # Cycles are built by `_cycle_shape` (with or without a rider).
}
# Base colours (RGB 0-1) and LiDAR reflectivity (0-255 scale) per class.
PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "car": (
        (0.9, 0.9, 0.9),
        (0.1, 0.1, 0.12),
        (0.55, 0.56, 0.6),
        (0.7, 0.1, 0.1),
        (0.15, 0.25, 0.6),
        (0.75, 0.76, 0.8),
    ),
    "truck": ((0.95, 0.95, 0.95), (0.2, 0.35, 0.7), (0.6, 0.15, 0.1)),
    "construction_vehicle": ((0.95, 0.75, 0.1), (0.95, 0.55, 0.05)),
    "bus": ((0.8, 0.1, 0.1), (0.1, 0.3, 0.75), (0.92, 0.92, 0.9)),
    "trailer": ((0.6, 0.6, 0.62), (0.85, 0.85, 0.85), (0.3, 0.3, 0.35)),
    "barrier": ((0.95, 0.95, 0.95), (0.85, 0.15, 0.1)),
    "motorcycle": ((0.08, 0.08, 0.08), (0.6, 0.05, 0.05)),
    "bicycle": ((0.1, 0.1, 0.1), (0.2, 0.5, 0.2), (0.15, 0.2, 0.55)),
    "pedestrian": ((0.2, 0.25, 0.45), (0.5, 0.15, 0.15), (0.25, 0.25, 0.25), (0.75, 0.7, 0.55), (0.2, 0.45, 0.3)),
    "traffic_cone": ((1.0, 0.45, 0.05),),
}
REFLECTIVITY = {
    "car": 35.0,
    "truck": 40.0,
    "construction_vehicle": 60.0,
    "bus": 45.0,
    "trailer": 40.0,
    "barrier": 90.0,
    "motorcycle": 30.0,
    "bicycle": 25.0,
    "pedestrian": 18.0,
    "traffic_cone": 160.0,
}
RIDER_COLOURS = ((0.15, 0.15, 0.2), (0.6, 0.2, 0.1), (0.85, 0.85, 0.2))

# Ground materials: id -> (RGB, reflectivity).
GROUND_ROAD, GROUND_MARKING, GROUND_SIDEWALK, GROUND_GRASS = 0, 1, 2, 3
GROUND_MATERIALS = {
    GROUND_ROAD: ((0.27, 0.27, 0.29), 8.0),
    GROUND_MARKING: ((0.92, 0.92, 0.88), 95.0),
    GROUND_SIDEWALK: ((0.6, 0.58, 0.55), 25.0),
    GROUND_GRASS: ((0.28, 0.42, 0.2), 14.0),
}

GROUND_MATERIAL_ARRAYS = {
    "colour": np.array([GROUND_MATERIALS[i][0] for i in range(len(GROUND_MATERIALS))]),
    "reflectivity": np.array([GROUND_MATERIALS[i][1] for i in range(len(GROUND_MATERIALS))]),
}

EGO_LANE_T = -1.75
ONCOMING_LANE_T = 1.75
ROAD_HALF_WIDTH = 7.0
SIDEWALK_OUTER = 11.0
GEOMETRY_MARGIN = 0.03  # metres between the visible geometry and its annotation box, on every side


@dataclass
class SceneObject:
    """One annotated object: class, size and a constant-velocity track in the road frame."""

    detection_class: str
    category: str
    attribute: str  # "" for classes without attributes (barrier, traffic_cone)
    size_wlh: np.ndarray  # (3,) width, length, height in metres
    start_st: np.ndarray  # (2,) position (s, t) of the box centre at scene time 0
    velocity_st: np.ndarray  # (2,) metres per second in the road frame
    yaw_road: float  # heading relative to +s, radians
    sub_boxes: np.ndarray  # (K, 6) local (cx, cy, cz, dx, dy, dz), z measured from the ground
    colours: np.ndarray  # (K, 3) RGB 0-1
    reflectivity: float


@dataclass
class SceneWorld:
    """A scene: the road placement, the ego track, static structures and annotated objects."""

    road_yaw: float
    origin: np.ndarray  # (2,) global xy of the road-frame origin
    ego_start_s: float
    ego_speed: float
    structures: np.ndarray  # (S, 7) road frame (s, t, z_centre, length_s, width_t, height, yaw_road)
    structure_colours: np.ndarray  # (S, 3)
    structure_reflectivity: np.ndarray  # (S,)
    objects: list[SceneObject]
    s_range: tuple[float, float]  # the stretch of road the scene covers
    map_extent: tuple[float, float] = (0.0, 0.0)  # global (x_max, y_max) the scene's map mask must cover

    def road_to_global(self, st: np.ndarray) -> np.ndarray:
        """(..., 2) road-frame (s, t) -> (..., 2) global (x, y)."""
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        x = self.origin[0] + c * st[..., 0] - s * st[..., 1]
        y = self.origin[1] + s * st[..., 0] + c * st[..., 1]
        return np.stack([x, y], axis=-1)

    def global_to_road(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) global (x, y) -> (..., 2) road-frame (s, t)."""
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        dx, dy = xy[..., 0] - self.origin[0], xy[..., 1] - self.origin[1]
        return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)

    def ego_pose(self, time_s: float) -> tuple[np.ndarray, float]:
        """Global ego translation (3,) (z = 0, as in nuScenes) and yaw at scene time `time_s`."""
        st = np.array([self.ego_start_s + self.ego_speed * time_s, EGO_LANE_T])
        xy = self.road_to_global(st)
        return np.array([xy[0], xy[1], 0.0]), float(self.road_yaw)

    def object_boxes(self, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Annotation boxes of every object at `time_s`: centres (N, 3) global and yaws (N,) global."""
        if not self.objects:
            return np.zeros((0, 3)), np.zeros(0)
        start = np.stack([o.start_st for o in self.objects])  # (N, 2)
        vel = np.stack([o.velocity_st for o in self.objects])  # (N, 2)
        xy = self.road_to_global(start + vel * time_s)
        h = np.array([o.size_wlh[2] for o in self.objects])
        yaw = np.array([o.yaw_road for o in self.objects]) + self.road_yaw
        return np.concatenate([xy, h[:, None] / 2], axis=1), yaw

    def primitives(self, time_s: float) -> dict[str, np.ndarray]:
        """All solid boxes of the world at `time_s` in the global frame (every box is z-aligned).

        Returns a dict of arrays over primitives: `centre` (P, 3), `half` (P, 3) half extents along the box's
        own x (heading), y, z; `yaw` (P,); `colour` (P, 3); `reflectivity` (P,); `object` (P,) the object
        index or -1 for unannotated structures.
        """
        parts = []
        if len(self.structures):
            st = self.structures
            xy = self.road_to_global(st[:, :2])
            parts.append(
                (
                    np.concatenate([xy, st[:, 2:3]], axis=1),
                    st[:, 3:6] / 2,
                    st[:, 6] + self.road_yaw,
                    self.structure_colours,
                    self.structure_reflectivity,
                    np.full(len(st), -1),
                )
            )
        if self.objects:
            centres, yaws = self.object_boxes(time_s)
            counts = np.array([len(o.sub_boxes) for o in self.objects])
            idx = np.repeat(np.arange(len(self.objects)), counts)
            sub = np.concatenate([o.sub_boxes for o in self.objects])  # (K, 6)
            c, s = np.cos(yaws[idx]), np.sin(yaws[idx])
            cx = centres[idx, 0] + c * sub[:, 0] - s * sub[:, 1]
            cy = centres[idx, 1] + s * sub[:, 0] + c * sub[:, 1]
            parts.append(
                (
                    np.stack([cx, cy, sub[:, 2]], axis=1),
                    sub[:, 3:6] / 2,
                    yaws[idx],
                    np.concatenate([o.colours for o in self.objects]),
                    np.array([o.reflectivity for o in self.objects])[idx],
                    idx,
                )
            )
        if not parts:
            return {
                "centre": np.zeros((0, 3)),
                "half": np.zeros((0, 3)),
                "yaw": np.zeros(0),
                "colour": np.zeros((0, 3)),
                "reflectivity": np.zeros(0),
                "object": np.zeros(0, dtype=np.int64),
            }
        names = ("centre", "half", "yaw", "colour", "reflectivity", "object")
        return {n: np.concatenate([p[i] for p in parts]) for i, n in enumerate(names)}

    def ground_material(self, xy: np.ndarray) -> np.ndarray:
        """Material id (GROUND_*) of the ground at global points (..., 2)."""
        st = self.global_to_road(xy)
        s, t = st[..., 0], np.abs(st[..., 1])
        material = np.full(t.shape, GROUND_GRASS, dtype=np.int64)
        material[t < SIDEWALK_OUTER] = GROUND_SIDEWALK
        material[t < ROAD_HALF_WIDTH] = GROUND_ROAD
        # Solid edge lines at |t| = 6.85, a double centre line, dashed lane lines at |t| = 3.5 (3 m every 9 m).
        edge = np.abs(t - 6.85) < 0.08
        centre = np.abs(t - 0.12) < 0.06
        dashed = (np.abs(t - 3.5) < 0.07) & (np.mod(s, 9.0) < 3.0)
        material[edge | centre | dashed] = GROUND_MARKING
        return material


def _sample_size(rng: np.random.Generator, detection_class: str) -> np.ndarray:
    _, mean, std = OBJECT_CLASSES[detection_class]
    size = rng.normal(mean, std)
    return np.clip(size, 0.5 * np.asarray(mean), 1.5 * np.asarray(mean))


def _cycle_shape(with_rider: bool) -> tuple[tuple[float, ...], ...]:
    if with_rider:
        return (
            (-0.5, 0.5, -0.2, 0.2, 0.0, 0.36),
            (0.25, 0.4, -0.5, 0.5, 0.36, 0.56),
            (-0.28, 0.12, -0.45, 0.45, 0.36, 0.86),
            (-0.16, 0.06, -0.2, 0.2, 0.87, 1.0),
        )
    return ((-0.5, 0.5, -0.25, 0.25, 0.0, 0.75), (0.25, 0.42, -0.5, 0.5, 0.75, 1.0))


def _sub_boxes(fractions: tuple[tuple[float, ...], ...], size_wlh: np.ndarray) -> np.ndarray:
    """Fractional sub-boxes -> (K, 6) metric (cx, cy, cz, dx, dy, dz), kept GEOMETRY_MARGIN inside the box."""
    w, l, h = size_wlh
    f = np.asarray(fractions, dtype=np.float64)  # (K, 6)
    m = GEOMETRY_MARGIN
    x0, x1 = np.maximum(f[:, 0] * l, -l / 2 + m), np.minimum(f[:, 1] * l, l / 2 - m)
    y0, y1 = np.maximum(f[:, 2] * w, -w / 2 + m), np.minimum(f[:, 3] * w, w / 2 - m)
    z0, z1 = np.maximum(f[:, 4] * h, m), np.minimum(f[:, 5] * h, h - m)
    return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2, x1 - x0, y1 - y0, z1 - z0], axis=1)


def _make_object(
    rng: np.random.Generator,
    detection_class: str,
    st: tuple[float, float],
    velocity_s: float,
    yaw_road: float,
    attribute: str,
    size_wlh: np.ndarray | None = None,
) -> SceneObject:
    size = _sample_size(rng, detection_class) if size_wlh is None else size_wlh
    if detection_class in ("bicycle", "motorcycle"):
        fractions = _cycle_shape(attribute == "cycle.with_rider")
    else:
        fractions = SHAPES[detection_class]
    sub = _sub_boxes(fractions, size)
    palette = PALETTES[detection_class]
    base = np.array(palette[rng.integers(len(palette))])
    colours = np.repeat(base[None], len(sub), axis=0) * rng.uniform(0.9, 1.1)
    if detection_class == "pedestrian":
        colours[0] = palette[rng.integers(len(palette))]  # trousers differ from the top
        colours[2] = (0.85, 0.65, 0.5)  # head
    elif attribute == "cycle.with_rider":
        colours[2] = RIDER_COLOURS[rng.integers(len(RIDER_COLOURS))]
        colours[3] = (0.85, 0.65, 0.5)
    elif detection_class == "car":
        colours[1] = colours[0] * 0.45  # darker glass cabin
    elif detection_class == "traffic_cone":
        colours[1] = (1.0, 0.5, 0.1)
    return SceneObject(
        detection_class=detection_class,
        category=OBJECT_CLASSES[detection_class][0],
        attribute=attribute,
        size_wlh=np.asarray(size, dtype=np.float64),
        start_st=np.array(st, dtype=np.float64),
        velocity_st=np.array([velocity_s, 0.0]),
        yaw_road=float(yaw_road),
        sub_boxes=sub,
        colours=np.clip(colours, 0, 1),
        reflectivity=REFLECTIVITY[detection_class] * float(rng.uniform(0.8, 1.2)),
    )


class _Strip:
    """Occupied 1-D intervals along `s` of one strip of the road, for placing objects without overlaps."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []

    def free(self, lo: float, hi: float) -> bool:
        return all(hi <= a or lo >= b for a, b in self.intervals)

    def take(self, lo: float, hi: float) -> None:
        self.intervals.append((lo, hi))


def _place(strip: _Strip, rng: np.random.Generator, length: float, lo: float, hi: float, gap: float) -> float | None:
    """Centre s of a free interval of `length` (+ `gap`) within [lo, hi], or None after a few tries."""
    for _ in range(30):
        s = float(rng.uniform(lo, hi))
        if strip.free(s - length / 2 - gap, s + length / 2 + gap):
            strip.take(s - length / 2, s + length / 2)
            return s
    return None


def build_scene_world(rng: np.random.Generator, duration_s: float, *, density: float = 1.0) -> SceneWorld:
    """Draw one scene: ego speed, structures and objects of all 10 classes near the ego's path.

    Every class gets at least one instance placed close to the stretch the ego drives along so that it is
    annotated with LiDAR points; `density` scales the number of further objects.
    """
    ego_speed = float(rng.choice([0.0, rng.uniform(2.0, 5.0), rng.uniform(5.0, 10.0)], p=[0.1, 0.3, 0.6]))
    ego_start_s = 0.0
    ego_end_s = ego_speed * duration_s
    s_lo, s_hi = ego_start_s - 75.0, ego_end_s + 75.0
    near_lo, near_hi = ego_start_s - 8.0, ego_end_s + 22.0  # where guaranteed objects go
    objects: list[SceneObject] = []

    # Parking / construction lanes on both sides: sign +1 is the left (oncoming) side.
    parking = {1: _Strip(), -1: _Strip()}

    def park(cls: str, side: int, lo: float, hi: float, attribute: str) -> bool:
        size = _sample_size(rng, cls)
        s = _place(parking[side], rng, size[1], lo, hi, gap=0.8)
        if s is None:
            return False
        # Parked vehicles face the traffic direction of their side, hugging the kerb.
        t = side * (ROAD_HALF_WIDTH - 0.35 - size[0] / 2)
        yaw = 0.0 if side < 0 else np.pi
        objects.append(_make_object(rng, cls, (s, t), 0.0, yaw + rng.normal(0, 0.03), attribute, size))
        return True

    def construction_zone(side: int, lo: float, hi: float) -> bool:
        length = float(rng.uniform(14.0, 22.0))
        s0 = _place(parking[side], rng, length, lo, hi, gap=1.0)
        if s0 is None:
            return False
        # A construction vehicle in the zone, barriers along its road side, cones at both ends.
        size = _sample_size(rng, "construction_vehicle")
        size[0], size[1] = min(size[0], 2.9), min(size[1], length - 6.0)
        t_v = side * (ROAD_HALF_WIDTH - 0.05 - size[0] / 2)
        objects.append(
            _make_object(rng, "construction_vehicle", (s0, t_v), 0.0, rng.normal(0, 0.05), "vehicle.parked", size)
        )
        t_b = side * 3.72
        n_barriers = max(1, int(size[1] // 2.8))
        for k in range(n_barriers):
            bsize = _sample_size(rng, "barrier")
            bsize[0] = min(bsize[0], 2.6)
            s_b = s0 - size[1] / 2 + 1.4 + k * 2.8
            # A barrier's long side is its width: it faces across the road.
            objects.append(_make_object(rng, "barrier", (s_b, t_b), 0.0, np.pi / 2 + rng.normal(0, 0.02), "", bsize))
        for end in (-1, 1):
            for k in range(2):
                s_c = s0 + end * (length / 2 - 0.6 - 1.6 * k)
                t_c = side * (4.3 + 1.2 * k)
                objects.append(_make_object(rng, "traffic_cone", (s_c, t_c), 0.0, rng.uniform(-np.pi, np.pi), ""))
        return True

    # Guaranteed instances close to the ego's path.
    construction_zone(int(rng.choice([-1, 1])), near_lo + 10, near_hi)
    for cls in ("truck", "bus", "trailer", "car"):
        for _ in range(3):
            if park(cls, int(rng.choice([-1, 1])), near_lo, near_hi + 10, "vehicle.parked"):
                break
    # Further parked vehicles and construction zones along the whole stretch.
    for _ in range(int(round(density * (s_hi - s_lo) / 12.0))):
        side = int(rng.choice([-1, 1]))
        if rng.random() < 0.06:
            construction_zone(side, s_lo, s_hi)
        else:
            cls = str(rng.choice(["car", "truck", "trailer", "bus"], p=[0.75, 0.13, 0.06, 0.06]))
            park(cls, side, s_lo, s_hi, "vehicle.parked")

    # Traffic: the ego lane moves with the ego (lead and following vehicles), the oncoming lane at its own speed.
    moving_attr = "vehicle.moving" if ego_speed > 0.5 else "vehicle.stopped"
    lane = _Strip()
    lane.take(ego_start_s - 2.5, ego_start_s + 2.5)  # the ego itself
    lead_lo = ego_start_s + 9.0
    for cls in ["car", "car", "truck", "bus", "car"][: int(rng.integers(1, 5))]:
        size = _sample_size(rng, cls)
        s = _place(lane, rng, size[1], lead_lo, lead_lo + 60.0, gap=4.0)
        if s is None:
            s = _place(lane, rng, size[1], ego_start_s - 60.0, ego_start_s - 9.0, gap=4.0)
        if s is not None:
            objects.append(_make_object(rng, cls, (s, EGO_LANE_T), ego_speed, 0.0, moving_attr, size))
    oncoming_speed = float(rng.choice([0.0, rng.uniform(4.0, 12.0)], p=[0.15, 0.85]))
    oncoming_attr = "vehicle.moving" if oncoming_speed > 0.5 else "vehicle.stopped"
    oncoming = _Strip()
    # Oncoming traffic drives towards -s; start it ahead so it passes the ego during the scene.
    span_lo, span_hi = ego_start_s - 40.0, ego_end_s + oncoming_speed * duration_s + 60.0
    for _ in range(int(round(density * (span_hi - span_lo) / 25.0))):
        cls = str(rng.choice(["car", "truck", "bus", "motorcycle", "trailer"], p=[0.68, 0.12, 0.06, 0.1, 0.04]))
        size = _sample_size(rng, cls)
        s = _place(oncoming, rng, size[1], span_lo, span_hi, gap=5.0)
        if s is None:
            continue
        attribute = "cycle.with_rider" if cls == "motorcycle" else oncoming_attr
        if cls == "motorcycle":
            size[2] = max(size[2], 1.5)
        objects.append(_make_object(rng, cls, (s, ONCOMING_LANE_T), -oncoming_speed, np.pi, attribute, size))

    # Sidewalks (both sides): riding cycles on the bike strip, walkers, standing people, parked cycles.
    for side in (-1, 1):
        bike_speed = float(rng.uniform(2.5, 6.0)) * rng.choice([-1, 1])
        bike = _Strip()
        for k in range(int(rng.integers(1, 4))):
            cls = "bicycle" if k == 0 or rng.random() < 0.6 else "motorcycle"
            size = _sample_size(rng, cls)
            size[2] = max(size[2], 1.6)  # the box includes the rider
            lo, hi = (near_lo, near_hi) if k == 0 else (s_lo, s_hi)
            s = _place(bike, rng, size[1], lo - bike_speed * duration_s / 2, hi - bike_speed * duration_s / 2, 3.0)
            if s is not None:
                yaw = 0.0 if bike_speed > 0 else np.pi
                objects.append(_make_object(rng, cls, (s, side * 7.5), bike_speed, yaw, "cycle.with_rider", size))
        for band_t in (8.4, 9.5):
            walk_speed = float(rng.uniform(0.9, 1.7)) * rng.choice([-1, 1])
            walkers = _Strip()
            for k in range(int(round(density * rng.integers(2, 6)))):
                lo, hi = (near_lo, near_hi) if k == 0 else (s_lo, s_hi)
                s = _place(walkers, rng, 0.8, lo, hi, gap=0.8)
                if s is not None:
                    yaw = (0.0 if walk_speed > 0 else np.pi) + rng.normal(0, 0.05)
                    t = side * (band_t + rng.uniform(-0.2, 0.2))
                    objects.append(_make_object(rng, "pedestrian", (s, t), walk_speed, yaw, "pedestrian.moving"))
        still = _Strip()
        for k in range(int(round(density * rng.integers(3, 7)))):
            cls = str(rng.choice(["pedestrian", "bicycle", "motorcycle"], p=[0.5, 0.3, 0.2]))
            if k < 3:
                cls = ("pedestrian", "bicycle", "motorcycle")[k]
            lo, hi = (near_lo, near_hi) if k < 3 else (s_lo, s_hi)
            if cls == "pedestrian":
                s = _place(still, rng, 0.8, lo, hi, gap=0.6)
                if s is not None:
                    t = side * 10.55
                    objects.append(
                        _make_object(rng, cls, (s, t), 0.0, rng.uniform(-np.pi, np.pi), "pedestrian.standing")
                    )
            else:
                size = _sample_size(rng, cls)
                size[2] = min(size[2], 1.25)
                s = _place(still, rng, size[1], lo, hi, gap=0.5)
                if s is not None:
                    # Parked cycles stand along the outer edge of the sidewalk, clear of the walkers.
                    t = side * (SIDEWALK_OUTER - 0.1 - size[0] / 2)
                    yaw = float(rng.choice([0.0, np.pi])) + rng.normal(0, 0.03)
                    objects.append(_make_object(rng, cls, (s, t), 0.0, yaw, "cycle.without_rider", size))

    structures, colours, refl = _build_structures(rng, s_lo - 30.0, s_hi + 30.0)
    return SceneWorld(
        road_yaw=float(rng.uniform(-np.pi, np.pi)),
        origin=np.zeros(2),  # set by the caller once the map extent is known
        ego_start_s=ego_start_s,
        ego_speed=ego_speed,
        structures=structures,
        structure_colours=colours,
        structure_reflectivity=refl,
        objects=objects,
        s_range=(s_lo - 30.0, s_hi + 30.0),
    )


def _build_structures(rng: np.random.Generator, s_lo: float, s_hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unannotated static boxes: buildings, walls and poles on both sides of the road."""
    rows, colours, refl = [], [], []
    for side in (-1, 1):
        s = s_lo + float(rng.uniform(0, 10))
        while s < s_hi:
            length = float(rng.uniform(10, 35))
            depth = float(rng.uniform(8, 20))
            height = float(rng.uniform(5, 25))
            setback = float(rng.uniform(13, 18))
            if rng.random() < 0.8:
                rows.append((s + length / 2, side * (setback + depth / 2), height / 2, length, depth, height, 0.0))
                colours.append(
                    rng.uniform(0.35, 0.85) * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.75, 1.0)])
                )
                refl.append(rng.uniform(30, 70))
            elif rng.random() < 0.7:
                h = float(rng.uniform(1.0, 2.5))
                rows.append((s + length / 2, side * 12.0, h / 2, length, 0.3, h, 0.0))
                colours.append(np.array([0.55, 0.5, 0.45]) * rng.uniform(0.8, 1.1))
                refl.append(rng.uniform(40, 60))
            s += length + float(rng.uniform(2, 12))
        s = s_lo + float(rng.uniform(0, 20))
        while s < s_hi:
            h = float(rng.uniform(5, 8))
            rows.append((s, side * 11.35, h / 2, 0.25, 0.25, h, 0.0))
            colours.append(np.array([0.35, 0.35, 0.38]))
            refl.append(70.0)
            s += float(rng.uniform(18, 35))
    return np.array(rows, dtype=np.float64).reshape(-1, 7), np.array(colours).reshape(-1, 3), np.array(refl)

"""Sensors of the synthetic nuScenes generator: LIDAR_TOP ray casting and z-buffered camera rendering.

Both sensors cast rays against the same world: the ground plane z = 0 of the ego frame and z-aligned boxes
(the primitives of `SceneWorld.primitives`, moved into the ego frame). To stay vectorised and cheap, each box
is only tested against the rays that can reach it: a LiDAR box against the azimuth columns and beams its
bounding cylinder spans, a camera box against the pixels of its projected bounding rectangle. The
(ray, box) pairs are tested together with one slab test and reduced to the nearest hit per ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# nuScenes LIDAR_TOP (Velodyne HDL-32E): 32 beams, evenly spaced from -30.67 to +10.67 degrees.
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)


def to_frame(prims: dict[str, np.ndarray], translation: np.ndarray, yaw: float) -> dict[str, np.ndarray]:
    """Express primitives (global, z-aligned) in a frame with the given global translation (3,) and yaw."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = prims["centre"] - translation
    out = dict(prims)
    out["centre"] = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
    out["yaw"] = prims["yaw"] - yaw
    return out


def _expand_rectangles(lo_a: np.ndarray, n_a: np.ndarray, lo_b: np.ndarray, n_b: np.ndarray):
    """All (box, a, b) index triples of per-box rectangles [lo_a, lo_a + n_a) x [lo_b, lo_b + n_b)."""
    counts = n_a * n_b
    box = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    k = np.arange(int(counts.sum())) - start[box]
    return box, lo_a[box] + k % n_a[box], lo_b[box] + k // n_a[box]


def ray_box_hits(
    origin: np.ndarray,
    dirs: np.ndarray,
    ray: np.ndarray,
    box: np.ndarray,
    centre: np.ndarray,
    half: np.ndarray,
    yaw: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of (ray, box) candidate pairs for rays sharing one origin; returns only the pairs that hit.

    Args:
        origin: (3,) common ray origin; dirs: (R, 3) unit directions; ray, box: (P,) pair indices;
        centre, half: (B, 3) box centres and half extents along the box axes; yaw: (B,).

    Returns:
        `ray`, `box` (H,) of the hitting pairs, `t` (H,) entry distance along the ray and `axis` (H,) the box
        axis (0, 1, 2) of the entry face. Rays starting inside a box do not hit it.
    """
    c, s = np.cos(yaw).astype(np.float32), np.sin(yaw).astype(np.float32)
    rel = origin[None] - centre
    # The origin in every box's frame, once per box; the directions are rotated per pair.
    o = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1).astype(np.float32)
    h = half.astype(np.float32)
    d32 = dirs.astype(np.float32)
    cb, sb = c[box], s[box]
    dx, dy = d32[ray, 0], d32[ray, 1]
    t_enter = np.full(len(ray), -np.inf, dtype=np.float32)
    t_exit = np.full(len(ray), np.inf, dtype=np.float32)
    axis = np.zeros(len(ray), dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, d in enumerate((cb * dx + sb * dy, -sb * dx + cb * dy, d32[ray, 2])):
            d = np.where(np.abs(d) < 1e-9, np.float32(1e-9), d)
            oa, ha = o[box, a], h[box, a]
            t1, t2 = (-ha - oa) / d, (ha - oa) / d
            near = np.minimum(t1, t2)
            better = near > t_enter
            axis[better] = a
            t_enter = np.maximum(t_enter, near)
            t_exit = np.minimum(t_exit, np.maximum(t1, t2))
    hit = (t_enter <= t_exit) & (t_enter > 1e-4)
    return ray[hit], box[hit], t_enter[hit].astype(np.float64), axis[hit].astype(np.int64)


def face_normals(dirs: np.ndarray, yaw: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Outward normal (P, 3) of the entry face `axis` of a box with `yaw` hit by rays `dirs`."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.zeros((len(axis), 3))
    d_local = np.stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], axis=1)
    rows = np.arange(len(axis))
    local[rows, axis] = -np.sign(d_local[rows, axis])
    return np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], axis=1)


def nearest_hits(ray: np.ndarray, t: np.ndarray, num_rays: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ray, the smallest hit distance (inf if none) and the index of that hit (-1 if none)."""
    best = np.full(num_rays, np.inf)
    np.minimum.at(best, ray, t)
    winner = np.full(num_rays, -1, dtype=np.int64)
    is_best = t == best[ray]
    # Ties go to the last hit in order, deterministically.
    winner[ray[is_best]] = np.nonzero(is_best)[0]
    return best, winner


@dataclass
class LidarSpec:
    """LIDAR_TOP geometry and noise model."""

    height: float  # sensor height above the ground, metres
    azimuth_resolution_deg: float = 0.4
    max_range: float = 70.0
    min_range: float = 1.0
    range_noise_m: float = 0.015
    dropout: float = 0.05

    @property
    def num_columns(self) -> int:
        return int(round(360.0 / self.azimuth_resolution_deg))

    def ray_directions(self) -> np.ndarray:
        """(C * 32, 3) unit directions in the sensor frame, column-major: ray = column * 32 + beam."""
        az = -np.pi + (np.arange(self.num_columns) + 0.5) * 2 * np.pi / self.num_columns
        el = np.deg2rad(LIDAR_ELEVATIONS_DEG)
        az, el = np.meshgrid(az, el, indexing="ij")  # (C, 32)
        d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        return d.reshape(-1, 3)


def lidar_candidate_pairs(prims: dict[str, np.ndarray], spec: LidarSpec) -> tuple[np.ndarray, np.ndarray]:
    """(ray index, primitive index) pairs whose ray can reach the primitive (primitives in the sensor frame)."""
    centre, half = prims["centre"], prims["half"]
    n_cols, n_beams = spec.num_columns, len(LIDAR_ELEVATIONS_DEG)
    radius = np.hypot(half[:, 0], half[:, 1])
    dist = np.hypot(centre[:, 0], centre[:, 1])
    keep = dist - radius < spec.max_range
    inside = dist <= radius + 0.05
    # Azimuth span of the bounding circle (the whole turn when the sensor is within it).
    spread = np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0, 1))
    az = np.arctan2(centre[:, 1], centre[:, 0])
    col_step = 2 * np.pi / n_cols
    c0 = np.floor((az - spread + np.pi) / col_step - 0.5).astype(np.int64)
    c1 = np.ceil((az + spread + np.pi) / col_step - 0.5).astype(np.int64)
    c0 = np.where(inside, 0, c0)
    n_c = np.where(inside, n_cols, np.minimum(c1 - c0 + 1, n_cols))
    # Elevation span of the bounding cylinder.
    d_min, d_max = np.maximum(dist - radius, 0.05), dist + radius
    top, bottom = centre[:, 2] + half[:, 2], centre[:, 2] - half[:, 2]
    el_hi = np.arctan2(top, np.where(top > 0, d_min, d_max))
    el_lo = np.arctan2(bottom, np.where(bottom > 0, d_max, d_min))
    el0, el_step = np.deg2rad(LIDAR_ELEVATIONS_DEG[0]), np.deg2rad(LIDAR_ELEVATIONS_DEG[1] - LIDAR_ELEVATIONS_DEG[0])
    b0 = np.clip(np.floor((el_lo - el0) / el_step), 0, n_beams).astype(np.int64)
    b1 = np.clip(np.ceil((el_hi - el0) / el_step), -1, n_beams - 1).astype(np.int64)
    b0 = np.where(inside, 0, b0)
    b1 = np.where(inside, n_beams - 1, b1)
    n_b = np.where(keep, np.maximum(b1 - b0 + 1, 0), 0)
    box, col, beam = _expand_rectangles(c0, n_c, b0, n_b)
    return np.mod(col, n_cols) * n_beams + beam, box


def cast_lidar(
    prims: dict[str, np.ndarray],
    spec: LidarSpec,
    ground_reflectivity,
    rng: np.random.Generator,
    ray_dirs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One LiDAR sweep in the sensor frame (the sensor sits `spec.height` above the ground, z up).

    Args:
        prims: primitives in the sensor frame (see `SceneWorld.primitives`).
        ground_reflectivity: callable mapping sensor-frame points (N, 3) to reflectivity (N,).
        rng: noise source.
        ray_dirs: cached `spec.ray_directions()`.

    Returns:
        `points` (N, 5) float32 `[x, y, z, intensity, ring]` and `primitive` (N,) the primitive each point
        hit (-1 for the ground).
    """
    dirs = spec.ray_directions() if ray_dirs is None else ray_dirs
    n_rays = len(dirs)
    ray, box = lidar_candidate_pairs(prims, spec)
    ray, box, t, axis = ray_box_hits(np.zeros(3), dirs, ray, box, prims["centre"], prims["half"], prims["yaw"])
    best, winner = nearest_hits(ray, t, n_rays)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < -1e-9, -spec.height / dirs[:, 2], np.inf)
    hits_box = best < t_ground
    rng_t = np.where(hits_box, best, t_ground)
    prim = np.full(n_rays, -1, dtype=np.int64)
    prim[hits_box] = box[winner[hits_box]]
    keep = np.isfinite(rng_t) & (rng_t <= spec.max_range) & (rng_t >= spec.min_range)
    keep &= rng.random(n_rays) >= spec.dropout
    idx = np.nonzero(keep)[0]
    r = rng_t[idx] + rng.normal(0.0, spec.range_noise_m, len(idx))
    pts = dirs[idx] * r[:, None]
    # Intensity: material reflectivity, Lambertian in the incidence angle, a mild range falloff, speckle.
    prim_idx = prim[idx]
    on_box = prim_idx >= 0
    cos_inc = np.abs(dirs[idx, 2])  # ground normal is +z
    box_pairs = winner[idx[on_box]]
    normals = face_normals(dirs[ray[box_pairs]], prims["yaw"][box[box_pairs]], axis[box_pairs])
    cos_inc[on_box] = np.abs(np.sum(normals * dirs[idx[on_box]], axis=1))
    refl = np.empty(len(idx))
    refl[on_box] = prims["reflectivity"][prim_idx[on_box]]
    refl[~on_box] = ground_reflectivity(pts[~on_box])
    intensity = refl * (0.35 + 0.65 * cos_inc) * (1.0 + 10.0 / (10.0 + r)) / 2.0 * rng.uniform(0.85, 1.15, len(idx))
    ring = idx % len(LIDAR_ELEVATIONS_DEG)
    points = np.concatenate([pts, np.clip(intensity, 0, 255)[:, None], ring[:, None]], axis=1).astype(np.float32)
    return points, prim_idx


@dataclass
class CameraSpec:
    """One camera: intrinsics (3, 3) at the rendered size, rotation (3, 3) camera -> ego, translation (3,)."""

    intrinsic: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    width: int
    height: int

    def pixel_rays(self) -> np.ndarray:
        """(H * W, 3) unit directions in the ego frame through the pixel centres, row-major."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=0)  # (3, H*W)
        d = (self.rotation @ np.linalg.solve(self.intrinsic, pix)).T
        return d / np.linalg.norm(d, axis=1, keepdims=True)


def _box_corners(centre: np.ndarray, half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(B, 8, 3) corners of z-aligned boxes."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs[None] * half[:, None]  # (B, 8, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1] + centre[:, None, 0]
    y = s * local[..., 0] + c * local[..., 1] + centre[:, None, 1]
    return np.stack([x, y, local[..., 2] + centre[:, None, 2]], axis=-1)


def camera_candidate_pairs(
    prims: dict[str, np.ndarray], cam: CameraSpec, max_depth: float = 150.0
) -> tuple[np.ndarray, np.ndarray]:
    """(pixel index, primitive index) pairs within each primitive's projected bounding rectangle (ego frame)."""
    corners = _box_corners(prims["centre"], prims["half"], prims["yaw"])  # (B, 8, 3)
    cam_pts = (corners - cam.translation) @ cam.rotation  # (B, 8, 3) in the camera frame
    depth = cam_pts[..., 2]
    in_front = depth > 0.05
    visible = in_front.any(axis=1) & (depth.min(axis=1) < max_depth)
    proj = cam_pts @ cam.intrinsic.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = proj[..., :2] / np.where(in_front, depth, np.nan)[..., None]
    u_lo, u_hi = (
        np.nanmin(np.where(visible[:, None], uv[..., 0], 0), axis=1),
        np.nanmax(np.where(visible[:, None], uv[..., 0], 0), axis=1),
    )
    v_lo, v_hi = (
        np.nanmin(np.where(visible[:, None], uv[..., 1], 0), axis=1),
        np.nanmax(np.where(visible[:, None], uv[..., 1], 0), axis=1),
    )
    # A box partly behind the camera may reach any pixel: test the whole image.
    straddles = visible & ~in_front.all(axis=1)
    u0 = np.where(straddles, 0, np.clip(np.floor(u_lo), 0, cam.width)).astype(np.int64)
    u1 = np.where(straddles, cam.width, np.clip(np.ceil(u_hi) + 1, 0, cam.width)).astype(np.int64)
    v0 = np.where(straddles, 0, np.clip(np.floor(v_lo), 0, cam.height)).astype(np.int64)
    v1 = np.where(straddles, cam.height, np.clip(np.ceil(v_hi) + 1, 0, cam.height)).astype(np.int64)
    n_u = np.where(visible, np.maximum(u1 - u0, 0), 0)
    n_v = np.where(visible, np.maximum(v1 - v0, 0), 0)
    box, u, v = _expand_rectangles(u0, n_u, v0, n_v)
    return v * cam.width + u, box


@dataclass
class RenderResult:
    image: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H * W,) distance along each pixel ray to the nearest surface (inf for sky)


def render_camera(
    prims: dict[str, np.ndarray],
    cam: CameraSpec,
    ground_colour,
    ray_dirs: np.ndarray | None = None,
    sun: np.ndarray | None = None,
) -> RenderResult:
    """Ray-cast one camera image (z-buffer = nearest hit per pixel) with Lambertian shading and haze.

    Args:
        prims: primitives in the ego frame.
        cam: the camera.
        ground_colour: callable mapping ego-frame ground points (N, 3) to RGB (N, 3) in [0, 1].
        ray_dirs: cached `cam.pixel_rays()`.
        sun: (3,) unit vector towards the sun in the ego frame.
    """
    dirs = cam.pixel_rays() if ray_dirs is None else ray_dirs
    n_pix = len(dirs)
    sun = np.array([0.3, 0.4, 0.87]) if sun is None else sun
    pix, box = camera_candidate_pairs(prims, cam)
    pix, box, t, axis = ray_box_hits(cam.translation, dirs, pix, box, prims["centre"], prims["half"], prims["yaw"])
    best, winner = nearest_hits(pix, t, n_pix)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < -1e-9, -cam.translation[2] / dirs[:, 2], np.inf)
    on_box = best < t_ground
    on_ground = ~on_box & np.isfinite(t_ground)
    depth = np.where(on_box, best, t_ground)

    # Sky: a vertical gradient.
    elev = np.clip(dirs[:, 2], -0.2, 1.0)
    colour = np.stack([0.55 + 0.25 * elev, 0.7 + 0.2 * elev, 0.95 + 0.05 * elev], axis=1)
    gp = cam.translation + dirs[on_ground] * t_ground[on_ground, None]
    colour[on_ground] = ground_colour(gp) * (0.55 + 0.45 * sun[2])
    w = winner[on_box]
    obj_prim = box[w]
    normals = face_normals(dirs[pix[w]], prims["yaw"][obj_prim], axis[w])
    shade = 0.45 + 0.55 * np.clip(normals @ sun, 0, 1)
    colour[on_box] = prims["colour"][obj_prim] * shade[:, None]
    # Haze towards the horizon colour with distance.
    haze = 1.0 - np.exp(-np.where(np.isfinite(depth), depth, 1e3) / 250.0)
    colour = colour * (1 - haze[:, None]) + np.array([0.75, 0.8, 0.88]) * haze[:, None]
    image = (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(cam.height, cam.width, 3)

    return RenderResult(image=image, depth=depth)


def box_surface_samples(centre: np.ndarray, wlh: np.ndarray, yaw: np.ndarray, per_side: int = 4):
    """Points on the 6 faces of each box (a per_side x per_side grid of cell centres) with outward normals.

    Returns `points` (M, 6 * per_side**2, 3) and `normals` of the same shape (frame of the inputs).
    """
    g = (np.arange(per_side) + 0.5) / per_side - 0.5
    a, b = (v.ravel() for v in np.meshgrid(g, g))
    faces, normals = [], []
    for axis in range(3):
        for sign in (-0.5, 0.5):
            f = np.zeros((len(a), 3))
            f[:, axis] = sign
            f[:, (axis + 1) % 3], f[:, (axis + 2) % 3] = a, b
            faces.append(f)
            normals.append(np.tile(np.eye(3)[axis] * np.sign(sign), (len(a), 1)))
    unit, unit_n = np.concatenate(faces), np.concatenate(normals)  # (S, 3) in [-0.5, 0.5]^3 box units
    half_len = np.stack([wlh[:, 1], wlh[:, 0], wlh[:, 2]], axis=1)  # (M, 3) along heading, across, up
    local = unit[None] * half_len[:, None]  # (M, S, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    pts = np.stack(
        [c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]], axis=-1
    )
    nrm = np.stack(
        [c * unit_n[None, :, 0] - s * unit_n[None, :, 1], s * unit_n[None, :, 0] + c * unit_n[None, :, 1]], axis=-1
    )
    nrm = np.concatenate([nrm, np.broadcast_to(unit_n[None, :, 2:], nrm.shape[:2] + (1,))], axis=-1)
    return pts + centre[:, None], nrm


def visible_fraction(
    centre: np.ndarray, wlh: np.ndarray, yaw: np.ndarray, cameras: list[CameraSpec], depths: list[np.ndarray]
) -> np.ndarray:
    """Fraction (M,) of each box's camera-facing surface that some rendered image shows unoccluded.

    Surface samples on faces turned towards a camera count as potentially visible; one is seen when it
    projects inside that camera's image and nothing in the depth buffer lies in front of it. Samples that fall
    outside every image are unseen, so an object cut off by the image borders is partly visible.
    """
    pts, nrm = box_surface_samples(centre, wlh, yaw)  # (M, S, 3) ego frame
    facing = np.zeros(pts.shape[:2], dtype=bool)
    seen = np.zeros(pts.shape[:2], dtype=bool)
    for cam, depth in zip(cameras, depths):
        ray = pts - cam.translation  # (M, S, 3)
        towards = np.sum(nrm * ray, axis=-1) < 0
        facing |= towards
        cam_pts = ray @ cam.rotation  # camera frame
        z = cam_pts[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam_pts @ cam.intrinsic.T)[..., :2] / z[..., None]
        ok = towards & (z > 0.1) & (uv[..., 0] >= 0) & (uv[..., 0] < cam.width) & (uv[..., 1] >= 0)
        ok &= uv[..., 1] < cam.height
        u = np.clip(np.nan_to_num(uv[..., 0]), 0, cam.width - 1).astype(np.int64)
        v = np.clip(np.nan_to_num(uv[..., 1]), 0, cam.height - 1).astype(np.int64)
        dist = np.linalg.norm(ray, axis=-1)
        # Nothing nearer than the sample (with a tolerance for the pixel footprint and the geometry margin).
        ok &= depth[v * cam.width + u] >= dist - (0.1 + 0.02 * dist)
        seen |= ok
    return seen.sum(axis=1) / np.maximum(facing.sum(axis=1), 1)

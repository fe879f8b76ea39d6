"""Procedural scenes with exact geometric depth: a pinhole camera, a room or an open view, solids on the ground,
and upright objects standing on the ground or on a solid's top.

Conventions (all lengths in metres, angles in radians):

- The camera sits at the world origin, world y points up, the camera looks along +z pitched down by `pitch`
  about the x axis (no roll). Images are square, `size` pixels a side; pixel (row v, column u) has its centre
  at (u + 0.5, v + 0.5).
- A pixel's ray is d = R @ (x, y, 1) with x, y its camera-frame coordinates divided by the focal length, so
  the ray parameter t of a hit point IS its planar depth (z in the camera frame, along the optical axis),
  the usual convention for depth maps.
- Because there is no roll, dy and dz of the ray depend on the row only and dx on the column only.
- The scene: ground plane y = -height; indoors a back wall z = wall_dist, side walls x = left / x = right and a
  ceiling; outdoors an open ground to the horizon (or a far wall with a top) under the sky (depth = the far
  limit); boxes, cylinders and spheres on the ground (`mdeas.synth.solids`).
- Two priors draw the camera, the room, its solids and their materials (CAMERA_PRIORS): "metric", a world of
  real sizes in metres seen by a hand-held camera, whose depth has an absolute scale (the camera's height, the
  room's, the furniture's and the materials' sizes do not depend on each other), and "wide", a world without
  absolute scale (camera 0.3-2.2 m high, the room and its solids scaled with it, materials of any size).
- An object is a billboard in the world-vertical plane z = z0 standing on a horizontal support (the ground or a
  solid's top, `base` m above the ground): its bottom edge lies on the support at that depth, so on the image
  row of its contact point the object's depth equals the support's. It is z-tested against the scene, so
  solids in front of it hide it. With pitch = 0 the billboard is fronto-parallel and its depth is z0 everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mdeas.synth.lighting import Light, billboard_shadow, sample_light, visibility
from mdeas.synth.shapes import Sprite
from mdeas.synth.solids import Solid, Vec, sample_solids
from mdeas.synth.textures import FAMILIES, fbm, random_colour, texture

GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL, SKY, CEILING, SOLID = range(7)
_PLANE_NORMALS = {GROUND: (0, 1, 0), CEILING: (0, -1, 0), BACK_WALL: (0, 0, -1), LEFT_WALL: (1, 0, 0)}
_PLANE_NORMALS[RIGHT_WALL] = (-1, 0, 0)
_SOLID_TRIES = 20
CAMERA_PRIORS = ("metric", "wide")  # see sample_camera, sample_room, sample_room_solids


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at the origin: `size` px square image, `focal` px, `height` m above the ground, `pitch` rad
    down."""

    size: int
    focal: float
    height: float
    pitch: float

    def ray_dirs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ray directions scaled so that t = planar depth: dx [1, W], dy [H, 1], dz [H, 1] (float64)."""
        c = (np.arange(self.size, dtype=np.float64) + 0.5 - self.size / 2) / self.focal
        x, y = c, -c
        s, co = math.sin(self.pitch), math.cos(self.pitch)
        return x[None, :], (y * co - s)[:, None], (y * s + co)[:, None]

    def plane_depth(self, base: float = 0.0) -> np.ndarray:
        """Planar depth (m) of the horizontal plane `base` m above the ground on each image row, [H] float64;
        inf where the ray never meets it."""
        _, dy, _ = self.ray_dirs()
        with np.errstate(divide="ignore"):
            t = (base - self.height) / dy[:, 0]
        return np.where(t > 0, t, np.inf)

    def project(self, xw: np.ndarray, yw: np.ndarray, zw: np.ndarray) -> tuple[np.ndarray, ...]:
        """World points (m) → continuous pixel coordinates (u, v; pixel centres at integers) and planar depth."""
        s, co = math.sin(self.pitch), math.cos(self.pitch)
        yc = co * yw + s * zw
        zc = -s * yw + co * zw
        u = self.focal * xw / zc + self.size / 2 - 0.5
        v = -self.focal * yc / zc + self.size / 2 - 0.5
        return u, v, zc


@dataclass(frozen=True)
class Room:
    """Planes around the camera (m): back wall z = wall_dist (inf: none), side walls x = left (< 0) / x = right
    (> 0) or None, wall_top: height of the walls above the ground (inf: no sky above them), ceiling: its height
    above the ground (inf: none); outdoor: lit by the sun."""

    wall_dist: float
    wall_top: float = math.inf
    left: float | None = None
    right: float | None = None
    ceiling: float = math.inf
    outdoor: bool = False


@dataclass(frozen=True, eq=False)
class SceneInfo:
    """What a later stage needs to know about a rendered background.

    surface: [H, W] int8 codes (GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL, SKY, CEILING, SOLID); solid_id: [H, W]
    int8 index into `solids` (-1 elsewhere); normal: unit normals, three [H, W] arrays; max_depth_m: the far
    limit (m); haze_m: distance (m) over which the haze takes 1/e of a colour; horizon: RGB [3] of the haze.
    """

    camera: Camera
    room: Room
    solids: tuple[Solid, ...]
    light: Light
    surface: np.ndarray
    solid_id: np.ndarray
    normal: Vec
    max_depth_m: float
    haze_m: float
    horizon: np.ndarray

    def support_base(self) -> np.ndarray:
        """Height (m) above the ground of the horizontal support seen at each pixel, [H, W] float64: 0 on the
        ground, a solid's height on its flat top, nan elsewhere."""
        return support_base(self.surface, self.solid_id, self.normal, self.solids)


def support_base(surface: np.ndarray, solid_id: np.ndarray, normal: Vec, solids: tuple[Solid, ...]) -> np.ndarray:
    """See SceneInfo.support_base."""
    heights = np.array([s.height if s.flat_top else np.nan for s in solids] + [np.nan])
    top = (surface == SOLID) & (normal[1] > 0.999)
    return np.where(top, heights[solid_id], np.where(surface == GROUND, 0.0, np.nan))


@dataclass(frozen=True, eq=False)
class Foreground:
    """A rendered object. rgb: [H, W, 3] in [0, 1]; alpha: [H, W] in [0, 1] (0 off the object);
    depth: [H, W] planar depth in m (inf off the object); contact: (row, column) of the contact pixel;
    x0, z0: world position (m) of the contact point; base: height (m) of its support above the ground."""

    sprite: Sprite
    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    contact: tuple[int, int]
    x0: float
    z0: float
    base: float = 0.0


@dataclass(frozen=True, eq=False)
class Render:
    """A rendered background. clean: scene colour [H, W, 3] (linear, about [0, 1]); direct: the part of it lit
    by the source, which a shadow removes; depth: float32 [H, W] planar depth in m."""

    clean: np.ndarray
    direct: np.ndarray
    depth: np.ndarray
    scene: SceneInfo


# --------------------------------------------------------------------------------------------------------------
# Camera, room, ray casting


def sample_camera(rng: np.random.Generator, size: int, prior: str = "metric") -> Camera:
    """Random camera of a prior (CAMERA_PRIORS).

    metric: a hand-held camera at chest to eye level, height 1.3-1.8 m, horizontal FOV 55-70 deg (a phone's or a
    kit lens'), pitch 5-20 deg down;
    wide: FOV 45-80 deg, height 0.3-2.2 m (log-uniform: from table-top to eye level and above), pitch 0-32 deg
    down.
    """
    if prior == "metric":
        fov, height, pitch = rng.uniform(55, 70), rng.uniform(1.3, 1.8), rng.uniform(5, 20)
    else:
        fov, height, pitch = rng.uniform(45, 80), np.exp(rng.uniform(np.log(0.3), np.log(2.2))), rng.uniform(0, 32)
    focal = size / 2 / math.tan(math.radians(fov) / 2)
    return Camera(size, focal, float(height), math.radians(pitch))


def sample_room(rng: np.random.Generator, camera: Camera, prior: str = "metric") -> Room:
    """Random room (or open view) around the camera, of a prior (CAMERA_PRIORS).

    metric, lengths in metres that do not depend on the camera: indoors (p = 0.6) a back wall 6-10 m away, side
    walls 1.5-4 m aside (p = 0.6 each), a ceiling 2.4-3.2 m high; outdoors open ground to the horizon or (p =
    0.5) a facade 5-8 m away, 2.5-15 m high with sky above, side walls 1.5-4 m aside with p = 0.2 each.
    wide: indoors (p = 0.6) back wall 3-15 m, side walls 1.5-6 m aside (p = 0.6 each), a ceiling 2.3-4 m up
    (above the camera); outdoors open ground or (p = 0.5) a far wall 8-40 m away with a top 0.5-15 m above the
    camera, side walls with p = 0.2 each. Lengths indoors scale with the camera height (a low camera sees a
    small world), and the back wall stands far enough for the ground to fill the bottom of the image.
    """
    if prior == "metric":
        if rng.random() < 0.6:
            side, wall_dist, top, ceiling = 0.6, float(rng.uniform(6, 10)), math.inf, float(rng.uniform(2.4, 3.2))
        else:
            side, ceiling = 0.2, math.inf
            wall_dist = float(rng.uniform(5, 8)) if rng.random() < 0.5 else math.inf
            top = float(rng.uniform(2.5, 15))
        left = -float(rng.uniform(1.5, 4)) if rng.random() < side else None
        right = float(rng.uniform(1.5, 4)) if rng.random() < side else None
        return Room(wall_dist, top, left, right, ceiling, outdoor=math.isinf(ceiling))
    scale = max(camera.height / 1.6, 0.5)
    bottom_ray = camera.pitch + math.atan(camera.size / 2 / camera.focal)  # below the horizon
    nearest_wall = 2.5 * camera.height / math.tan(bottom_ray)  # so that the ground fills some rows
    if rng.random() < 0.6:
        side = 0.6
        wall_dist, top = max(float(rng.uniform(3, 15) * scale), nearest_wall), math.inf
        ceiling = max(float(rng.uniform(2.3, 4.0) * scale), camera.height + 0.3)
    else:
        side = 0.2
        wall_dist = max(float(rng.uniform(8, 40)), nearest_wall) if rng.random() < 0.5 else math.inf
        top, ceiling = float(camera.height + rng.uniform(0.5, 15)), math.inf
    left = -float(rng.uniform(1.5, 6) * scale) if rng.random() < side else None
    right = float(rng.uniform(1.5, 6) * scale) if rng.random() < side else None
    return Room(wall_dist, top, left, right, ceiling, outdoor=math.isinf(ceiling))


def sample_room_solids(
    rng: np.random.Generator, camera: Camera, room: Room, max_depth_m: float, prior: str = "metric"
) -> tuple[Solid, ...]:
    """Solids on the ground of a room, in view of the camera (`sample_solids`), of a prior (CAMERA_PRIORS).

    metric: between 2.5 m and 10 m ahead (and 0.5 m before the back wall), furniture-sized whatever the camera:
    half extents 0.1-0.84 m, heights 0.14-1.75 m (0.7 x the ranges of `sample_solids`); wide: between max(0.8 x
    camera height, 0.6 m) and 4 + 6 x camera height m, sizes times 0.35 + 0.65 x min(camera height / 1.6 m, 1.4),
    so that a low camera sees a table-top world. Never beyond 0.7 x max_depth_m.
    """
    if prior == "metric":
        near, far, scale = 2.5, min(room.wall_dist - 0.5, 10.0, max_depth_m * 0.7), 0.7
    else:
        near = max(0.8 * camera.height, 0.6)
        far = min(room.wall_dist - 0.5, 4 + 6 * camera.height, max_depth_m * 0.7)
        scale = 0.35 + 0.65 * min(camera.height / 1.6, 1.4)
    limits = (room.left if room.left is not None else -math.inf, room.right if room.right is not None else math.inf)
    half_fov = math.atan(camera.size / 2 / camera.focal)
    return tuple(sample_solids(rng, -camera.height, half_fov, near, max(far, near + 0.5), limits, scale))


def trace_scene(
    camera: Camera, room: Room, solids: tuple[Solid, ...], max_depth_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Vec]:
    """Cast every pixel's ray: planar depth [H, W] float64 in m (clamped to max_depth_m; sky = max_depth_m), the
    surface code [H, W] int8 and solid index [H, W] int8 (-1: none) of the nearest hit, and its unit normal."""
    dx, dy, dz = camera.ray_dirs()
    shape = (camera.size, camera.size)
    inf = np.full(shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = {
            GROUND: np.where(dy < 0, -camera.height / dy, np.inf),
            CEILING: np.where(dy > 0, (room.ceiling - camera.height) / dy, np.inf),
            BACK_WALL: np.where(dz > 0, room.wall_dist / dz, np.inf),
            LEFT_WALL: np.where(dx < 0, (room.left or 0.0) / dx, np.inf) if room.left is not None else inf,
            RIGHT_WALL: np.where(dx > 0, (room.right or 0.0) / dx, np.inf) if room.right is not None else inf,
        }
    codes = list(planes)
    hits = [np.broadcast_to(planes[c], shape) for c in codes]
    solid_normals = []
    for solid in solids:
        t, normal = solid.intersect((0.0, 0.0, 0.0), (dx, dy, dz))
        hits.append(np.broadcast_to(t, shape))
        solid_normals.append([np.broadcast_to(n, shape) for n in normal])
    nearest = np.argmin(np.stack(hits), axis=0)
    depth = np.take_along_axis(np.stack(hits), nearest[None], axis=0)[0]
    surface = np.array(codes + [SOLID] * len(solids), np.int8)[nearest]
    solid_id = np.where(nearest >= len(codes), nearest - len(codes), -1).astype(np.int8)
    normal = [np.zeros(shape) for _ in range(3)]
    for code in codes:
        for k in range(3):
            normal[k][surface == code] = _PLANE_NORMALS[code][k]
    for i, solid_normal in enumerate(solid_normals):
        sel = solid_id == i
        for k in range(3):
            normal[k][sel] = solid_normal[k][sel]
    hit_y = np.where(np.isfinite(depth), depth * dy, 0.0)
    walls = np.isin(surface, [BACK_WALL, LEFT_WALL, RIGHT_WALL])
    sky = (walls & (hit_y > room.wall_top - camera.height)) | ~np.isfinite(depth)
    surface[sky] = SKY
    for k in range(3):
        normal[k][sky] = 0.0
    depth = np.where(sky, max_depth_m, np.minimum(depth, max_depth_m))
    return depth, surface, solid_id, (normal[0], normal[1], normal[2])


# --------------------------------------------------------------------------------------------------------------
# Shading


def _plane_uv(code: int, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane texture coordinates (m) of points on one of the room's planes."""
    return {GROUND: (x, z), CEILING: (x, z), BACK_WALL: (x, y), LEFT_WALL: (z, y), RIGHT_WALL: (-z, y)}[code]


def _sky_colour(rng: np.random.Generator, camera: Camera, sel: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """Sky colours [N, 3]: a vertical gradient from `horizon` with soft clouds."""
    zenith = np.clip(random_colour(rng, (0.2, 0.7), (0.5, 1.0)) * [0.6, 0.8, 1.0], 0, 1)
    dx, dy, dz = (np.broadcast_to(d, sel.shape)[sel] for d in camera.ray_dirs())
    elevation = np.clip(dy / np.sqrt(dx * dx + dy * dy + dz * dz), 0, 1)[:, None]
    colour = horizon * (1 - elevation) + zenith * elevation
    rows, cols = np.nonzero(sel)
    clouds = fbm(rng, cols / camera.size, rows / camera.size, rng.uniform(0.2, 0.6), 0.0, octaves=4)
    cover = rng.uniform(0, 0.8)
    return colour + (np.clip(clouds - (1 - cover), 0, 1) / max(cover, 1e-3))[:, None] * 0.4


def footprint_occlusion(x: np.ndarray, z: np.ndarray, solid: Solid, strength: float) -> np.ndarray:
    """Ambient darkening factor in (0, 1] of the ground at world (x, z) around a solid's footprint."""
    lx, lz = solid.local_xz(x, z)
    if solid.kind == "box":
        outside = np.hypot(np.maximum(np.abs(lx) - solid.rx, 0), np.maximum(np.abs(lz) - solid.rz, 0))
    else:
        outside = np.maximum(np.hypot(lx, lz) - solid.rx * (1.0 if solid.kind == "cylinder" else 0.5), 0)
    return 1 - strength * np.exp(-((outside / (0.3 * min(solid.rx, solid.rz) + 0.05)) ** 2))


def shade_scene(
    rng: np.random.Generator,
    camera: Camera,
    solids: tuple[Solid, ...],
    light: Light,
    depth: np.ndarray,
    surface: np.ndarray,
    solid_id: np.ndarray,
    normal: Vec,
    haze_m: float,
    horizon: np.ndarray,
    physical: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Scene colour [H, W, 3] and its directly lit part: a material per surface and solid (feature sizes of
    their family if `physical`, see `texture`), Lambert light with soft shadows of the solids, ambient occlusion
    at their feet, haze."""
    shape = depth.shape
    dx, dy, dz = (np.broadcast_to(d, shape) for d in camera.ray_dirs())
    x, y, z = depth * dx, depth * dy, depth * dz
    albedo = np.zeros((*shape, 3))
    normal_dot = np.abs(normal[0] * dx + normal[1] * dy + normal[2] * dz)
    footprint = depth / (camera.focal * np.maximum(normal_dot, 1e-3))
    for code in (GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL, CEILING):
        sel = surface == code
        if sel.any():
            u, v = _plane_uv(code, x[sel], y[sel], z[sel])
            albedo[sel] = texture(rng, u, v, footprint[sel], FAMILIES, physical) * rng.uniform(0.6, 1.1)
    for i, solid in enumerate(solids):
        sel = solid_id == i
        if sel.any():
            u, v = solid.surface_uv(x[sel], y[sel], z[sel], tuple(n[sel] for n in normal))
            albedo[sel] = texture(rng, u, v, footprint[sel], FAMILIES, physical)
    lit = surface != SKY
    sun = np.zeros(shape)
    points, normals = (x[lit], y[lit], z[lit]), tuple(n[lit] for n in normal)
    sun[lit] = light.lambert(normals) * visibility(points, normals, light, solids)
    ambient = np.ones(shape)
    strength = rng.uniform(0.2, 0.6)
    for solid in solids:
        ambient = np.where(surface == GROUND, ambient * footprint_occlusion(x, z, solid, strength), ambient)
    haze = np.exp(-depth / haze_m)[..., None]
    sunlit = albedo * sun[..., None] * light.sun
    clean = (albedo * ambient[..., None] * light.ambient + sunlit) * haze + horizon * (1 - haze)
    direct = sunlit * haze
    sky = surface == SKY
    if sky.any():
        clean[sky] = _sky_colour(rng, camera, sky, horizon)
    return clean, direct


def render_background(rng: np.random.Generator, size: int, max_depth_m: float = 20.0, prior: str = "metric") -> Render:
    """A random scene seen by a random camera, both of a prior (CAMERA_PRIORS: "metric", a world of real sizes
    seen from eye level; "wide", one without absolute scale), with at least 15 % of the image a support an object
    can stand on: solids are drawn again until then (the last try has none; the room always shows some ground).
    Under the metric prior the materials' feature sizes are those of their family (`texture`)."""
    camera = sample_camera(rng, size, prior)
    room = sample_room(rng, camera, prior)
    for attempt in range(_SOLID_TRIES):
        solids = () if attempt == _SOLID_TRIES - 1 else sample_room_solids(rng, camera, room, max_depth_m, prior)
        depth, surface, solid_id, normal = trace_scene(camera, room, solids, max_depth_m)
        support = np.isfinite(support_base(surface, solid_id, normal, solids)) & (depth < 0.9 * max_depth_m)
        if support.mean() >= 0.15:
            break
    light = sample_light(rng, room.outdoor)
    haze_m = float(rng.uniform(30, 250) if room.outdoor else rng.uniform(80, 400))
    horizon = np.clip(random_colour(rng, (0.0, 0.3), (0.7, 1.0)), 0, 1)
    clean, direct = shade_scene(
        rng, camera, solids, light, depth, surface, solid_id, normal, haze_m, horizon, prior == "metric"
    )
    scene = SceneInfo(camera, room, solids, light, surface, solid_id, normal, max_depth_m, haze_m, horizon)
    return Render(clean, direct, depth.astype(np.float32), scene)


# --------------------------------------------------------------------------------------------------------------
# Foreground objects: billboards standing on a support


def sample_sprite(sprite: Sprite, a: np.ndarray, b: np.ndarray, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear alpha [...] and (if `rgb`) colour [..., 3] of a sprite at object coordinates a, b (m); alpha 0 off
    the canvas. b = 0 (the ground line) reads the canvas' last row exactly, so the contact row is never lost."""
    rows, cols = sprite.alpha.shape
    eps = 1e-9 * sprite.height_m
    inside = (b >= -eps) & (b <= sprite.height_m) & (np.abs(a) <= sprite.width_m / 2)
    r = np.clip((1 - b / sprite.height_m) * rows - 0.5, 0, rows - 1)
    c = np.clip((a / sprite.width_m + 0.5) * cols - 0.5, 0, cols - 1)
    r0, c0 = np.minimum(r.astype(np.int64), rows - 2), np.minimum(c.astype(np.int64), cols - 2)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    table = np.concatenate([sprite.alpha[..., None], sprite.rgb], axis=-1) if rgb else sprite.alpha[..., None]
    top = table[r0, c0] * (1 - fc) + table[r0, c0 + 1] * fc
    bottom = table[r0 + 1, c0] * (1 - fc) + table[r0 + 1, c0 + 1] * fc
    value = top * (1 - fr) + bottom * fr
    return np.where(inside, value[..., 0], 0.0), value[..., 1:]


def render_billboard(camera: Camera, sprite: Sprite, contact: tuple[int, int], base: float = 0.0) -> Foreground:
    """Stand `sprite` on the horizontal support `base` m above the ground, at the point seen by pixel `contact`.

    The object lies in the world plane z = z0 of that point; each pixel's ray is intersected with that plane
    (depth t = z0 / dz), so on the contact row the object's depth equals the support's. A sprite much finer
    than its image is area-averaged first (Sprite.resampled).
    """
    _, x0, z0 = (float(value) for value in _contact_points(camera, *contact, base))
    dx, dy, dz = camera.ray_dirs()
    size = camera.size
    rgb, alpha, depth = np.zeros((size, size, 3)), np.zeros((size, size)), np.full((size, size), np.inf)
    rows, cols = _billboard_bbox(camera, sprite, x0, z0, base)
    _, v, _ = _billboard_corners(camera, sprite, x0, z0, base)
    if np.isfinite(v).all():
        sprite = sprite.resampled(math.ceil(2 * (v.max() - v.min())))  # at most 2 canvas rows per image row
    if rows.start < rows.stop and cols.start < cols.stop:
        t = np.broadcast_to(z0 / dz[rows], (rows.stop - rows.start, cols.stop - cols.start))
        box_alpha, box_rgb = sample_sprite(sprite, t * dx[:, cols] - x0, t * dy[rows] + camera.height - base)
        alpha[rows, cols], rgb[rows, cols] = box_alpha, box_rgb
        depth[rows, cols] = np.where(box_alpha > 0, t, np.inf)
    return Foreground(sprite, rgb, alpha, depth, contact, x0, z0, base)


def _billboard_corners(camera: Camera, sprite: Sprite, x0, z0, base, scale=1.0) -> tuple[np.ndarray, ...]:
    """Image coordinates (u, v) and planar depth of the 4 corners of the billboard rectangle, each [4, N], for
    N placements (x0, z0, base, scale broadcast to [N])."""
    x0, z0, base, scale = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(q, np.float64)) for q in (x0, z0, base, scale))
    )
    a = np.array([-0.5, 0.5, -0.5, 0.5])[:, None] * sprite.width_m * scale
    up = np.array([0.0, 0.0, 1.0, 1.0])[:, None] * sprite.height_m * scale
    return camera.project(a + x0, up + base - camera.height, np.broadcast_to(z0, a.shape))


def _billboard_bbox(camera: Camera, sprite: Sprite, x0: float, z0: float, base: float) -> tuple[slice, slice]:
    """Image rows and columns covered by the billboard's rectangle (a margin of one pixel), clipped to the image."""
    u, v, zc = _billboard_corners(camera, sprite, x0, z0, base)
    if np.any(zc <= 1e-6):
        return slice(0, camera.size), slice(0, camera.size)

    def span(lo: float, hi: float) -> slice:
        return slice(max(int(np.floor(lo)) - 1, 0), min(int(np.ceil(hi)) + 2, camera.size))

    return span(v.min(), v.max()), span(u.min(), u.max())


def in_front(fg: Foreground, bg_depth: np.ndarray) -> np.ndarray:
    """Where the object is nearer than the background [H, W] (m): bool [H, W]. The tolerance lets float32
    background depth meet the object's float64 depth on the contact row."""
    return fg.depth <= bg_depth * (1 + 1e-6)


def composite(bg_rgb: np.ndarray, bg_depth: np.ndarray, fg: Foreground) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste an object into the scene with a depth test.

    bg_rgb: [H, W, 3]; bg_depth: [H, W] m. Returns rgb [H, W, 3] (soft alpha at the edges), mask bool [H, W]
    (alpha > 0.5 and in front of the background) and the scene's depth [H, W] m.
    """
    alpha = np.where(in_front(fg, bg_depth), fg.alpha, 0.0)
    mask = alpha > 0.5
    rgb = bg_rgb * (1 - alpha[..., None]) + fg.rgb * alpha[..., None]
    depth = np.where(mask, np.minimum(fg.depth, bg_depth), bg_depth)
    return rgb, mask, depth


def _contact_points(camera: Camera, v0: np.ndarray, u0: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, ...]:
    """Planar depth t0 and world x0, z0 (m) of the points on supports `base` m high seen by pixels (v0, u0)."""
    dx, dy, dz = camera.ray_dirs()
    t0 = (base - camera.height) / dy[v0, 0]
    return t0, t0 * dx[0, u0], t0 * dz[v0, 0]


def _extent(
    camera: Camera, sprite: Sprite, x0: np.ndarray, z0: np.ndarray, base: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Longer side (px) of the projected bounding box of the sprite scaled by k [N] standing at world (x0, z0) [N]
    (m) on supports `base` [N] m high (nan where a corner is behind the camera), and whether it lies wholly in
    view."""
    u, v, zc = _billboard_corners(camera, sprite, x0, z0, base, k)
    front = (zc > 1e-6).all(0)
    with np.errstate(invalid="ignore"):
        side = np.where(front, np.maximum(np.ptp(u, axis=0), np.ptp(v, axis=0)), np.nan)
    inside = front & (u.min(0) >= -0.5) & (u.max(0) <= camera.size - 0.5) & (v.min(0) >= -0.5)
    return side, inside


def fit_scale(
    camera: Camera, sprite: Sprite, v0: np.ndarray, u0: np.ndarray, base: np.ndarray, target_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scale factors [N] that make the sprite's projected bounding box `target_px` on its longer side when it
    stands at contact pixels (v0, u0) [N] on supports `base` m high, and whether it then lies wholly in view.

    The first guess ignores perspective across the object (its height from where the top edge must project,
    its width at the contact depth); three rescalings by target / measured side then make it exact to well
    under a pixel (the projected size is nearly proportional to the scale).
    """
    t0, x0, z0 = _contact_points(camera, v0, u0, base)
    s, co = math.sin(camera.pitch), math.cos(camera.pitch)
    m = (camera.size / 2 - 0.5 - (v0 - target_px)) / camera.focal  # yc / zc of the top edge
    with np.errstate(divide="ignore", invalid="ignore"):
        top_y = np.where(co + m * s > 1e-9, z0 * (m * co - s) / (co + m * s), np.inf)
    k = np.minimum((top_y - (base - camera.height)) / sprite.height_m, target_px * t0 / (camera.focal * sprite.width_m))
    for _ in range(3):
        side, _ = _extent(camera, sprite, x0, z0, base, k)
        k = np.where(side > 0, k * target_px / side, k)
    return k, _extent(camera, sprite, x0, z0, base, k)[1]


def place_foreground(
    rng: np.random.Generator,
    scene: SceneInfo,
    bg_depth: np.ndarray,
    sprite: Sprite,
    target_px: float,
    resize: bool = True,
    tries: int = 40,
) -> Foreground:
    """Stand `sprite` on a random support pixel of the scene, the ground or a solid's flat top that its whole
    bottom edge then rests on, so that its bounding box is about `target_px` on its longer side on the image.

    resize (the wide prior): the sprite is rescaled to exactly `target_px` wherever it stands; contact pixels
    where the object lies wholly in view at 0.4-2.5 x its own size are preferred. Otherwise (the metric prior)
    it keeps its size in metres and the target decides where it stands: contact pixels where it lies wholly in
    view at an image size within 25 % of the target are preferred, or when the scene has none (the object would
    have to stand nearer than the ground seen, or farther than the room), within 10 % of the size nearest to it.
    Then come any in view, then any; with p = 0.3 a preferred solid's top (resize: any in view) comes first. A
    placement is kept when the object's contact row is visible and at least 60 % of it survives the depth test
    against bg_depth [H, W] (m).
    """
    camera = scene.camera
    base_map = scene.support_base()
    grid = np.zeros(base_map.shape, bool)  # candidates on a grid of about 96 x 96 with a random phase
    stride = max(1, camera.size // 96)
    phase = rng.integers(stride, size=2)
    grid[phase[0] :: stride, phase[1] :: stride] = True
    rows, cols = np.nonzero(grid & np.isfinite(base_map) & (bg_depth < 0.9 * scene.max_depth_m))
    base = base_map[rows, cols]
    _, x0, z0 = _contact_points(camera, rows, cols, base)
    if resize:
        k, inside = fit_scale(camera, sprite, rows, cols, base, target_px)
        usable = np.isfinite(k) & (k > 0)
        off = np.abs(np.log(np.where(usable, k, 1.0)))  # how far from its own size
    else:
        k = np.ones(rows.size)
        side, inside = _extent(camera, sprite, x0, z0, base, k)
        usable = np.isfinite(side) & (side > 0)
        off = np.abs(np.log(np.where(usable, side, target_px) / target_px))  # how far from the target size
    half = np.where(usable, k, 0.0) * sprite.width_m / 2
    ids = scene.solid_id[rows, cols]
    for i, solid in enumerate(scene.solids):
        sel = (ids == i) & (base > 0)
        usable[sel] &= solid.on_top(x0[sel] - half[sel], z0[sel]) & solid.on_top(x0[sel] + half[sel], z0[sel])
    if resize:
        tolerance = np.log(2.5)
    else:
        nearest = off[usable & inside].min() if (usable & inside).any() else 0.0
        tolerance = max(np.log(1.25), nearest + np.log(1.1))
    preferred = usable & inside & (off < tolerance)
    pools = [preferred, usable & inside, usable]
    if rng.random() < 0.3:
        pools.insert(0, (usable & inside if resize else preferred) & (base > 0))
    pools = [np.flatnonzero(p) for p in pools if p.any()]
    for attempt in range(tries if pools else 0):
        pool = pools[min(attempt * len(pools) // tries, len(pools) - 1)]
        i = int(pool[rng.integers(pool.size)])
        fg = render_billboard(camera, sprite.scaled(float(k[i])), (int(rows[i]), int(cols[i])), float(base[i]))
        mask = in_front(fg, bg_depth) & (fg.alpha > 0.5)
        if mask[fg.contact[0]].any() and mask.sum() >= 0.6 * (fg.alpha > 0.5).sum():
            return fg
    raise RuntimeError(f"could not place a {sprite.kind} of {target_px:.0f} px after {tries} tries")


def _world_points(camera: Camera, depth: np.ndarray, sel: np.ndarray) -> Vec:
    """World coordinates (m) of the selected pixels [H, W] at planar depth `depth` [H, W]."""
    dx, dy, dz = (np.broadcast_to(d, sel.shape)[sel] for d in camera.ray_dirs())
    t = depth[sel]
    return t * dx, t * dy, t * dz


def light_foreground(scene: SceneInfo, fg: Foreground) -> Foreground:
    """The object under the scene's light: its albedo times ambient plus source light (wrapped Lambert, as if
    fill-lit, on a normal that turns sideways towards its left and right edges, shadowed by the solids), then
    haze."""
    sel = fg.alpha > 0
    x, y, z = _world_points(scene.camera, fg.depth, sel)
    across = np.clip((x - fg.x0) / (fg.sprite.width_m / 2), -1, 1) * 1.2
    normal = (np.sin(across), np.zeros_like(across), -np.cos(across))
    light = scene.light
    sun = (light.lambert(normal, wrap=0.8) * visibility((x, y, z), normal, light, scene.solids))[:, None]
    haze = np.exp(-fg.depth[sel] / scene.haze_m)[:, None]
    rgb = fg.rgb.copy()
    rgb[sel] = fg.rgb[sel] * (light.ambient + sun * light.sun) * haze + scene.horizon * (1 - haze)
    return Foreground(fg.sprite, rgb, fg.alpha, fg.depth, fg.contact, fg.x0, fg.z0, fg.base)


def object_shadow(scene: SceneInfo, bg_depth: np.ndarray, fg: Foreground) -> np.ndarray:
    """Fraction [H, W] of the light source the object hides from each background pixel (0 on the sky). Only
    pixels whose ray towards the source's centre passes near the object's rectangle are traced."""
    sel = scene.surface != SKY
    x, y, z = (np.broadcast_to(d, sel.shape) * bg_depth.astype(np.float64) for d in scene.camera.ray_dirs())
    bottom = fg.base - scene.camera.height
    width, height = fg.sprite.width_m, fg.sprite.height_m
    centre = scene.light.directions.mean(0)
    if abs(centre[2]) > 1e-6:
        s = (fg.z0 - z) / centre[2]
        margin = 0.3 * np.abs(s) + 0.05 * height  # covers the source's angular size
        across, up = x + s * centre[0] - fg.x0, y + s * centre[1] - bottom
        sel &= (s > 0) & (np.abs(across) < width / 2 + margin) & (up > -margin) & (up < height + margin)

    def coverage(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return sample_sprite(fg.sprite, px - fg.x0, py - bottom, rgb=False)[0]

    hidden = np.zeros(sel.shape)
    hidden[sel] = billboard_shadow((x[sel], y[sel], z[sel]), scene.light, fg.z0, coverage)
    return hidden


def contact_occlusion(scene: SceneInfo, bg_depth: np.ndarray, fg: Foreground, strength: float) -> np.ndarray:
    """Ambient darkening factor [H, W] in (0, 1] of the object's support around the part of its bottom edge that
    touches it."""
    sprite = fg.sprite
    feet = np.flatnonzero(sprite.alpha[-1] > 0.5)
    cols = sprite.alpha.shape[1]
    a0, a1 = ((feet[[0, -1]] + np.array([0.0, 1.0])) / cols - 0.5) * sprite.width_m if feet.size else (0.0, 0.0)
    level = fg.base - scene.camera.height
    x, y, z = (np.broadcast_to(d, bg_depth.shape) * bg_depth for d in scene.camera.ray_dirs())
    on_support = (scene.normal[1] > 0.999) & (np.abs(y - level) < 1e-3 * (1 + abs(level)))
    dist = np.hypot(np.clip(x - fg.x0, a0, a1) - (x - fg.x0), z - fg.z0)
    blob = np.exp(-((dist / (0.15 * (a1 - a0) + 0.05 * sprite.height_m + 0.02)) ** 2))
    return np.where(on_support, 1 - strength * blob, 1.0)

"""Procedural scenes with exact geometric depth: a pinhole camera in a room and upright objects on its floor.

Conventions (all lengths in metres, angles in radians):

- The camera sits at the world origin, world y points up, the camera looks along +z pitched down by `pitch`
  about the x axis (no roll). Images are square, `size` pixels a side; pixel (row v, column u) has its centre
  at (u + 0.5, v + 0.5).
- A pixel's ray is d = R @ (x, y, 1) with x, y its camera-frame coordinates divided by the focal length, so
  the ray parameter t of a hit point IS its planar depth (z in the camera frame, along the optical axis),
  the usual convention for depth maps.
- Because there is no roll, dy and dz of the ray depend on the row only and dx on the column only.
- The room: ground plane y = -height, back wall z = wall_dist, optional side walls x = left / x = right,
  an optional wall top above which the sky is (depth = the far limit).
- An object is a billboard in the world-vertical plane z = z0 standing on the ground: its bottom edge is the
  ground line y = -height at that depth, so on the image row of its contact point the object's depth equals
  the ground's. With pitch = 0 the billboard is fronto-parallel and its depth is z0 everywhere.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL, SKY = 0, 1, 2, 3, 4

_LATTICE = 64  # side of the random lattices behind value noise and per-cell colours
_SPRITE_ROWS = 96  # resolution of an object's alpha/colour canvas along its height
_SUPERSAMPLE = 4  # silhouettes are drawn this much finer, then box-filtered into a soft alpha


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

    def ground_depth(self) -> np.ndarray:
        """Planar depth (m) of the ground plane on each image row, [H] float64; inf where the ray never meets it."""
        _, dy, _ = self.ray_dirs()
        dy = dy[:, 0]
        with np.errstate(divide="ignore"):
            return np.where(dy < 0, -self.height / dy, np.inf)

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
    """Planes around the camera (m): back wall z = wall_dist, side walls x = left (< 0) / x = right (> 0) or None,
    wall_top: height of the walls above the ground (inf: no sky)."""

    wall_dist: float
    wall_top: float = math.inf
    left: float | None = None
    right: float | None = None


@dataclass(frozen=True, eq=False)
class SceneInfo:
    """What a later stage needs to know about a rendered background.

    surface: [H, W] int8 codes (GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL, SKY); max_depth_m: the far limit (m).
    """

    camera: Camera
    room: Room
    surface: np.ndarray
    max_depth_m: float


@dataclass(frozen=True, eq=False)
class Sprite:
    """An object's look in its own plane. alpha: [R, C] in [0, 1]; rgb: [R, C, 3] in [0, 1]; row 0 is the top,
    the last row the ground contact line; the canvas spans `width_m` x `height_m` metres."""

    kind: str
    alpha: np.ndarray
    rgb: np.ndarray
    height_m: float
    width_m: float


@dataclass(frozen=True, eq=False)
class Foreground:
    """A rendered object. rgb: [H, W, 3] in [0, 1]; alpha: [H, W] in [0, 1] (0 off the object);
    depth: [H, W] planar depth in m (inf off the object); contact: (row, column) of the ground contact pixel;
    x0, z0: world position (m) of the contact point."""

    sprite: Sprite
    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    contact: tuple[int, int]
    x0: float
    z0: float


# --------------------------------------------------------------------------------------------------------------
# Noise and patterns (inputs are flat arrays of surface coordinates in metres)


def value_noise(lattice: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0, 1] at (x, y) in lattice cells; the lattice wraps around."""
    n = lattice.shape[0]
    xf, yf = np.floor(x), np.floor(y)
    tx, ty = x - xf, y - yf
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    i0, j0 = xf.astype(np.int64) % n, yf.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    top = lattice[j0, i0] + (lattice[j0, i1] - lattice[j0, i0]) * tx
    bottom = lattice[j1, i0] + (lattice[j1, i1] - lattice[j1, i0]) * tx
    return top + (bottom - top) * ty


def fbm(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    scale: float,
    footprint: np.ndarray | float,
    octaves: int = 3,
) -> np.ndarray:
    """Fractal value noise in [0, 1] with feature size `scale` (m); octaves finer than a pixel's `footprint` (m)
    fade out instead of aliasing."""
    lattices = rng.random((octaves, _LATTICE, _LATTICE))
    offsets = rng.random((octaves, 2)) * _LATTICE
    total = np.zeros_like(x)
    norm, amp = 0.0, 1.0
    for o in range(octaves):
        freq = 2.0**o / scale
        keep = np.clip(1.5 - 2.0 * footprint * freq, 0.0, 1.0)
        noise = value_noise(lattices[o], x * freq + offsets[o, 0], y * freq + offsets[o, 1])
        total += amp * keep * (noise - 0.5)
        norm += amp
        amp *= 0.5
    return np.clip(0.5 + total / norm * 1.6, 0.0, 1.0)


def cell_random(rng: np.random.Generator, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A random value in [0, 1) per integer cell (i, j), e.g. one shade per tile or brick."""
    lattice = rng.random((_LATTICE, _LATTICE))
    return lattice[j.astype(np.int64) % _LATTICE, i.astype(np.int64) % _LATTICE]


def _fade(pattern: np.ndarray, footprint: np.ndarray | float, feature_m: float) -> np.ndarray:
    """Blend a [0, 1] pattern towards 0.5 where a pixel covers more than about half a feature."""
    keep = np.clip(1.5 - 2.0 * footprint / feature_m, 0.0, 1.0)
    return 0.5 + (pattern - 0.5) * keep


def random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 1], shape [3], with saturation and value drawn from the given ranges."""
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _related_colour(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """A second colour of a material: either a shade of `colour` or, sometimes, a contrasting one."""
    if rng.random() < 0.3:
        return random_colour(rng, (0.0, 0.7), (0.2, 0.95))
    return np.clip(colour * rng.uniform(0.5, 1.4) + rng.normal(0, 0.05, 3), 0, 1)


def material(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, kinds: tuple[str, ...]
) -> np.ndarray:
    """Colour [N, 3] in [0, 1] of a random material at surface coordinates u, v (m, flat arrays [N]).

    kinds: any of "noise", "checker", "stripes", "planks", "bricks"; v runs along planks and brick rows stack
    along v.
    """
    kind = kinds[int(rng.integers(len(kinds)))]
    c1 = random_colour(rng, (0.05, 0.75), (0.25, 0.95))
    c2 = _related_colour(rng, c1)
    scale = float(np.exp(rng.uniform(np.log(0.25), np.log(2.5))))
    detail = fbm(rng, u, v, scale * rng.uniform(0.1, 0.4), footprint)
    if kind == "noise":
        p = fbm(rng, u, v, scale * 2, footprint, octaves=4)
    elif kind == "checker":
        p = _fade(((np.floor(u / scale) + np.floor(v / scale)) % 2).astype(np.float64), footprint, scale)
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        w = u * np.cos(angle) + v * np.sin(angle)
        p = _fade(0.5 + 0.5 * np.sin(2 * np.pi * w / scale), footprint, scale / 2)
    elif kind == "planks":
        width = scale * 0.5
        p = cell_random(rng, np.floor(u / width), np.zeros_like(u))
        seam = (u / width) % 1.0 < 0.06
        p = np.where(seam, 0.0, 0.3 + 0.7 * p)
        p = _fade(p, footprint, width * 0.5)
    elif kind == "bricks":
        bw, bh = scale * 0.6, scale * 0.25
        row = np.floor(v / bh)
        uu = u + 0.5 * bw * (row % 2)
        p = 0.6 * cell_random(rng, np.floor(uu / bw), row)
        mortar = ((v / bh) % 1.0 < 0.1) | ((uu / bw) % 1.0 < 0.05)
        p = _fade(np.where(mortar, 1.0, p), footprint, bh * 0.5)
    else:
        raise ValueError(f"unknown material kind {kind!r}")
    colour = c1 * (1 - p[:, None]) + c2 * p[:, None]
    return colour * (0.8 + 0.4 * detail[:, None])


# --------------------------------------------------------------------------------------------------------------
# Background: camera, room, ray casting, shading


def sample_camera(rng: np.random.Generator, size: int) -> Camera:
    """Random camera: horizontal FOV 50-70 deg, height 1.2-2.0 m, pitch 0-15 deg down."""
    fov = math.radians(rng.uniform(50, 70))
    focal = size / 2 / math.tan(fov / 2)
    return Camera(size, focal, float(rng.uniform(1.2, 2.0)), math.radians(rng.uniform(0, 15)))


def sample_room(rng: np.random.Generator, camera: Camera) -> Room:
    """Random room: back wall 6-18 m away, side walls 1.5-6 m aside (each with p = 0.35), a wall top with sky
    above it with p = 0.4."""
    wall_dist = float(rng.uniform(6, 18))
    top = float(camera.height + rng.uniform(0.8, 8)) if rng.random() < 0.4 else math.inf
    left = -float(rng.uniform(1.5, 6)) if rng.random() < 0.35 else None
    right = float(rng.uniform(1.5, 6)) if rng.random() < 0.35 else None
    return Room(wall_dist, top, left, right)


def trace_room(camera: Camera, room: Room, max_depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Cast every pixel's ray into the room: planar depth [H, W] float64 in m (clamped to max_depth_m; sky =
    max_depth_m) and the surface code [H, W] int8 of the nearest hit."""
    dx, dy, dz = camera.ray_dirs()
    shape = (camera.size, camera.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = [
            np.broadcast_to(np.where(dy < 0, -camera.height / dy, np.inf), shape),
            np.broadcast_to(np.where(dz > 0, room.wall_dist / dz, np.inf), shape),
            np.broadcast_to(np.where(dx < 0, (room.left or 0.0) / dx, np.inf), shape),
            np.broadcast_to(np.where(dx > 0, (room.right or 0.0) / dx, np.inf), shape),
        ]
    if room.left is None:
        hits[LEFT_WALL] = np.full(shape, np.inf)
    if room.right is None:
        hits[RIGHT_WALL] = np.full(shape, np.inf)
    stack = np.stack(hits)
    surface = np.argmin(stack, axis=0).astype(np.int8)
    depth = np.take_along_axis(stack, surface[None].astype(np.int64), axis=0)[0]
    hit_y = depth * dy  # world y of the hit; the camera is below the wall top so an upward ray never comes back
    sky = (surface != GROUND) & (hit_y > room.wall_top - camera.height)
    sky |= ~np.isfinite(depth)
    surface[sky] = SKY
    depth = np.where(sky, max_depth_m, np.minimum(depth, max_depth_m))
    return depth, surface


def _surface_coords(camera: Camera, depth: np.ndarray, code: int, sel: np.ndarray) -> tuple[np.ndarray, ...]:
    """In-plane coordinates (u, v in m) and pixel footprint (m) of the selected pixels of one surface."""
    dx, dy, dz = (np.broadcast_to(d, depth.shape)[sel] for d in camera.ray_dirs())
    t = depth[sel]
    x, y, z = t * dx, t * dy, t * dz
    normal_dot = {GROUND: dy, BACK_WALL: dz, LEFT_WALL: dx, RIGHT_WALL: dx}[code]
    footprint = t / (camera.focal * np.maximum(np.abs(normal_dot), 1e-3))
    u, v = {GROUND: (x, z), BACK_WALL: (x, y), LEFT_WALL: (z, y), RIGHT_WALL: (-z, y)}[code]
    return u, v, footprint


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


def shade_room(rng: np.random.Generator, camera: Camera, depth: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Colour [H, W, 3] in [0, 1] of the room: a material per surface, per-surface light, distance haze."""
    rgb = np.zeros((*depth.shape, 3))
    horizon = np.clip(random_colour(rng, (0.0, 0.3), (0.7, 1.0)), 0, 1)
    kinds = {
        GROUND: ("noise", "checker", "stripes", "planks"),
        BACK_WALL: ("noise", "checker", "stripes", "planks", "bricks"),
        LEFT_WALL: ("noise", "stripes", "planks", "bricks"),
        RIGHT_WALL: ("noise", "stripes", "planks", "bricks"),
    }
    for code in (GROUND, BACK_WALL, LEFT_WALL, RIGHT_WALL):
        sel = surface == code
        light = rng.uniform(0.55, 1.1)
        if sel.any():
            u, v, footprint = _surface_coords(camera, depth, code, sel)
            rgb[sel] = material(rng, u, v, footprint, kinds[code]) * light
    sky = surface == SKY
    if sky.any():
        rgb[sky] = _sky_colour(rng, camera, sky, horizon)
    haze = np.exp(-depth / rng.uniform(25, 120))[..., None]
    rgb = np.where(sky[..., None], rgb, rgb * haze + horizon * (1 - haze))
    return np.clip(rgb, 0, 1)


def render_background(
    rng: np.random.Generator, size: int, max_depth_m: float = 20.0
) -> tuple[np.ndarray, np.ndarray, SceneInfo]:
    """A random room seen by a random camera.

    Returns rgb uint8 [size, size, 3] (noise-free), planar depth float32 [size, size] in m (clamped to
    max_depth_m), and the SceneInfo (camera, room, surface codes).
    """
    camera = sample_camera(rng, size)
    room = sample_room(rng, camera)
    depth, surface = trace_room(camera, room, max_depth_m)
    rgb = shade_room(rng, camera, depth, surface)
    rgb8 = np.rint(rgb * 255).astype(np.uint8)
    return rgb8, depth.astype(np.float32), SceneInfo(camera, room, surface, max_depth_m)


# --------------------------------------------------------------------------------------------------------------
# Foreground objects: silhouettes drawn in their own plane, then placed on the ground


class _Canvas:
    """Supersampled drawing surface in object coordinates: a (m, centred) across, b (m, up from the ground)."""

    def __init__(self, width_m: float, height_m: float, rows: int) -> None:
        self.width_m, self.height_m = width_m, height_m
        self.rows, self.cols = rows, max(4, round(rows * width_m / height_m))
        self.image = Image.new("L", (self.cols * _SUPERSAMPLE, self.rows * _SUPERSAMPLE), 0)
        self.draw = ImageDraw.Draw(self.image)

    def px(self, a: float, b: float) -> tuple[float, float]:
        """Object coordinates (m) → supersampled canvas pixel coordinates."""
        return (
            (a / self.width_m + 0.5) * self.cols * _SUPERSAMPLE,
            (1 - b / self.height_m) * self.rows * _SUPERSAMPLE,
        )

    def ellipse(self, a: float, b: float, ra: float, rb: float) -> None:
        (x0, y0), (x1, y1) = self.px(a - ra, b + rb), self.px(a + ra, b - rb)
        self.draw.ellipse((x0, y0, x1, y1), fill=255)

    def rect(self, a0: float, b0: float, a1: float, b1: float) -> None:
        (x0, y0), (x1, y1) = self.px(a0, b1), self.px(a1, b0)
        self.draw.rectangle((x0, y0, x1, y1), fill=255)

    def polygon(self, points: list[tuple[float, float]]) -> None:
        self.draw.polygon([self.px(a, b) for a, b in points], fill=255)

    def line(self, points: list[tuple[float, float]], thickness_m: float) -> None:
        width = max(1, round(thickness_m / self.width_m * self.cols * _SUPERSAMPLE))
        self.draw.line([self.px(a, b) for a, b in points], fill=255, width=width, joint="curve")

    def alpha(self) -> np.ndarray:
        """Box-filtered coverage, [rows, cols] float64 in [0, 1]."""
        small = self.image.resize((self.cols, self.rows), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float64) / 255.0


def _person(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """Head, torso, arms and two legs reaching below the ground line."""
    torso = h * rng.uniform(0.09, 0.15)
    c.ellipse(rng.normal(0, 0.01) * h, 0.925 * h, 0.065 * h, 0.075 * h)
    c.rect(-torso, 0.46 * h, torso, 0.84 * h)
    c.rect(-0.03 * h, 0.8 * h, 0.03 * h, 0.87 * h)
    for side in (-1, 1):
        hand = (side * (torso + rng.uniform(0.02, 0.08) * h), rng.uniform(0.42, 0.6) * h)
        c.line([(side * torso * 0.9, 0.82 * h), hand], 0.055 * h)
        leg = rng.uniform(0.045, 0.075) * h
        foot = side * rng.uniform(0.02, 0.12) * h
        hip_in, hip_out = (side * 0.005 * h, 0.48 * h), (side * torso, 0.48 * h)
        c.polygon([hip_in, hip_out, (foot + side * leg, -0.05 * h), (foot - side * leg * 0.2, -0.05 * h)])


def _blob(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A union of ellipses on a wide base ellipse."""
    w = c.width_m
    c.ellipse(rng.uniform(-0.1, 0.1) * w, 0.1 * h, rng.uniform(0.25, 0.45) * w, 0.2 * h)
    for _ in range(int(rng.integers(3, 7))):
        a, b = rng.uniform(-0.25, 0.25) * w, rng.uniform(0.2, 0.75) * h
        c.ellipse(a, b, rng.uniform(0.15, 0.3) * w, rng.uniform(0.12, 0.25) * h)


def _rock(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A star-shaped polygon with its lower part flattened onto the ground."""
    n = int(rng.integers(7, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.65, 1.0, n)
    points = []
    for angle, r in zip(angles, radii, strict=True):
        a = 0.5 * c.width_m * r * np.cos(angle)
        b = 0.5 * h + 0.5 * h * r * np.sin(angle)
        points.append((float(a), float(b) if b > 0.15 * h else -0.02 * h))
    c.polygon(points)


def _furniture(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A crate, a table (top and legs) or a cabinet on short legs."""
    w = c.width_m / 2
    variant = int(rng.integers(3))
    if variant == 0:
        c.rect(-0.95 * w, -0.05 * h, 0.95 * w, rng.uniform(0.85, 1.0) * h)
        return
    top = (0.85 * h, 1.0 * h) if variant == 1 else (0.2 * h, 1.0 * h)
    c.rect(-w, top[0], w, top[1])
    leg = rng.uniform(0.05, 0.12) * w
    for a in (-w + leg, w - 2 * leg):
        c.rect(a - leg * 0.5, -0.05 * h, a + leg * 1.5, top[0] + 0.01 * h)


def _plant(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A pot with foliage of ellipses above it."""
    w = c.width_m
    pot_h, pot_w = rng.uniform(0.2, 0.35) * h, rng.uniform(0.18, 0.3) * w
    c.polygon([(-pot_w, pot_h), (pot_w, pot_h), (0.75 * pot_w, -0.05 * h), (-0.75 * pot_w, -0.05 * h)])
    c.rect(-0.03 * w, pot_h * 0.9, 0.03 * w, 0.6 * h)
    for _ in range(int(rng.integers(4, 9))):
        a, b = rng.uniform(-0.3, 0.3) * w, rng.uniform(pot_h + 0.2 * h, 0.82 * h)
        c.ellipse(a, b, rng.uniform(0.1, 0.2) * w, rng.uniform(0.08, 0.17) * h)


# kind → (draw function, height range m, width / height range)
SPRITE_KINDS = {
    "person": (_person, (1.0, 2.0), (0.42, 0.5)),
    "blob": (_blob, (0.5, 1.8), (0.5, 1.3)),
    "rock": (_rock, (0.5, 1.5), (0.6, 1.4)),
    "furniture": (_furniture, (0.5, 1.5), (0.6, 1.6)),
    "plant": (_plant, (0.6, 2.0), (0.4, 0.8)),
}


def _sprite_colour(rng: np.random.Generator, kind: str, a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    """Colour [R, C, 3] in [0, 1] of an object at object coordinates a, b (m): regions by kind, a pattern, shading."""
    flat_a, flat_b = a.ravel(), b.ravel()
    footprint = np.full(flat_a.shape, h / _SPRITE_ROWS)
    base = material(rng, flat_a, flat_b, footprint, ("noise", "checker", "stripes", "planks"))
    if kind == "person":
        trousers = random_colour(rng, (0.0, 0.6), (0.1, 0.7))
        skin = np.array(colorsys.hsv_to_rgb(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.3, 0.95)))
        base = np.where((flat_b < 0.47 * h)[:, None], trousers * (0.85 + 0.3 * base.mean(1, keepdims=True)), base)
        base = np.where((flat_b > 0.855 * h)[:, None], skin, base)
    elif kind == "plant":
        leaf = np.array(colorsys.hsv_to_rgb(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.8)))
        base = np.where((flat_b > 0.4 * h)[:, None], leaf * (0.7 + 0.6 * base.mean(1, keepdims=True)), base)
    width = max(np.abs(flat_a).max(), 1e-6)
    shade = (1 - rng.uniform(0.1, 0.45) * (flat_a / width) ** 2) * (0.8 + 0.25 * flat_b / h)
    return np.clip(base * shade[:, None], 0, 1).reshape(*a.shape, 3)


def make_sprite(rng: np.random.Generator, kind: str | None = None) -> Sprite:
    """A random object (kind from SPRITE_KINDS unless given) with a soft silhouette and its own texture."""
    kind = kind or list(SPRITE_KINDS)[int(rng.integers(len(SPRITE_KINDS)))]
    draw, heights, aspects = SPRITE_KINDS[kind]
    h = float(rng.uniform(*heights))
    w = h * float(rng.uniform(*aspects))
    canvas = _Canvas(w, h, _SPRITE_ROWS)
    draw(rng, canvas, h)
    alpha = canvas.alpha()
    rows, cols = alpha.shape
    b = (1 - (np.arange(rows) + 0.5) / rows) * h
    a = ((np.arange(cols) + 0.5) / cols - 0.5) * w
    aa, bb = np.meshgrid(a, b)
    return Sprite(kind, alpha, _sprite_colour(rng, kind, aa, bb, h), h, w)


def sample_sprite(sprite: Sprite, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear alpha [...] and rgb [..., 3] of a sprite at object coordinates a, b (m); alpha 0 off the canvas.

    b = 0 (the ground line) reads the canvas' last row exactly, so the contact row is never lost to rounding.
    """
    rows, cols = sprite.alpha.shape
    eps = 1e-9 * sprite.height_m
    inside = (b >= -eps) & (b <= sprite.height_m) & (np.abs(a) <= sprite.width_m / 2)
    r = np.clip((1 - b / sprite.height_m) * rows - 0.5, 0, rows - 1)
    c = np.clip((a / sprite.width_m + 0.5) * cols - 0.5, 0, cols - 1)
    r0, c0 = np.minimum(r.astype(np.int64), rows - 2), np.minimum(c.astype(np.int64), cols - 2)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    stacked = np.concatenate([sprite.alpha[..., None], sprite.rgb], axis=-1)
    top = stacked[r0, c0] * (1 - fc) + stacked[r0, c0 + 1] * fc
    bottom = stacked[r0 + 1, c0] * (1 - fc) + stacked[r0 + 1, c0 + 1] * fc
    value = top * (1 - fr) + bottom * fr
    return np.where(inside, value[..., 0], 0.0), value[..., 1:]


def render_billboard(camera: Camera, sprite: Sprite, contact: tuple[int, int]) -> Foreground:
    """Stand `sprite` on the ground at the ground point seen by pixel `contact` = (row, column).

    The object lies in the world plane z = z0 of that ground point; each pixel's ray is intersected with that
    plane (depth t = z0 / dz), so on the contact row the object's depth equals the ground's.
    """
    v0, u0 = contact
    dx, dy, dz = camera.ray_dirs()
    t0 = -camera.height / dy[v0, 0]
    x0, z0 = float(t0 * dx[0, u0]), float(t0 * dz[v0, 0])
    size = camera.size
    rgb, alpha, depth = np.zeros((size, size, 3)), np.zeros((size, size)), np.full((size, size), np.inf)
    rows, cols = _billboard_bbox(camera, sprite, x0, z0)
    if rows.start < rows.stop and cols.start < cols.stop:
        t = np.broadcast_to(z0 / dz[rows], (rows.stop - rows.start, cols.stop - cols.start))
        a = t * dx[:, cols] - x0
        b = t * dy[rows] + camera.height
        box_alpha, box_rgb = sample_sprite(sprite, a, b)
        alpha[rows, cols], rgb[rows, cols] = box_alpha, box_rgb
        depth[rows, cols] = np.where(box_alpha > 0, t, np.inf)
    return Foreground(sprite, rgb, alpha, depth, (v0, u0), x0, z0)


def _billboard_bbox(camera: Camera, sprite: Sprite, x0: float, z0: float) -> tuple[slice, slice]:
    """Image rows and columns covered by the billboard's rectangle (a margin of one pixel), clipped to the image."""
    a = np.array([-1, 1, -1, 1]) * sprite.width_m / 2 + x0
    y = np.array([0, 0, 1, 1]) * sprite.height_m - camera.height
    u, v, zc = camera.project(a, y, np.full(4, z0))
    if np.any(zc <= 1e-6):
        return slice(0, camera.size), slice(0, camera.size)

    def span(lo: float, hi: float) -> slice:
        return slice(max(int(np.floor(lo)) - 1, 0), min(int(np.ceil(hi)) + 2, camera.size))

    return span(v.min(), v.max()), span(u.min(), u.max())


def contact_shadow(scene: SceneInfo, fg: Foreground, strength: float) -> np.ndarray:
    """Multiplicative darkening [H, W] in (0, 1] of the ground around an object's contact point."""
    camera = scene.camera
    dx, dy, dz = camera.ray_dirs()
    t = np.broadcast_to(camera.ground_depth()[:, None], scene.surface.shape)
    with np.errstate(invalid="ignore"):
        xw, zw = t * dx, t * dz
    rx, rz = 0.6 * fg.sprite.width_m + 0.05, 0.35 * fg.sprite.width_m + 0.05
    with np.errstate(invalid="ignore", over="ignore"):
        blob = np.exp(-(((xw - fg.x0) / rx) ** 2) - ((zw - fg.z0) / rz) ** 2)
    return np.where(scene.surface == GROUND, 1 - strength * np.nan_to_num(blob), 1.0)


def composite(bg_rgb: np.ndarray, bg_depth: np.ndarray, fg: Foreground) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste an object into the scene with a depth test.

    bg_rgb: [H, W, 3] in [0, 1]; bg_depth: [H, W] m. Returns rgb [H, W, 3] in [0, 1] (soft alpha at the edges),
    mask bool [H, W] (alpha > 0.5 and in front of the background) and the scene's depth [H, W] m.
    """
    visible = fg.depth <= bg_depth * (1 + 1e-6)  # float32 background depth meets float64 at the contact row
    alpha = np.where(visible, fg.alpha, 0.0)
    mask = alpha > 0.5
    rgb = bg_rgb * (1 - alpha[..., None]) + fg.rgb * alpha[..., None]
    depth = np.where(mask, np.minimum(fg.depth, bg_depth), bg_depth)
    return rgb, mask, depth


def place_foreground(
    rng: np.random.Generator,
    scene: SceneInfo,
    bg_depth: np.ndarray,
    coverage: tuple[float, float] = (0.03, 0.30),
    max_tries: int = 100,
) -> Foreground:
    """Choose an object and a ground contact pixel so that the object covers about `coverage` of the image.

    The target coverage is drawn log-uniformly from that range. A placement is kept when the visible mask (after
    the depth test against bg_depth [H, W], m) covers between half the lower and 1.5 x the upper bound and
    includes the contact row; after 10 failed tries only furniture (full-width base) is drawn.
    """
    camera, size = scene.camera, scene.camera.size
    ground_t = np.broadcast_to(camera.ground_depth()[:, None], bg_depth.shape)
    columns = np.arange(size)[None, :]
    usable = (scene.surface == GROUND) & (ground_t < 0.95 * scene.max_depth_m)
    usable &= (columns >= 0.15 * size) & (columns < 0.85 * size)
    for attempt in range(max_tries):
        sprite = make_sprite(rng, "furniture" if attempt >= 10 else None)
        pixels_tall = camera.focal * sprite.height_m / ground_t
        estimate = sprite.alpha.mean() * sprite.width_m / sprite.height_m * (pixels_tall / size) ** 2
        in_range = usable & (estimate >= coverage[0]) & (estimate <= coverage[1])
        target = np.exp(rng.uniform(np.log(coverage[0]), np.log(coverage[1])))
        near_target = np.abs(np.log(np.where(in_range, estimate, target) / target)) < np.log(1.3)
        candidates = np.flatnonzero(in_range & near_target)
        if candidates.size == 0:
            candidates = np.flatnonzero(in_range)
        if candidates.size == 0:
            continue
        v0, u0 = divmod(int(candidates[rng.integers(candidates.size)]), size)
        fg = render_billboard(camera, sprite, (v0, u0))
        _, mask, _ = composite(np.zeros((size, size, 3)), bg_depth, fg)
        if mask[v0].any() and 0.5 * coverage[0] <= mask.mean() <= 1.5 * coverage[1]:
            return fg
    raise RuntimeError(f"could not place an object in a {size} px scene after {max_tries} tries")

"""Background objects standing on the ground: boxes, cylinders and spheres, intersected with rays analytically.

World frame as in `mdeas.synth.scene`: y up, the camera at the origin. A ray is origin + t * direction; `intersect`
returns the smallest t > EPS, so with the camera's scaled ray directions (`Camera.ray_dirs`) t is planar depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-6  # hits closer than this along the ray are ignored (a ray leaving a surface does not hit it again)
KINDS = ("box", "cylinder", "sphere")

Vec = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Solid:
    """An object on the ground (m): footprint centre (x, z), ground at world y = ground_y, `height` above it
    (a sphere's diameter), half extents rx, rz along its axes turned by `yaw` (rad) about the vertical (a
    cylinder's or sphere's radius is rx)."""

    kind: str
    x: float
    z: float
    ground_y: float
    height: float
    rx: float
    rz: float
    yaw: float = 0.0

    @property
    def flat_top(self) -> bool:
        """Whether the top is a horizontal face something can stand on."""
        return self.kind != "sphere"

    @property
    def radius(self) -> float:
        """Radius of a vertical cylinder around the solid (m)."""
        return math.hypot(self.rx, self.rz) if self.kind == "box" else self.rx

    def local_xz(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World x, z → coordinates along the solid's own axes, relative to its centre."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        px, pz = x - self.x, z - self.z
        return c * px + s * pz, -s * px + c * pz

    def on_top(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether world points (x, z) lie over the top face (bool, same shape)."""
        lx, lz = self.local_xz(x, z)
        if self.kind == "box":
            return (np.abs(lx) <= self.rx) & (np.abs(lz) <= self.rz)
        return lx * lx + lz * lz <= self.rx * self.rx

    def intersect(self, origin: Vec, direction: Vec) -> tuple[np.ndarray, Vec]:
        """Nearest hit t (> EPS; inf on a miss) of broadcastable rays and the unit surface normal there."""
        hit = {"box": self._box, "cylinder": self._cylinder, "sphere": self._sphere}[self.kind]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return hit(origin, direction)

    def _box(self, o: Vec, d: Vec) -> tuple[np.ndarray, Vec]:
        """Slab test in the box's frame; the normal is that of the slab entered last."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx, lz = self.local_xz(o[0], o[2])
        axes = ((lx, c * d[0] + s * d[2], self.rx, -self.rx), (o[1] - self.ground_y, d[1], self.height, 0.0))
        axes += ((lz, -s * d[0] + c * d[2], self.rz, -self.rz),)
        shape = np.broadcast_shapes(*(np.shape(a) for a in (*o, *d)))
        near, far = np.full(shape, -np.inf), np.full(shape, np.inf)
        axis, sign = np.zeros(shape, np.int64), np.zeros(shape)
        for k, (p, dd, hi, lo) in enumerate(axes):
            inside = (p >= lo) & (p <= hi)
            t1, t2 = (lo - p) / dd, (hi - p) / dd
            enter = np.where(dd == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
            leave = np.where(dd == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
            later = enter > near
            axis, sign = np.where(later, k, axis), np.where(later, -np.sign(dd), sign)
            near, far = np.maximum(near, enter), np.minimum(far, leave)
        t = np.where((near <= far) & (near > EPS), near, np.inf)
        nlx, ny, nlz = (np.where(axis == k, sign, 0.0) for k in range(3))
        return t, (c * nlx - s * nlz, ny, s * nlx + c * nlz)

    def _cylinder(self, o: Vec, d: Vec) -> tuple[np.ndarray, Vec]:
        """The side (a quadratic in x, z) and the top disc."""
        px, py, pz = o[0] - self.x, o[1] - self.ground_y, o[2] - self.z
        a = d[0] * d[0] + d[2] * d[2]
        b = 2 * (px * d[0] + pz * d[2])
        disc = b * b - 4 * a * (px * px + pz * pz - self.rx * self.rx)
        side = (-b - np.sqrt(disc)) / (2 * a)
        y = py + side * d[1]
        side = np.where((disc >= 0) & (a > 0) & (side > EPS) & (y >= 0) & (y <= self.height), side, np.inf)
        cap = (self.height - py) / d[1]
        cx, cz = px + cap * d[0], pz + cap * d[2]
        cap = np.where((cap > EPS) & (cx * cx + cz * cz <= self.rx * self.rx), cap, np.inf)
        t = np.minimum(side, cap)
        on_side = side <= cap
        nx = np.where(on_side, (px + t * d[0]) / self.rx, 0.0)
        nz = np.where(on_side, (pz + t * d[2]) / self.rx, 0.0)
        return t, (nx, np.where(on_side, 0.0, 1.0), nz)

    def _sphere(self, o: Vec, d: Vec) -> tuple[np.ndarray, Vec]:
        """A sphere of radius rx resting on the ground."""
        p = (o[0] - self.x, o[1] - self.ground_y - self.rx, o[2] - self.z)
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        b = 2 * (p[0] * d[0] + p[1] * d[1] + p[2] * d[2])
        disc = b * b - 4 * a * (p[0] * p[0] + p[1] * p[1] + p[2] * p[2] - self.rx * self.rx)
        t = (-b - np.sqrt(disc)) / (2 * a)
        t = np.where((disc >= 0) & (t > EPS), t, np.inf)
        return t, tuple((p[k] + t * d[k]) / self.rx for k in range(3))

    def surface_uv(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, normal: Vec) -> tuple[np.ndarray, np.ndarray]:
        """Texture coordinates (m) of surface points: per face for boxes, unrolled for cylinders and spheres."""
        lx, lz = self.local_xz(x, z)
        up = y - self.ground_y
        top = normal[1] > 0.5
        if self.kind == "box":
            c, s = math.cos(self.yaw), math.sin(self.yaw)
            facing_x = np.abs(c * normal[0] + s * normal[2]) > 0.5
            return np.where(top, lx, np.where(facing_x, lz, lx)), np.where(top, lz, up)
        if self.kind == "cylinder":
            return np.where(top, lx, np.arctan2(lz, lx) * self.rx), np.where(top, lz, up)
        return np.arctan2(lz, lx) * self.rx, np.arcsin(np.clip((up - self.rx) / self.rx, -1, 1)) * self.rx


def sample_solids(
    rng: np.random.Generator,
    ground_y: float,
    half_fov: float,
    near: float,
    far: float,
    x_limits: tuple[float, float],
    scale: float = 1.0,
) -> list[Solid]:
    """0-5 solids of random kind on the ground (world y = ground_y, m) between `near` and `far` m ahead, inside
    x_limits (m) and roughly in view (|x| < z tan(half_fov) + 1 with half_fov in rad); their footprints do not
    overlap. Furniture-sized: half extents 0.15-1.2 m, heights 0.2-2.5 m (a sphere's: its diameter), both times
    `scale`."""
    solids: list[Solid] = []
    for _ in range(int(rng.integers(0, 6))):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        rx = float(rng.uniform(0.15, 1.2) * scale)
        rz = float(rng.uniform(0.15, 1.2) * scale) if kind == "box" else rx
        height = 2 * rx if kind == "sphere" else float(rng.uniform(0.2, 2.5) * scale)
        z = float(rng.uniform(near, far))
        reach = z * math.tan(half_fov) + 1.0
        lo, hi = max(x_limits[0] + rx + rz, -reach), min(x_limits[1] - rx - rz, reach)
        if lo >= hi or z - rx - rz < near * 0.5:
            continue
        solid = Solid(kind, float(rng.uniform(lo, hi)), z, ground_y, height, rx, rz, float(rng.uniform(0, np.pi)))
        if all(math.hypot(solid.x - o.x, solid.z - o.z) > solid.radius + o.radius for o in solids):
            solids.append(solid)
    return solids

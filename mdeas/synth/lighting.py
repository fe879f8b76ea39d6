"""Light: a directional source of finite size (soft shadows) plus ambient light, and shadow rays.

The source is represented by `directions` [K, 3], unit vectors towards it jittered over its angular radius; a
point's visibility is the fraction of those directions whose ray leaves the scene unblocked, so shadow edges
are soft, more so far from the occluder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mdeas.synth.solids import Solid, Vec
from mdeas.synth.textures import random_colour

_SHADOW_RAYS = 6
_LIFT = 1e-4  # shadow rays start this far (m) off their surface, along its normal


@dataclass(frozen=True, eq=False)
class Light:
    """directions: [K, 3] unit vectors towards the source; sun, ambient: RGB [3] intensities."""

    directions: np.ndarray
    sun: np.ndarray
    ambient: np.ndarray

    def lambert(self, normal: Vec, wrap: float = 0.0) -> np.ndarray:
        """Cosine factor max(0, (n . l + wrap) / (1 + wrap)) of unit normals towards the source's centre, same
        shape as a component; wrap > 0 lets light reach round the terminator (a soft, fill-lit look)."""
        centre = self.directions.mean(0)
        centre /= np.linalg.norm(centre)
        cosine = normal[0] * centre[0] + normal[1] * centre[1] + normal[2] * centre[2]
        return np.maximum(0.0, (cosine + wrap) / (1 + wrap))


def sample_light(rng: np.random.Generator, outdoor: bool) -> Light:
    """Sun (outdoor: elevation 12-70 deg, strong) or a lamp (indoor: 35-85 deg, softer, more ambient); the source's
    angular radius is 1-10 deg."""
    elevation = math.radians(rng.uniform(12, 70) if outdoor else rng.uniform(35, 85))
    azimuth = rng.uniform(0, 2 * math.pi)
    spread = math.radians(rng.uniform(1, 10))
    jitter = rng.normal(0, spread / 2, (_SHADOW_RAYS, 2))
    el = np.clip(elevation + jitter[:, 0], 0.05, math.pi / 2)
    az = azimuth + jitter[:, 1]
    directions = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)
    warm = np.clip(np.array([1.0, 0.95, 0.85]) + rng.normal(0, 0.06, 3), 0.6, 1.2)
    sun = warm * (rng.uniform(0.7, 1.1) if outdoor else rng.uniform(0.4, 0.8))
    sky = np.clip(random_colour(rng, (0.0, 0.35), (0.8, 1.0)), 0, 1)
    ambient = sky * (rng.uniform(0.25, 0.45) if outdoor else rng.uniform(0.4, 0.7))
    return Light(directions, sun, ambient)


def visibility(points: Vec, normal: Vec, light: Light, solids: Sequence[Solid]) -> np.ndarray:
    """Fraction [N] of the source seen from points [N] (m) with unit normals: shadow rays against the solids."""
    origin = tuple(p + _LIFT * n for p, n in zip(points, normal, strict=True))
    seen = np.zeros(np.shape(points[0]))
    for d in light.directions:
        free = np.ones(seen.shape, bool)
        for solid in solids:
            t, _ = solid.intersect(origin, (d[0], d[1], d[2]))
            free &= ~np.isfinite(t)
        seen += free
    return seen / len(light.directions)


def billboard_shadow(
    points: Vec, light: Light, z0: float, coverage: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Fraction [N] of the source hidden from points [N] (m) by a vertical plane z = z0 whose opacity at a world
    point (x, y) is coverage(x, y) in [0, 1]."""
    hidden = np.zeros(np.shape(points[0]))
    for d in light.directions:
        if abs(d[2]) < 1e-9:
            continue
        s = (z0 - points[2]) / d[2]
        ahead = s > _LIFT
        s = np.where(ahead, s, 0.0)
        hidden += np.where(ahead, coverage(points[0] + s * d[0], points[1] + s * d[1]), 0.0)
    return hidden / len(light.directions)

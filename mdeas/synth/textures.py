"""Procedural surface textures: colour as a function of in-plane coordinates (m) and the pixel footprint (m).

Every family returns colours [N, 3] in [0, 1] for flat coordinate arrays u, v [N]; `footprint` (the size of one
image pixel on the surface) fades detail finer than a pixel towards its mean instead of aliasing. Families:

- "noise": fractal value noise; "perlin": fractal gradient noise (plain, turbulent or ridged);
- "stripes", "checker", "planks", "bricks", "gradient";
- "photo": multi-scale 1/f noise through a three-colour palette (the statistics of natural images);
- "tiled": a random crop of another family, rendered once into a tile and repeated with mirroring.

A material's feature size (m: a checker's square, a stripe's period, a plank's double width, ...) is drawn
log-uniformly, either from the family's own range (FEATURE_M: tiles, planks and bricks of real sizes, a cue to
the scale of the scene) or from WIDE_FEATURE_M for every family (the wide prior, and the objects' own looks).
"""

from __future__ import annotations

import colorsys

import numpy as np

FAMILIES = ("noise", "perlin", "stripes", "checker", "planks", "bricks", "gradient", "photo", "tiled")
_LATTICE = 64  # side of the random lattices behind value and gradient noise and per-cell colours
_TILE = 64  # side of the tiles behind "photo" and "tiled"
# feature size range (m) per family, see `_pattern`: noise blotches 2 x scale, checker squares, stripe periods,
# planks 0.5 x scale wide, bricks 0.6 x 0.25 scale, gradients over 4-15 x scale, photo tiles over 2-6 x scale,
# tiles of `tiled` 0.5-2.5 x scale
FEATURE_M = {
    "noise": (0.2, 0.6),
    "perlin": (0.2, 0.6),
    "stripes": (0.1, 0.4),
    "checker": (0.3, 0.6),
    "planks": (0.2, 0.4),
    "bricks": (0.28, 0.36),
    "gradient": (0.3, 1.0),
    "photo": (0.2, 0.6),
    "tiled": (0.3, 1.0),
}
WIDE_FEATURE_M = (0.15, 2.5)  # the same range for every family


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


def gradient_noise(angles: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Perlin gradient noise in about [-0.7, 0.7] at (x, y) in lattice cells; `angles` [L, L] are the lattice's
    gradient directions (rad) and wrap around."""
    n = angles.shape[0]
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    i0, j0 = xf.astype(np.int64) % n, yf.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n

    def corner(i: np.ndarray, j: np.ndarray, ox: np.ndarray, oy: np.ndarray) -> np.ndarray:
        return np.cos(angles[j, i]) * ox + np.sin(angles[j, i]) * oy

    sx = fx * fx * fx * (fx * (fx * 6 - 15) + 10)
    sy = fy * fy * fy * (fy * (fy * 6 - 15) + 10)
    top = corner(i0, j0, fx, fy) + (corner(i1, j0, fx - 1, fy) - corner(i0, j0, fx, fy)) * sx
    bottom = corner(i0, j1, fx, fy - 1) + (corner(i1, j1, fx - 1, fy - 1) - corner(i0, j1, fx, fy - 1)) * sx
    return top + (bottom - top) * sy


def _keep(footprint: np.ndarray | float, feature: float) -> np.ndarray | float:
    """How much of a pattern with features of `feature` m survives at this pixel footprint (m), in [0, 1]."""
    return np.clip(1.5 - 2.0 * np.asarray(footprint) / feature, 0.0, 1.0)


def fbm(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    scale: float,
    footprint: np.ndarray | float,
    octaves: int = 3,
) -> np.ndarray:
    """Fractal value noise in [0, 1] with feature size `scale` (m); octaves finer than a pixel fade out."""
    lattices = rng.random((octaves, _LATTICE, _LATTICE))
    offsets = rng.random((octaves, 2)) * _LATTICE
    total = np.zeros_like(x)
    norm, amp = 0.0, 1.0
    for o in range(octaves):
        freq = 2.0**o / scale
        noise = value_noise(lattices[o], x * freq + offsets[o, 0], y * freq + offsets[o, 1])
        total += amp * _keep(footprint, 1.0 / freq) * (noise - 0.5)
        norm += amp
        amp *= 0.5
    return np.clip(0.5 + total / norm * 1.6, 0.0, 1.0)


def perlin(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, scale: float, footprint: np.ndarray | float
) -> np.ndarray:
    """Fractal gradient noise in [0, 1], plain, turbulent (|noise|) or ridged (1 - |noise|) at random."""
    octaves = int(rng.integers(2, 6))
    style = int(rng.integers(3))
    angles = rng.uniform(0, 2 * np.pi, (octaves, _LATTICE, _LATTICE))
    offsets = rng.random((octaves, 2)) * _LATTICE
    gain = rng.uniform(0.4, 0.65)
    total = np.zeros_like(x)
    amp = 1.0
    for o in range(octaves):
        freq = 2.0**o / scale
        n = gradient_noise(angles[o], x * freq + offsets[o, 0], y * freq + offsets[o, 1]) * 1.4
        n = n if style == 0 else np.abs(n) * 2 - 1 if style == 1 else 1 - np.abs(n) * 2
        total += amp * _keep(footprint, 1.0 / freq) * n
        amp *= gain
    return np.clip(0.5 + 0.5 * total, 0.0, 1.0)


def cell_random(rng: np.random.Generator, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A random value in [0, 1) per integer cell (i, j), e.g. one shade per tile or brick."""
    lattice = rng.random((_LATTICE, _LATTICE))
    return lattice[j.astype(np.int64) % _LATTICE, i.astype(np.int64) % _LATTICE]


def _fade(pattern: np.ndarray, footprint: np.ndarray | float, feature: float) -> np.ndarray:
    """Blend a [0, 1] pattern towards 0.5 where a pixel covers more than about half a feature (m)."""
    return 0.5 + (pattern - 0.5) * _keep(footprint, feature)


def random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 1], shape [3], with saturation and value drawn from the given ranges."""
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def related_colour(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """A second colour of a material: a shade of `colour` or, sometimes, a contrasting one."""
    if rng.random() < 0.3:
        return random_colour(rng, (0.0, 0.7), (0.15, 0.95))
    return np.clip(colour * rng.uniform(0.45, 1.45) + rng.normal(0, 0.05, 3), 0, 1)


def palette(rng: np.random.Generator) -> np.ndarray:
    """Three colours [3, 3] of one material, mostly muted as in photographs."""
    base = random_colour(rng, (0.0, 0.8) if rng.random() < 0.3 else (0.0, 0.45), (0.15, 0.95))
    return np.stack([base, related_colour(rng, base), related_colour(rng, base)])


def through_palette(colours: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Map p [N] in [0, 1] piecewise linearly through `colours` [K, 3] → [N, 3]."""
    position = np.clip(p, 0, 1) * (len(colours) - 1)
    i = np.minimum(position.astype(np.int64), len(colours) - 2)
    f = (position - i)[:, None]
    return colours[i] * (1 - f) + colours[i + 1] * f


def pink_noise_tile(rng: np.random.Generator, size: int = _TILE) -> np.ndarray:
    """A seamless [size, size] tile of 1/f^beta noise (beta 1.4-2.6), rank-normalised to [0, 1]."""
    beta = rng.uniform(1.4, 2.6)
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.ifft2(spectrum).real
    ranks = np.argsort(np.argsort(field, axis=None))
    return (ranks / (ranks.size - 1)).reshape(size, size)


def sample_tile(tile: np.ndarray, x: np.ndarray, y: np.ndarray, mirror: bool) -> np.ndarray:
    """Bilinear lookup of `tile` [T, T, ...] at (x, y) in tile pixels, repeated (mirrored if `mirror`)."""
    n = tile.shape[0]
    if mirror:
        tile = np.concatenate([tile, tile[::-1]], axis=0)
        tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
        n *= 2
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    i0, j0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    if tile.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = tile[j0, i0] * (1 - fx) + tile[j0, i1] * fx
    bottom = tile[j1, i0] * (1 - fx) + tile[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


def _photo(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, scale: float) -> np.ndarray:
    """Two 1/f tiles: one through a palette, one modulating brightness; tiles span 2-6 x `scale`."""
    span = scale * rng.uniform(2, 6)
    colours = palette(rng)
    offset = rng.random(2) * _TILE
    tone, light = pink_noise_tile(rng), pink_noise_tile(rng)
    x, y = u / span * _TILE + offset[0], v / span * _TILE + offset[1]
    keep = _keep(footprint, span)[:, None]
    colour = through_palette(colours, sample_tile(tone, x, y, mirror=False))
    colour = colour * keep + colours.mean(0) * (1 - keep)
    return colour * (1 + keep * (0.5 * sample_tile(light, x * 0.5, y * 0.5, mirror=False)[:, None] - 0.25))


def _tiled(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, scale: float, physical: bool
) -> np.ndarray:
    """A crop of another family rendered into a tile, then repeated (mirrored or not) over the surface; the inner
    family's feature size is drawn as `texture` draws it (`physical`)."""
    span = scale * rng.uniform(0.5, 2.5)
    grid = (np.arange(_TILE) + 0.5) / _TILE * span
    gu, gv = np.meshgrid(grid, grid)
    inner = tuple(f for f in FAMILIES if f != "tiled")
    tile = texture(rng, gu.ravel(), gv.ravel(), np.full(gu.size, span / _TILE), inner, physical)
    tile = tile.reshape(_TILE, _TILE, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ru = u * np.cos(angle) - v * np.sin(angle)
    rv = u * np.sin(angle) + v * np.cos(angle)
    colour = sample_tile(tile, ru / span * _TILE, rv / span * _TILE, mirror=bool(rng.random() < 0.5))
    keep = _keep(footprint, span)[:, None]
    return colour * keep + tile.reshape(-1, 3).mean(0) * (1 - keep)


def _pattern(
    rng: np.random.Generator, kind: str, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, scale: float
) -> np.ndarray:
    """A [0, 1] pattern [N] of one of the two-colour families."""
    if kind == "noise":
        return fbm(rng, u, v, scale * 2, footprint, octaves=4)
    if kind == "perlin":
        return perlin(rng, u, v, scale * 2, footprint)
    if kind == "checker":
        return _fade(((np.floor(u / scale) + np.floor(v / scale)) % 2).astype(np.float64), footprint, scale)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        w = u * np.cos(angle) + v * np.sin(angle)
        w = w + rng.uniform(0, 0.4) * scale * (fbm(rng, u, v, scale * 3, footprint) - 0.5)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * w / scale)
        sharp = rng.uniform(1, 8)
        return _fade(np.clip((wave - 0.5) * sharp + 0.5, 0, 1), footprint, scale / 2)
    if kind == "planks":
        width = scale * 0.5
        p = cell_random(rng, np.floor(u / width), np.zeros_like(u))
        seam = (u / width) % 1.0 < 0.06
        grain = fbm(rng, u * 8, v * 0.5, scale, footprint)
        return _fade(np.where(seam, 0.0, 0.2 + 0.5 * p + 0.3 * grain), footprint, width * 0.5)
    if kind == "bricks":
        bw, bh = scale * 0.6, scale * 0.25
        row = np.floor(v / bh)
        uu = u + 0.5 * bw * (row % 2)
        p = 0.6 * cell_random(rng, np.floor(uu / bw), row)
        mortar = ((v / bh) % 1.0 < 0.1) | ((uu / bw) % 1.0 < 0.05)
        return _fade(np.where(mortar, 1.0, p), footprint, bh * 0.5)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        w = (u * np.cos(angle) + v * np.sin(angle)) / (scale * rng.uniform(4, 15))
        return 1 - np.abs(w % 2.0 - 1) if rng.random() < 0.2 else 0.5 + 0.5 * np.tanh(w)
    raise ValueError(f"unknown texture family {kind!r}")


def texture(
    rng: np.random.Generator,
    u: np.ndarray,
    v: np.ndarray,
    footprint: np.ndarray,
    families: tuple[str, ...] = FAMILIES,
    physical: bool = False,
) -> np.ndarray:
    """Colour [N, 3] in [0, 1] of a random material from `families` at surface coordinates u, v (m, [N]).

    footprint [N]: pixel size on the surface (m). v runs along planks, brick rows stack along v. The feature size
    (m) is drawn log-uniformly from FEATURE_M[family] if `physical`, else from WIDE_FEATURE_M.
    """
    kind = families[int(rng.integers(len(families)))]
    low, high = FEATURE_M[kind] if physical else WIDE_FEATURE_M
    scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    if kind == "photo":
        colour = _photo(rng, u, v, footprint, scale)
    elif kind == "tiled":
        colour = _tiled(rng, u, v, footprint, scale, physical)
    else:
        colours = palette(rng)
        colour = through_palette(
            colours[:2] if rng.random() < 0.6 else colours, _pattern(rng, kind, u, v, footprint, scale)
        )
    detail = fbm(rng, u, v, scale * rng.uniform(0.05, 0.4), footprint)
    strength = rng.uniform(0.05, 0.35)
    return np.clip(colour * (1 - strength + 2 * strength * detail[:, None]), 0, 1)

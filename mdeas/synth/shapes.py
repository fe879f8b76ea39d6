"""Foreground objects as sprites: a soft silhouette and a textured colour in the object's own vertical plane.

Object coordinates: a (m) across, centred on the object; b (m) up from the ground line. A sprite's canvas spans
a in [-width_m / 2, width_m / 2] and b in [0, height_m]; its last row is the ground contact line, and every
shape that stands on the ground is drawn down to below it, so that the contact row stays solid after feathering.
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mdeas.synth.textures import random_colour, texture

_SUPERSAMPLE = 4  # silhouettes are drawn this much finer, then box-filtered into a soft alpha


@dataclass(frozen=True, eq=False)
class Sprite:
    """An object's look in its own plane. alpha: [R, C] in [0, 1]; rgb: [R, C, 3] albedo in [0, 1]; row 0 is the
    top, the last row the ground contact line; the canvas spans `width_m` x `height_m` metres."""

    kind: str
    alpha: np.ndarray
    rgb: np.ndarray
    height_m: float
    width_m: float

    def flipped(self) -> Sprite:
        """The mirror image (left-right)."""
        return dataclasses.replace(self, alpha=self.alpha[:, ::-1], rgb=self.rgb[:, ::-1])

    def scaled(self, factor: float) -> Sprite:
        """The same look, `factor` times larger in the world."""
        return dataclasses.replace(self, height_m=self.height_m * factor, width_m=self.width_m * factor)

    def resampled(self, rows: int) -> Sprite:
        """The canvas area-averaged down to `rows` rows (colour premultiplied by alpha), so that an object seen
        small keeps its coverage instead of aliasing; the last row still holds the ground line."""
        if rows >= self.alpha.shape[0]:
            return self
        size = (max(2, round(self.alpha.shape[1] * rows / self.alpha.shape[0])), max(2, rows))

        def shrink(channel: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(channel.astype(np.float32), "F").resize(size, Image.Resampling.BOX))

        alpha = shrink(self.alpha).astype(np.float64)
        premultiplied = np.stack([shrink(self.rgb[..., c] * self.alpha) for c in range(3)], axis=-1)
        rgb = np.where(alpha[..., None] > 1e-6, premultiplied / np.maximum(alpha, 1e-6)[..., None], 0.0)
        return dataclasses.replace(self, alpha=np.clip(alpha, 0, 1), rgb=np.clip(rgb, 0, 1))


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

    def ring(self, a: float, b: float, r: float, thickness_m: float) -> None:
        """A circle's outline, `thickness_m` wide, inside radius r."""
        (x0, y0), (x1, y1) = self.px(a - r, b + r), self.px(a + r, b - r)
        width = max(1, round(thickness_m / self.width_m * self.cols * _SUPERSAMPLE))
        self.draw.ellipse((x0, y0, x1, y1), outline=255, width=width)

    def line(self, points: list[tuple[float, float]], thickness_m: float) -> None:
        width = max(1, round(thickness_m / self.width_m * self.cols * _SUPERSAMPLE))
        self.draw.line([self.px(a, b) for a, b in points], fill=255, width=width, joint="curve")

    def alpha(self, feather_px: float) -> np.ndarray:
        """Box-filtered coverage, blurred by `feather_px` canvas pixels: [rows, cols] float64 in [0, 1]."""
        small = self.image.resize((self.cols, self.rows), Image.Resampling.BOX)
        if feather_px > 0:
            small = small.filter(ImageFilter.GaussianBlur(feather_px))
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


def _animal(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A quadruped: body, four legs, neck and head, tail."""
    w = c.width_m
    body_b, body_rb = rng.uniform(0.5, 0.62) * h, rng.uniform(0.13, 0.2) * h
    c.ellipse(0, body_b, 0.3 * w, body_rb)
    leg = rng.uniform(0.03, 0.06) * w
    for a in (-0.24 * w, -0.16 * w, 0.14 * w, 0.22 * w):
        knee = (a + rng.normal(0, 0.02) * w, body_b * 0.45)
        c.line([(a, body_b), knee, (a + rng.normal(0, 0.02) * w, -0.05 * h)], leg)
    head = (rng.uniform(0.36, 0.42) * w, rng.uniform(0.72, 0.88) * h)
    c.line([(0.22 * w, body_b + 0.05 * h), head], rng.uniform(0.05, 0.1) * w)
    c.ellipse(head[0], head[1], rng.uniform(0.06, 0.08) * w, rng.uniform(0.07, 0.1) * h)
    c.polygon([(head[0], head[1]), (head[0] + 0.1 * w, head[1] - 0.06 * h), (head[0] + 0.1 * w, head[1] - 0.01 * h)])
    c.line([(-0.28 * w, body_b + 0.05 * h), (-0.42 * w, body_b - rng.uniform(-0.1, 0.2) * h)], 0.02 * w)


def _blob(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A union of ellipses on a wide base ellipse."""
    w = c.width_m
    c.ellipse(rng.uniform(-0.1, 0.1) * w, 0.1 * h, rng.uniform(0.25, 0.45) * w, 0.15 * h)
    for _ in range(int(rng.integers(3, 7))):
        a, b = rng.uniform(-0.25, 0.25) * w, rng.uniform(0.2, 0.75) * h
        c.ellipse(a, b, rng.uniform(0.15, 0.3) * w, rng.uniform(0.12, 0.25) * h)


def _rock(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A star-shaped polygon with its lower part flattened onto the ground."""
    n = int(rng.integers(7, 13))
    angles = np.sort(np.concatenate([rng.uniform(0, 2 * np.pi, n), [1.3 * np.pi, 1.7 * np.pi]]))
    radii = rng.uniform(0.65, 1.0, n + 2)
    a = 0.5 * c.width_m * radii * np.cos(angles)
    b = 0.5 * h + 0.5 * h * radii * np.sin(angles)
    b[np.sin(angles) < -0.6] = -0.05 * h  # the lower corners (two at least) rest on the ground
    c.polygon([(float(x), float(y)) for x, y in zip(a, b, strict=True)])


def _furniture(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A crate, a table (top and legs), a cabinet on short legs or a chair."""
    w = c.width_m / 2
    variant = int(rng.integers(4))
    if variant == 0:
        c.rect(-0.95 * w, -0.05 * h, 0.95 * w, rng.uniform(0.85, 1.0) * h)
        return
    seat = (0.45 * h, 0.55 * h) if variant == 3 else (0.85 * h, 1.0 * h) if variant == 1 else (0.2 * h, 1.0 * h)
    c.rect(-w, seat[0], w, seat[1])
    leg = rng.uniform(0.05, 0.12) * w
    for a in (-w + leg, w - 2 * leg):
        c.rect(a - leg * 0.5, -0.05 * h, a + leg * 1.5, seat[0] + 0.01 * h)
    if variant == 3:
        c.rect(-w, seat[1], -w + 2.5 * leg, h)
        c.rect(-w, 0.85 * h, w * rng.uniform(0.3, 1.0), h)


def _plant(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A pot with foliage of ellipses above it."""
    w = c.width_m
    pot_h, pot_w = rng.uniform(0.2, 0.35) * h, rng.uniform(0.18, 0.3) * w
    c.polygon([(-pot_w, pot_h), (pot_w, pot_h), (0.75 * pot_w, -0.05 * h), (-0.75 * pot_w, -0.05 * h)])
    c.rect(-0.03 * w, pot_h * 0.9, 0.03 * w, 0.6 * h)
    for _ in range(int(rng.integers(4, 9))):
        a, b = rng.uniform(-0.3, 0.3) * w, rng.uniform(pot_h + 0.2 * h, 0.82 * h)
        c.ellipse(a, b, rng.uniform(0.1, 0.2) * w, rng.uniform(0.08, 0.17) * h)


def _tool(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A thin upright thing on a pole: a broom, a lamp, a sign or a rake."""
    w = c.width_m
    pole = rng.uniform(0.06, 0.16) * w
    lean = rng.uniform(-0.15, 0.15) * w
    variant = int(rng.integers(4))
    top = (lean, h * (0.78 if variant in (1, 2) else 0.98))
    c.line([(0, -0.05 * h), top], pole)
    c.rect(-0.3 * w, -0.05 * h, 0.3 * w, 0.02 * h)  # a foot, so that the contact row is solid
    if variant == 0:  # broom: bristles at the bottom
        c.polygon([(-0.1 * w, 0.15 * h), (0.1 * w, 0.15 * h), (0.45 * w, -0.05 * h), (-0.45 * w, -0.05 * h)])
    elif variant == 1:  # lamp: weighted base and a shade
        c.ellipse(0, 0.0, 0.4 * w, 0.04 * h)
        c.polygon([(lean - 0.2 * w, h), (lean + 0.2 * w, h), (lean + 0.48 * w, 0.76 * h), (lean - 0.48 * w, 0.76 * h)])
    elif variant == 2:  # sign: a panel at the top
        c.rect(lean - 0.48 * w, 0.72 * h, lean + 0.48 * w, h)
    else:  # rake: tines at the top
        c.rect(lean - 0.45 * w, 0.9 * h, lean + 0.45 * w, 0.93 * h)
        for a in np.linspace(-0.42, 0.42, int(rng.integers(4, 8))):
            c.line([(lean + a * w, 0.91 * h), (lean + a * w, h)], pole * 0.5)


def _vehicle(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A car-like body with a cabin and two wheels on the ground."""
    w = c.width_m
    c.rect(-0.48 * w, 0.18 * h, 0.48 * w, rng.uniform(0.5, 0.62) * h)
    front, back = rng.uniform(0.05, 0.3) * w, rng.uniform(-0.4, -0.2) * w
    c.polygon([(back, 0.55 * h), (front + 0.12 * w, 0.55 * h), (front, 0.95 * h), (back + 0.08 * w, 0.95 * h)])
    radius = rng.uniform(0.14, 0.2) * h
    for a in (-0.3 * w, 0.3 * w):
        c.ellipse(a, radius - 0.05 * h, radius * 1.1, radius + 0.0)


def _cycle(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A bicycle or motorbike seen side on: two spoked rings (the background shows through), a frame of tubes,
    a saddle and handlebars; the tyres are flattened onto the ground."""
    w = c.width_m
    radius = min(rng.uniform(0.28, 0.36) * h, 0.24 * w)
    tube, tyre = rng.uniform(0.02, 0.04) * h, rng.uniform(0.025, 0.08) * h
    rear, front = -0.5 * w + radius, 0.5 * w - radius
    hub_b = radius - 0.03 * h
    for hub in (rear, front):
        c.ring(hub, hub_b, radius, tyre)
        c.rect(hub - 0.4 * radius, -0.05 * h, hub + 0.4 * radius, 0.05 * h)
        for angle in rng.uniform(0, np.pi, 1) + np.linspace(0, np.pi, int(rng.integers(2, 7)), endpoint=False):
            dx, db = radius * np.cos(angle), radius * np.sin(angle)
            c.line([(hub - dx, hub_b - db), (hub + dx, hub_b + db)], tube * 0.4)
    crank = (rear + rng.uniform(0.4, 0.55) * (front - rear), hub_b)
    seat = (crank[0] - rng.uniform(0.05, 0.12) * w, rng.uniform(0.75, 0.85) * h)
    head = (front - rng.uniform(0.08, 0.15) * w, rng.uniform(0.8, 0.9) * h)
    c.line([(rear, hub_b), crank, seat, (rear, hub_b)], tube)
    c.line([crank, head, (front, hub_b)], tube)
    c.line([seat, head], tube)
    c.rect(seat[0] - 0.08 * w, seat[1], seat[0] + 0.06 * w, seat[1] + 0.05 * h)
    c.line([head, (head[0] - 0.03 * w, h * 0.98), (head[0] - 0.1 * w, h * 0.98)], tube)
    if rng.random() < 0.5:  # a motorbike: an engine block and a tank fill part of the frame
        c.ellipse(crank[0], crank[1] + 0.1 * h, 0.1 * w, 0.12 * h)
        c.ellipse((crank[0] + head[0]) / 2, 0.72 * h, 0.12 * w, 0.07 * h)


def _frame(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """Open frames: a ladder, a stool with stretchers, or a fence panel of pickets; more gaps than material."""
    w = c.width_m / 2
    bar = rng.uniform(0.05, 0.1) * w
    variant = int(rng.integers(3))
    if variant == 2:  # fence panel: pickets on two rails
        pickets = int(rng.integers(4, 9))
        for a in np.linspace(-w + bar, w - bar, pickets):
            c.rect(a - bar, -0.05 * h, a + bar, h * rng.uniform(0.85, 1.0))
        for b in (0.25 * h, 0.75 * h):
            c.rect(-w, b - bar, w, b + bar)
        return
    top = h if variant == 0 else h * rng.uniform(0.9, 1.0)
    splay = 0.0 if variant == 0 else rng.uniform(0.0, 0.15) * w
    for side in (-1, 1):
        c.line([(side * (w - bar), -0.05 * h), (side * (w - bar - splay), top)], 2 * bar)
    rungs = int(rng.integers(3, 8)) if variant == 0 else int(rng.integers(1, 3))
    for b in np.linspace(0.15, 0.85, rungs) * h:
        c.rect(-w + bar, b - bar * 0.7, w - bar, b + bar * 0.7)
    if variant == 1:  # the stool's seat
        c.rect(-w, top - 0.1 * h, w, top)


def _vase(rng: np.random.Generator, c: _Canvas, h: float) -> None:
    """A lathe profile: a bottle, a vase or a bollard, symmetric about its axis."""
    b = np.linspace(-0.05, 1.0, 40) * h
    phases, amps = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.0, 0.18, 3)
    k = np.arange(1, 4)[:, None]
    radius = 0.32 + (amps[:, None] * np.sin(k * np.pi * b / h + phases[:, None])).sum(0)
    radius = np.clip(radius, 0.06, 0.5) * c.width_m
    outline = np.concatenate([np.stack([radius, b], 1), np.stack([-radius, b], 1)[::-1]])
    c.polygon([(float(p), float(q)) for p, q in outline])


# kind → (draw function, height range m, width / height range, how often it is drawn); heights of the real things
# (the metric prior shows objects at their size in metres)
SPRITE_KINDS = {
    "person": (_person, (1.5, 1.9), (0.42, 0.5), 3.0),
    "animal": (_animal, (0.3, 1.6), (1.1, 1.9), 2.0),
    "blob": (_blob, (0.3, 1.8), (0.5, 1.3), 2.0),
    "rock": (_rock, (0.3, 1.5), (0.6, 1.4), 2.0),
    "furniture": (_furniture, (0.4, 1.5), (0.6, 1.6), 1.5),
    "plant": (_plant, (0.4, 2.0), (0.4, 0.8), 1.5),
    "tool": (_tool, (1.0, 2.0), (0.12, 0.4), 0.7),
    "vehicle": (_vehicle, (1.2, 1.9), (1.5, 2.6), 1.5),
    "vase": (_vase, (0.2, 1.2), (0.3, 0.8), 1.5),
    "cycle": (_cycle, (0.9, 1.3), (1.5, 2.0), 1.5),
    "frame": (_frame, (0.5, 2.0), (0.4, 1.4), 1.0),
}
OPEN_KINDS = ("cycle", "frame")  # objects with holes, drawn only for the share `open_share` (make_sprite)
_SOLID_KINDS = [kind for kind in SPRITE_KINDS if kind not in OPEN_KINDS]


def _draw_kind(rng: np.random.Generator, kinds: list[str]) -> str:
    weights = np.array([SPRITE_KINDS[kind][3] for kind in kinds])
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _sprite_colour(rng: np.random.Generator, kind: str, a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    """Albedo [R, C, 3] in [0, 1] of an object at object coordinates a, b (m): a texture, regions by kind, and a
    little baked shading."""
    flat_a, flat_b = a.ravel(), b.ravel()
    footprint = np.full(flat_a.shape, h / a.shape[0])
    base = texture(rng, flat_a, flat_b, footprint)
    lum = base.mean(1, keepdims=True)
    if kind == "person":
        trousers = random_colour(rng, (0.0, 0.6), (0.1, 0.7))
        skin = _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.3, 0.95))
        base = np.where((flat_b < 0.47 * h)[:, None], trousers * (0.85 + 0.3 * lum), base)
        base = np.where((flat_b > 0.855 * h)[:, None], skin, base)
    elif kind == "plant":
        leaf = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.8))
        base = np.where((flat_b > 0.4 * h)[:, None], leaf * (0.7 + 0.6 * lum), base)
    elif kind == "vehicle":
        dark = random_colour(rng, (0.0, 0.3), (0.03, 0.2))
        base = np.where(((flat_b < 0.2 * h) | (flat_b > 0.6 * h))[:, None], dark + 0.15 * lum, base)
    width = max(np.abs(flat_a).max(), 1e-6)
    shade = (1 - rng.uniform(0.05, 0.3) * (flat_a / width) ** 2) * (0.85 + 0.2 * flat_b / h)
    return np.clip(base * shade[:, None], 0, 1).reshape(*a.shape, 3)


def make_sprite(rng: np.random.Generator, kind: str | None = None, rows: int = 96, open_share: float = 0.0) -> Sprite:
    """A random object, `rows` canvas rows tall, with a soft silhouette (feathered by up to a pixel) and its own
    texture. Unless `kind` is given it is drawn by weight from OPEN_KINDS with probability `open_share`, else from
    the solid kinds (at 0 no extra number is drawn, so the solid draws do not depend on the option)."""
    if kind is None:
        is_open = open_share > 0 and rng.random() < open_share
        kind = _draw_kind(rng, list(OPEN_KINDS) if is_open else _SOLID_KINDS)
    draw, heights, aspects, _ = SPRITE_KINDS[kind]
    h = float(rng.uniform(*heights))
    w = h * float(rng.uniform(*aspects))
    canvas = _Canvas(w, h, rows)
    draw(rng, canvas, h)
    alpha = canvas.alpha(float(rng.uniform(0.0, 1.0)) * rows / 96)
    r, c = alpha.shape
    b = (1 - (np.arange(r) + 0.5) / r) * h
    a = ((np.arange(c) + 0.5) / c - 0.5) * w
    aa, bb = np.meshgrid(a, b)
    return Sprite(kind, alpha, _sprite_colour(rng, kind, aa, bb, h), h, w)

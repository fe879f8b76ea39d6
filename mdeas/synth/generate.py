"""Synthetic dataset generator: procedural scenes with exact depth, written as a canonical dataset zip.

    python -m mdeas.synth out=data/synth.zip num_samples=2000 image_size=128 seed=0
    python -m mdeas.synth scheme=seed num_samples=400000 num_foregrounds=100 workers=16

Each background (a scene seen by a random camera, see `mdeas.synth.scene`) is reused for several samples, each
with one object standing on the ground or on a solid's top, its bounding box a fraction of the image side as the
seeds pasted theirs (150/224 x scale). The `camera` prior decides what the world looks like and how that size is
reached:

- `metric` (the default): a world of real sizes seen by a hand-held camera (1.3-1.8 m high, FOV 55-70 deg,
  pitch 5-20 deg; rooms, furniture and materials of fixed sizes in metres), so that depth has an absolute scale
  to learn. Objects keep their size in metres (a person 1.5-1.9 m tall): the scale decides where the object
  stands (the nearer, the larger on the image), as far as the scene allows, never how large it is;
- `wide`: no absolute scale (camera 0.3-2.2 m high, FOV 45-80 deg, the room and its furniture scaled with the
  camera's height, materials of any size), for relative-depth training; objects are resized to the target.

Two sampling schemes:

- `random`: `fg_per_bg` samples per background, each a new random object at a scale drawn from `scale_range`;
- `seed`: the seeds' scheme, `num_foregrounds` objects shared by all backgrounds, each mirrored or not (`flips`),
  at every scale in `scales`, at `positions` random places: num_foregrounds x 2 x 4 x 5 samples per background.

The zip holds (DESIGN.md, "Canonical dataset zip"): manifest.csv, meta.json, bg/<bg_id>.jpg, fg_bg/<id>.jpg,
mask/<id>.png (0/255), depth/<id>.png (uint16 mm, the depth of the fg_bg scene). Work is spread over `workers`
processes; the same arguments give a byte-identical zip whatever the number of workers.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mdeas.config_values import output_file, whole_number
from mdeas.synth.camouflage import camouflage
from mdeas.synth.parallel import default_workers, ordered_map
from mdeas.synth.photos import shipped_photo_paths, shipped_photos, wear_photo
from mdeas.synth.rough_edges import rough_edges
from mdeas.synth.scene import (
    CAMERA_PRIORS,
    Foreground,
    Render,
    SceneInfo,
    composite,
    contact_occlusion,
    light_foreground,
    object_shadow,
    place_foreground,
    render_background,
)
from mdeas.synth.sensor import Sensor, sample_sensor
from mdeas.synth.shapes import Sprite, make_sprite
from mdeas.synth.writer import (
    JpegQuality,
    check_image_options,
    encode_depth_mm,
    encode_jpeg,
    encode_mask,
    jpeg_quality_for,
    options_from_config,
    sample_row,
    write_zip,
)

GENERATOR_VERSION = 5  # 5: a background's JPEG quality drawn from a stream of its own; camouflage shifts ±h//10
MIN_DEPTH_MM = 4000  # the least far limit at which every scene still has room to place its objects
SCHEMES = ("random", "seed")
MAX_SAMPLES = 10_000_000  # the most samples a set may hold (the seeds' had 400,000); its manifest is built in memory
SEED_FG_FRACTION = 150 / 224  # the seeds' cut-outs: max side 150 px on 224 px images at scale 1
SEED_SCALES = (1.0, 0.8, 0.6, 0.4)
_RETRY_SIZES = (1.0, 1.25, 0.8, 1.5, 0.65, 1.0)  # object sizes tried when a placement fails, x the target
_BACKGROUND_QUALITY_STREAM = 1  # with the seed and a background's index: the stream of its JPEG quality
_EDGE_STREAM = 7  # the random stream of cut-out edges, apart from the sample's other draws
_CAMOUFLAGE_STREAM = 8  # the random stream of recolouring with the background's texture
_PHOTO_STREAM = 9  # the random stream of photo skins (a background's, an object's)


@dataclass(frozen=True)
class Options:
    """Everything that decides the dataset's content (see `generate`)."""

    num_samples: int
    image_size: int = 224
    seed: int = 0
    jpeg_quality: JpegQuality = 75
    fg_per_bg: int = 10
    max_depth_mm: int = 20000
    scheme: str = "random"
    num_foregrounds: int = 100
    flips: bool = True
    scales: tuple[float, ...] = SEED_SCALES
    positions: int = 5
    scale_range: tuple[float, float] = (0.4, 1.25)
    paste_fraction: float = 0.0
    rough_edges: float = 0.0
    camouflage: float = 0.0
    open_objects: float = 0.0
    photo_skins: float = 0.0
    camera: str = "metric"

    @property
    def per_bg(self) -> int:
        """Samples per background."""
        if self.scheme == "seed":
            return self.num_foregrounds * (2 if self.flips else 1) * len(self.scales) * self.positions
        return self.fg_per_bg

    @property
    def num_backgrounds(self) -> int:
        return math.ceil(self.num_samples / self.per_bg)

    @property
    def sprite_rows(self) -> int:
        """Canvas rows of an object: enough for its largest size on the image."""
        return max(48, round(0.75 * self.image_size))


@dataclass(frozen=True)
class SampleSpec:
    """One sample to make: its id, background, random stream key, and for the seed scheme its shared object,
    mirroring and scale (None: drawn from the sample's stream)."""

    id: str
    bg_index: int
    key: tuple[int, ...]
    foreground: int | None = None
    flip: bool = False
    scale: float | None = None


@dataclass(frozen=True, eq=False)
class Background:
    """A rendered background: `rgb` uint8 [S, S, 3] as stored, the `render` behind it (scene colour, lit part,
    depth float32 [S, S] m, SceneInfo) and the camera `sensor` that recorded it."""

    index: int
    id: str
    rgb: np.ndarray
    render: Render
    sensor: Sensor
    noise_key: tuple[int, ...]

    @property
    def depth(self) -> np.ndarray:
        return self.render.depth

    @property
    def scene(self) -> SceneInfo:
        return self.render.scene


@dataclass(frozen=True, eq=False)
class SampleArrays:
    """One sample before encoding. fg_bg: uint8 [S, S, 3]; mask: bool [S, S]; depth: float32 [S, S] m (the fg_bg
    scene); bg_depth: float32 [S, S] m (background only); fg_depth: float32 [S, S] m (inf off the object);
    contact: (row, column) of the pixel where the object touches its support, `base` m above the ground."""

    id: str
    background: Background
    fg_bg: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    bg_depth: np.ndarray
    fg_depth: np.ndarray
    contact: tuple[int, int]
    base: float


def bg_name(bg_index: int, num_backgrounds: int) -> str:
    """Background id, e.g. b00012 (at least 5 digits)."""
    return f"b{bg_index:0{_digits(num_backgrounds, 5)}d}"


def _digits(count: int, least: int) -> int:
    return max(least, len(str(count - 1)))


def plan(opts: Options) -> list[SampleSpec]:
    """The samples of a dataset, in order: background by background (ids `b00012_f03` for the random scheme,
    `b00012_o007_m1_s2_p4` for the seed scheme: object 7, mirrored, scale index 2, position 4)."""

    def specs() -> Iterator[SampleSpec]:
        for b in range(opts.num_backgrounds):
            bg_id = bg_name(b, opts.num_backgrounds)
            if opts.scheme == "random":
                width = _digits(opts.fg_per_bg, 2)
                yield from (
                    SampleSpec(f"{bg_id}_f{k:0{width}d}", b, (opts.seed, 1, b, k)) for k in range(opts.fg_per_bg)
                )
                continue
            for o, m, s, p in seed_scheme(opts.num_foregrounds, opts.flips, len(opts.scales), opts.positions):
                name = seed_sample_id(bg_id, o, m, s, p, opts.num_foregrounds)
                yield SampleSpec(name, b, (opts.seed, 3, b, o, m, s, p), o, bool(m), opts.scales[s])

    return list(itertools.islice(specs(), opts.num_samples))  # made lazily: positions=10**8 lists only what is kept


def seed_scheme(
    num_foregrounds: int, flips: bool, num_scales: int, positions: int
) -> Iterator[tuple[int, int, int, int]]:
    """The seeds' samples of one background, in order, one at a time: (object, mirrored 0/1, scale index, position)."""
    mirrors = (0, 1) if flips else (0,)
    return (  # not itertools.product, which holds each of its ranges as a tuple
        (o, m, s, p)
        for o in range(num_foregrounds)
        for m in mirrors
        for s in range(num_scales)
        for p in range(positions)
    )


def seed_sample_id(bg_id: str, obj: int, mirrored: int, scale_index: int, position: int, num_foregrounds: int) -> str:
    """Sample id of the seed scheme, e.g. b00012_o007_m1_s2_p4 (at least 3 digits for the object)."""
    return f"{bg_id}_o{obj:0{_digits(num_foregrounds, 3)}d}_m{mirrored}_s{scale_index}_p{position}"


def background_quality(opts: Options, bg_index: int) -> int:
    """The JPEG quality background `bg_index` is saved at (`opts.jpeg_quality`, or a draw from its own stream)."""
    return jpeg_quality_for(opts.jpeg_quality, (opts.seed, _BACKGROUND_QUALITY_STREAM, bg_index))


@functools.lru_cache(maxsize=2)
def make_background(
    seed: int,
    bg_index: int,
    image_size: int,
    max_depth_m: float,
    num_backgrounds: int = 1,
    camera: str = "metric",
    photo_skins: float = 0.0,
) -> Background:
    """Render background `bg_index` of the dataset with this seed under the `camera` prior (CAMERA_PRIORS)
    (deterministic; cached per process); with probability `photo_skins` it wears a shipped photo (`wear_photo`)."""
    rng = np.random.default_rng([seed, 0, bg_index])
    render = render_background(rng, image_size, max_depth_m, camera)
    skin = np.random.default_rng([seed, _PHOTO_STREAM, bg_index])
    if photo_skins > 0 and skin.random() < photo_skins:
        render = replace(render, clean=wear_photo(render.clean, skin, shipped_photos()))
    sensor = sample_sensor(rng, float(render.clean.mean()))
    noise_key = (seed, 4, bg_index)
    rgb = sensor.apply(render.clean, np.random.default_rng(noise_key))
    return Background(bg_index, bg_name(bg_index, num_backgrounds), rgb, render, sensor, noise_key)


@functools.lru_cache(maxsize=256)
def shared_sprite(seed: int, index: int, rows: int, open_share: float) -> Sprite:
    """Object `index` of the seed scheme, shared by every background (deterministic; cached per process)."""
    return make_sprite(np.random.default_rng([seed, 2, index]), rows=rows, open_share=open_share)


def make_foreground(
    background: Background, spec: SampleSpec, opts: Options, rng: np.random.Generator
) -> tuple[Foreground, bool]:
    """The object of `spec` placed, lit and dressed for `background` (`make_sample`), drawing from the sample's
    stream `rng`; and whether it is a pure paste. Its rgb [S, S, 3] (image-sized, linear) is the object's own colour F
    where its alpha is above 0, and means nothing elsewhere."""
    if spec.foreground is None:
        sprite = make_sprite(rng, rows=opts.sprite_rows, open_share=opts.open_objects)
    else:
        sprite = shared_sprite(opts.seed, spec.foreground, opts.sprite_rows, opts.open_objects)
    sprite = sprite.flipped() if spec.flip else sprite
    scale = spec.scale if spec.scale is not None else float(rng.uniform(*opts.scale_range))
    render, scene = background.render, background.scene
    target = SEED_FG_FRACTION * opts.image_size * scale
    for attempt, factor in enumerate(_RETRY_SIZES):
        try:
            fg = place_foreground(rng, scene, render.depth, sprite, target * factor, resize=opts.camera == "wide")
            break
        except RuntimeError:  # e.g. thin legs too faint on the contact row at this size
            if attempt == len(_RETRY_SIZES) - 1:
                raise
            if spec.foreground is None:
                sprite = make_sprite(rng, rows=opts.sprite_rows, open_share=opts.open_objects)
    fg = light_foreground(scene, fg)
    skin = np.random.default_rng([*spec.key, _PHOTO_STREAM])
    if opts.photo_skins > 0 and skin.random() < opts.photo_skins:
        fg = replace(fg, rgb=wear_photo(fg.rgb, skin, shipped_photos()))
    pasted = opts.paste_fraction > 0 and rng.random() < opts.paste_fraction  # no draw at 0
    edges = np.random.default_rng([*spec.key, _EDGE_STREAM])
    if pasted and edges.random() < opts.rough_edges:
        fg = rough_edges(fg, edges)
    disguise = np.random.default_rng([*spec.key, _CAMOUFLAGE_STREAM])
    if pasted and disguise.random() < opts.camouflage:
        fg = camouflage(fg, render.clean, disguise)
    return fg, pasted


def make_sample(background: Background, spec: SampleSpec, opts: Options) -> SampleArrays:
    """Place the object of `spec` into `background`: composite, mask and depth (deterministic).

    The object's bounding box aims at 150/224 x scale of the image side: under the wide prior it is resized to
    that, under the metric prior it keeps its size in metres and stands where it has about that size on the image
    (`place_foreground`). When no placement is found the target is varied (_RETRY_SIZES) and, in the random
    scheme, a new object drawn.

    The object is lit by the scene's light and shadowed by its solids; it casts a soft shadow (p = 0.7) and
    darkens the support at its feet (p = 0.8), which change the image outside the mask. The fg_bg image reuses
    the background's sensor noise with p = 0.5 (as a pasted composite) and draws its own otherwise (as a photo).
    A fraction `opts.paste_fraction` of the samples is a pure paste, as the seeds made theirs: no cast shadow, no
    darkening, the background's noise, so that fg_bg equals bg outside the mask up to JPEG. A fraction
    `opts.rough_edges` of the pastes has the outline of a hand-made cut-out (`rough_edges`: feathered, often
    fringed), drawn from a stream of its own; a fraction `opts.camouflage` of the pastes wears the background's
    own texture from another place (`camouflage`), drawn from another stream. A share `opts.open_objects` of the
    objects is drawn from the open kinds (bicycles, ladders, fences: holes that show the background). A share
    `opts.photo_skins` of the objects (and, in `make_background`, of the backgrounds) wears a crop of a shipped
    photograph (`mdeas.synth.photos`), drawn from a stream of its own.
    """
    rng = np.random.default_rng(spec.key)
    fg, pasted = make_foreground(background, spec, opts, rng)
    render, scene = background.render, background.scene
    colour = render.clean
    if not pasted and rng.random() < 0.7:
        colour = colour - render.direct * object_shadow(scene, render.depth, fg)[..., None]
    if not pasted and rng.random() < 0.8:
        colour = colour * contact_occlusion(scene, render.depth, fg, rng.uniform(0.2, 0.6))[..., None]
    rgb, mask, depth = composite(colour, render.depth, fg)
    noise = np.random.default_rng(background.noise_key) if pasted or rng.random() < 0.5 else rng
    return SampleArrays(
        id=spec.id,
        background=background,
        fg_bg=background.sensor.apply(rgb, noise),
        mask=mask,
        depth=depth.astype(np.float32),
        bg_depth=render.depth,
        fg_depth=fg.depth.astype(np.float32),
        contact=fg.contact,
        base=fg.base,
    )


def depth_to_mm(depth_m: np.ndarray, max_depth_mm: int) -> np.ndarray:
    """Depth in m [H, W] → uint16 millimetres in [1, max_depth_mm] (every synthetic pixel is known, so never 0)."""
    return np.clip(np.rint(depth_m * 1000.0), 1, max_depth_mm).astype(np.uint16)


def render_unit(opts: Options, specs: Sequence[SampleSpec], with_bg: bool) -> list[tuple[str, bytes]]:
    """Zip entries (name, bytes) of some samples of one background, and the background image if `with_bg`."""
    background = make_background(
        opts.seed,
        specs[0].bg_index,
        opts.image_size,
        opts.max_depth_mm / 1000.0,
        opts.num_backgrounds,
        opts.camera,
        opts.photo_skins,
    )
    bg_quality = background_quality(opts, specs[0].bg_index)
    entries = [(f"bg/{background.id}.jpg", encode_jpeg(background.rgb, bg_quality))] if with_bg else []
    for spec in specs:
        sample = make_sample(background, spec, opts)
        quality = jpeg_quality_for(opts.jpeg_quality, spec.key)
        entries.append((f"fg_bg/{spec.id}.jpg", encode_jpeg(sample.fg_bg, quality)))
        entries.append((f"mask/{spec.id}.png", encode_mask(sample.mask)))
        entries.append((f"depth/{spec.id}.png", encode_depth_mm(depth_to_mm(sample.depth, opts.max_depth_mm))))
    return entries


def _render_unit(args: tuple[Options, list[SampleSpec], bool]) -> list[tuple[str, bytes]]:
    return render_unit(*args)


def work_units(opts: Options, specs: Sequence[SampleSpec]) -> list[tuple[Options, list[SampleSpec], bool]]:
    """Split the plan into units of work: a background's samples (random scheme) or those of one object on one
    background (seed scheme); the first unit of a background also writes its image."""
    units: list[tuple[Options, list[SampleSpec], bool]] = []
    for spec in specs:
        group = (spec.bg_index, spec.foreground)
        if units and (units[-1][1][0].bg_index, units[-1][1][0].foreground) == group:
            units[-1][1].append(spec)
        else:
            units.append((opts, [spec], not units or units[-1][1][0].bg_index != spec.bg_index))
    return units


def _check(opts: Options) -> None:
    check_image_options(opts.image_size, opts.seed, opts.jpeg_quality)
    if opts.fg_per_bg < 1:
        raise ValueError(f"fg_per_bg must be >= 1, got {opts.fg_per_bg}")
    if not MIN_DEPTH_MM <= opts.max_depth_mm <= 65535:
        raise ValueError(
            f"max_depth_mm must be in [{MIN_DEPTH_MM}, 65535] (nearer, the generated rooms leave no place for their"
            f" objects; 16-bit PNG), got {opts.max_depth_mm}"
        )
    if opts.camera not in CAMERA_PRIORS:
        raise ValueError(f"camera must be one of {', '.join(CAMERA_PRIORS)}, got {opts.camera!r}")
    if opts.scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {opts.scheme!r}")
    for name in ("num_foregrounds", "positions"):
        if getattr(opts, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(opts, name)}")
    if not opts.scales:
        raise ValueError("scales must hold at least one scale, got []")
    if len(opts.scale_range) != 2:
        raise ValueError(f"scale_range must be [low, high], got {list(opts.scale_range)}")
    for name in ("paste_fraction", "rough_edges", "camouflage", "open_objects", "photo_skins"):
        if not 0 <= getattr(opts, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(opts, name)}")
    if opts.photo_skins > 0:
        shipped_photo_paths()  # no photo package installed: say so before anything is rendered
    low, high = opts.scale_range
    if low > high:
        raise ValueError(f"scale_range must be [low, high] with low <= high, got {list(opts.scale_range)}")
    if not all(0 < s <= 1.5 for s in (*opts.scales, low, high)):
        raise ValueError(f"scales must be in (0, 1.5], got {opts.scales} and scale_range {opts.scale_range}")


def generate(out: str | Path, num_samples: int, workers: int | None = None, **options: Any) -> Path:
    """Write a canonical dataset zip of `num_samples` samples to `out`; returns its path.

    options (see `Options`, conf/synth.yaml): image_size, seed, jpeg_quality, fg_per_bg, max_depth_mm, scheme
    ("random" or "seed"), num_foregrounds, flips, scales, positions, scale_range, paste_fraction, rough_edges,
    camouflage, open_objects, photo_skins, camera ("metric" or "wide"). Defaults are `Options`', which differ from
    conf/synth.yaml's in one place: paste_fraction is 0 here (every sample rendered as a photo, with its own
    shadow and noise) and 1 there (pasted the seeds' way, what training uses); pass it to make the CLI's data.
    ceil(num_samples / samples per background) backgrounds are rendered; depth is stored in mm, clamped to
    max_depth_mm. `workers` processes render (default: the CPU count); the zip's bytes do not depend on it. The
    zip is written beside `out` and renamed into place, so `out` is either complete or absent.
    """
    output_file(out, "out")
    whole_number(num_samples, "generator option num_samples", 1)  # `true` made a set of one sample
    if num_samples > MAX_SAMPLES:
        raise ValueError(f"generator option num_samples must be at most {MAX_SAMPLES:,}, got {num_samples:,}")
    workers = default_workers() if workers is None else whole_number(workers, "generator option workers", 1)
    opts = options_from_config(Options, "generator", options, num_samples)
    _check(opts)
    specs = plan(opts)
    meta = {
        "generator": "mdeas.synth",
        "version": GENERATOR_VERSION,
        "seed": opts.seed,
        "num_samples": opts.num_samples,
        "num_backgrounds": opts.num_backgrounds,
        "image_size": opts.image_size,
        "jpeg_quality": opts.jpeg_quality,
        "scheme": opts.scheme,
        "paste_fraction": opts.paste_fraction,
        "rough_edges": opts.rough_edges,
        "camouflage": opts.camouflage,
        "open_objects": opts.open_objects,
        "photo_skins": opts.photo_skins,
        "camera": opts.camera,
        "depth": {"format": "png16", "unit": "mm", "max": opts.max_depth_mm},
        "mask": {"format": "png8", "values": [0, 255]},
    }
    if opts.scheme == "random":
        meta.update(fg_per_bg=opts.fg_per_bg, scale_range=list(opts.scale_range))
    else:
        meta.update(num_foregrounds=opts.num_foregrounds, flips=opts.flips, scales=list(opts.scales))
        meta.update(positions=opts.positions)
    rows = [sample_row(spec.id, bg_name(spec.bg_index, opts.num_backgrounds)) for spec in specs]
    units = work_units(opts, specs)
    return write_zip(
        out, meta, rows, (entry for entries in ordered_map(_render_unit, units, workers) for entry in entries)
    )

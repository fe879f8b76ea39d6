"""Composite foreground cut-outs onto your backgrounds the way the seeds built their datasets; write a canonical zip.

    python -m mdeas.synth.compose bg_dir=photos/bg fg_dir=photos/fg out=data/composed.zip
    python -m mdeas.synth.compose bg_dir=B fg_dir=F mask_dir=M depth_dir=D out=data/c.zip jpeg_quality=50

Inputs (one folder level, files sorted by name; images: .jpg .jpeg .png .bmp .webp .tif .tiff):

- `bg_dir`: backgrounds, resized to image_size x image_size (`bg_fit=resize`) or centre-cropped to a square
  first (`bg_fit=crop`).
- `fg_dir`: foregrounds. An object's opacity is, in this order: `mask_dir/<name>.png` if `mask_dir` is given,
  `fg_dir/<name>_mask.png` if present (files named `*_mask.*` are never foregrounds), else the image's own alpha
  channel (RGBA cut-outs). A grey mask file is an opacity (one whose brightest value is under 128, saved as 0/1,
  scaled to it), a colour or palette one a label map read as the dataset readers read masks (opaque where its
  brightest channel is foreground), either times its alpha channel if any. Each object is cropped to its opaque
  part's bounding box. Dot files are left out; two files of one folder with the same stem (`a.jpg`, `a.png`) are
  refused.
- `depth_dir` (optional): `<background name>.png`, 16-bit millimetres (0 = unknown), one per background.

Every background gets every object, mirrored or not (`flips`), at every scale in `scales` (the object's longer
side is fg_max_side / 224 x image_size x scale px), at `positions` random places where it fits wholly: with the
defaults 40 samples per pair, the seeds' 100 x 100 x 40. The mask is the pasted object's opacity > 0.5.

Depth: without `depth_dir` the zip declares none (every manifest depth field is empty, meta.json `"depth":
null`). With it, the object is taken to stand on the ground where its lowest mask row touches it: its depth is
the median background depth over that row's mask pixels (0 = unknown if none is known), and inside the mask the
fg_bg depth is min(object depth, background depth), so a pasted object is never behind what it covers. Outside
the mask it is the background's depth. The same arguments give a byte-identical zip.
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image

from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_name, output_file, whole_number
from mdeas.data.decode import FOREGROUND, GREY_MODES, check_eight_bit, exif_turn, open_image, to_pillow
from mdeas.data.errors import DataError
from mdeas.data.layouts import IMAGE_EXTENSIONS
from mdeas.data.zipstore import read_file
from mdeas.synth.generate import MAX_SAMPLES, SEED_SCALES, bg_name, seed_sample_id, seed_scheme
from mdeas.synth.parallel import default_workers, ordered_map
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

GENERATOR_VERSION = 1
MASK_SUFFIX = "_mask"
BG_FITS = ("resize", "crop")


@dataclass(frozen=True)
class Sources:
    """The input files: backgrounds, foregrounds with their mask files (None: the image's alpha), and the
    backgrounds' depth maps (None: no depth)."""

    backgrounds: tuple[Path, ...]
    foregrounds: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    depths: tuple[Path, ...] | None


@dataclass(frozen=True)
class ComposeOptions:
    """How samples are made (see the module docstring and conf/compose.yaml)."""

    image_size: int = 224
    seed: int = 0
    jpeg_quality: JpegQuality = 75
    scales: tuple[float, ...] = SEED_SCALES
    positions: int = 5
    flips: bool = True
    fg_max_side: float = 150.0
    bg_fit: str = "resize"
    max_depth_mm: int = 20000

    def max_side(self, scale: float) -> int:
        """The object's longer side (px) at this scale."""
        return max(1, round(self.fg_max_side / 224 * self.image_size * scale))


def _images(folder: Path) -> list[Path]:
    """The image files of `folder` by name (dot files left out: macOS's `._*`); DataError naming the folder when it
    is none, or the file when two share a stem (a mask or depth map would be taken for both)."""
    if not folder.is_dir():
        raise DataError(folder, None, "a file, not a folder" if folder.is_file() else "no such folder")
    images = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.name[0] != "."
    )
    stems: dict[str, str] = {}
    for path in images:
        if path.stem in stems:
            raise DataError(folder, path.name, f"same name as {stems[path.stem]}: give each file a name of its own")
        stems[path.stem] = path.name
    return images


def find_sources(
    bg_dir: str | Path, fg_dir: str | Path, mask_dir: str | Path | None = None, depth_dir: str | Path | None = None
) -> Sources:
    """List and pair the input files (module docstring); DataError naming the folder or file if one is missing."""
    bg_dir, fg_dir = Path(bg_dir), Path(fg_dir)
    backgrounds = _images(bg_dir)
    foregrounds = [p for p in _images(fg_dir) if not p.stem.endswith(MASK_SUFFIX)]
    for folder, found in ((bg_dir, backgrounds), (fg_dir, foregrounds)):
        if not found:
            masks_only = " other than masks (*_mask.*)" if folder == fg_dir and _images(fg_dir) else ""
            raise DataError(folder, None, f"no images{masks_only} ({' '.join(IMAGE_EXTENSIONS)})")
    masks: list[Path | None] = []
    for fg in foregrounds:
        mask = (
            Path(mask_dir) / f"{fg.stem}.png" if mask_dir is not None else fg.with_name(fg.stem + MASK_SUFFIX + ".png")
        )
        if mask_dir is not None and not mask.is_file():
            raise DataError(mask_dir, mask.name, f"missing mask of foreground {fg.name}")
        masks.append(mask if mask.is_file() else None)
    depths = None
    if depth_dir is not None:
        depths = tuple(Path(depth_dir) / f"{bg.stem}.png" for bg in backgrounds)
        for bg, depth in zip(backgrounds, depths, strict=True):
            if not depth.is_file():
                raise DataError(depth_dir, depth.name, f"missing depth map of background {bg.name}")
    return Sources(tuple(backgrounds), tuple(foregrounds), tuple(masks), depths)


def _open(path: Path, eight_bit: str | None = None) -> Image.Image:
    """The image file at `path`, upright; DataError naming it when it is not an image of a dataset's formats, is
    damaged, larger than MDEAS_MAX_ENTRY_MB or declares more than MDEAS_MAX_MEGAPIXELS (`mdeas.data.decode`), or,
    given `eight_bit` (what it should be: "image (colour or grey)"), when its pixels are not 8-bit."""
    encoded = open_image(read_file(path), str(path), "")
    if eight_bit:
        check_eight_bit(encoded, eight_bit)
    image, turn = to_pillow(encoded), exif_turn(encoded)
    return image if turn is None else image.transpose(turn)


def _fit(image: Image.Image, size: int, fit: str, resample: Image.Resampling) -> Image.Image:
    """Square `image` (centre crop for fit="crop") and resize it to size x size."""
    if fit == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), resample)


def load_background(path: Path, size: int, fit: str) -> np.ndarray:
    """A background as uint8 [size, size, 3]."""
    return np.asarray(_fit(_open(path, "image (colour or grey)").convert("RGB"), size, fit, Image.Resampling.LANCZOS))


def load_depth(path: Path, size: int, fit: str, background: Path, max_mm: int = 65535) -> np.ndarray:
    """A 16-bit millimetre depth map as uint16 [size, size] (nearest-neighbour resampling keeps 0 = unknown);
    DataError naming the file when its size differs from its `background` image's, or when the part kept holds
    depth beyond `max_mm`, what the zip will declare as depth 1.0."""
    image = _open(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(path, None, f"expected a 16-bit PNG of millimetres, got mode {image.mode}")
    bg_size = _open(background).size
    if image.size != bg_size:
        size = f"{image.size[0]}x{image.size[1]}"
        raise DataError(
            path, None, f"size {size} differs from its background {background.name} ({bg_size[0]}x{bg_size[1]})"
        )
    depth = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
    depth = np.asarray(_fit(Image.fromarray(depth), size, fit, Image.Resampling.NEAREST), dtype=np.uint16)
    if depth.max() > max_mm:
        raise DataError(path, None, f"depth up to {depth.max()} mm, beyond max_depth_mm={max_mm}: raise max_depth_mm")
    return depth


def mask_opacity(mask: Image.Image) -> np.ndarray:
    """A mask file's opacity, float64 [h, w] in [0, 1]. Grey (or colour with equal channels) is an opacity as
    stored, scaled so that its brightest is 1 when that is under FOREGROUND (a mask saved as 0/1); colour or a
    palette is a label map read as the dataset readers read masks (`to_mask`: the brightest channel, a red mask or
    a palette's class colours on black), opaque where that is foreground; either times the alpha channel where
    there is one (a white shape drawn in alpha)."""
    rgba = np.asarray(mask.convert("RGBA"), np.float64)
    colour = rgba[..., :3]
    labels = mask.mode not in GREY_MODES and not (colour == colour[..., :1]).all()
    value = colour.max(axis=-1)
    brightest = value.max()
    value = value * 255.0 / brightest if 0 < brightest < FOREGROUND else value
    if labels:
        value = np.where(value >= FOREGROUND, 255.0, 0.0)
    return value * rgba[..., 3] / 255.0 / 255.0


def load_foreground(path: Path, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """An object as colour float64 [h, w, 3] (0-255) and opacity float64 [h, w] in [0, 1], cropped to where the
    opacity is > 0: from the mask file if given, else from the image's alpha channel."""
    image = _open(path, "image (colour or grey)")
    if mask_path is not None:
        mask = _open(mask_path, "mask (grey or colour)")
        if mask.size != image.size:
            size, fg_size = (f"{w}x{h}" for w, h in (mask.size, image.size))
            raise DataError(mask_path, None, f"size {size} differs from its foreground {path.name} ({fg_size})")
        alpha = mask_opacity(mask)
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"), np.float64)[..., 3] / 255.0
    else:
        raise DataError(path, None, f"no alpha channel and no mask ({path.stem}{MASK_SUFFIX}.png or mask_dir)")
    rows, cols = np.nonzero(alpha > 0)
    if rows.size == 0:
        raise DataError(mask_path or path, None, "the object's opacity is 0 everywhere")
    if not (alpha > 0.5).any():
        raise DataError(mask_path or path, None, "the object's opacity is at most 0.5 everywhere: its mask is empty")
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return np.asarray(image.convert("RGB"), np.float64)[box], alpha[box]


def resize_foreground(rgb: np.ndarray, alpha: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an object so that its longer side is `max_side` px, with premultiplied alpha (no dark fringes)."""
    h, w = alpha.shape
    size = (max(1, round(w * max_side / max(h, w))), max(1, round(h * max_side / max(h, w))))

    def resized(channel: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(channel.astype(np.float32), "F").resize(size, Image.Resampling.BICUBIC))

    new_alpha = np.clip(resized(alpha), 0, 1).astype(np.float64)
    premultiplied = np.stack([resized(rgb[..., c] * alpha) for c in range(3)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = np.where(new_alpha[..., None] > 1e-3, premultiplied / new_alpha[..., None], 0.0)
    return np.clip(colour, 0, 255), new_alpha


def paste(bg: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend an object onto a background at (top, left): fg_bg uint8 [S, S, 3], mask bool [S, S]."""
    h, w = alpha.shape
    out = bg.astype(np.float64)
    region = (slice(top, top + h), slice(left, left + w))
    out[region] = out[region] * (1 - alpha[..., None]) + rgb * alpha[..., None]
    mask = np.zeros(bg.shape[:2], bool)
    mask[region] = alpha > 0.5
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), mask


def place(
    cutout: tuple[np.ndarray, np.ndarray],
    opts: ComposeOptions,
    bg: int,
    fg: int,
    mirrored: int,
    scale_index: int,
    position: int,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The object `cutout` (colour, opacity of `load_foreground`) of sample (bg, fg, mirrored, scale index,
    position): resized to its scale, mirrored if asked, and the place it is pasted at. Returns colour [h, w, 3],
    opacity [h, w], top and left (px)."""
    rgb, alpha = resize_foreground(*cutout, opts.max_side(opts.scales[scale_index]))
    rgb, alpha = (rgb[:, ::-1], alpha[:, ::-1]) if mirrored else (rgb, alpha)
    # With 7 positions or more this key can be another sample's JPEG-quality stream ((seed, bg, fg, m, s, p) and 6:
    # `jpeg_quality_for`); kept so that sets composed before, the real-photo check sets among them, stay byte-identical.
    rng = np.random.default_rng([opts.seed, 5, bg, fg, mirrored, scale_index, position])
    top = int(rng.integers(0, opts.image_size - alpha.shape[0] + 1))
    left = int(rng.integers(0, opts.image_size - alpha.shape[1] + 1))
    return rgb, alpha, top, left


def composite_depth(bg_depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """fg_bg depth uint16 [S, S] (mm) of an object standing on the ground at its lowest mask row (module
    docstring): outside the mask the background's, inside min(object depth, background depth)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return bg_depth.copy()
    bottom = bg_depth[rows.max()][mask[rows.max()]]
    known = bottom[bottom > 0]
    fg = np.uint16(np.rint(np.median(known))) if known.size else np.uint16(0)
    inside = np.where(bg_depth > 0, np.minimum(bg_depth, fg), fg) if fg > 0 else np.zeros_like(bg_depth)
    return np.where(mask, inside, bg_depth).astype(np.uint16)


@dataclass(frozen=True)
class _Unit:
    """Work for one process call: every sample of object `fg` on background `bg` (its image too if `with_bg`)."""

    sources: Sources
    opts: ComposeOptions
    bg: int
    fg: int
    with_bg: bool


@functools.lru_cache(maxsize=2)
def _background(sources: Sources, opts: ComposeOptions, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    image = load_background(sources.backgrounds[index], opts.image_size, opts.bg_fit)
    if sources.depths is None:
        return image, None
    depth_path, image_path = sources.depths[index], sources.backgrounds[index]
    return image, load_depth(depth_path, opts.image_size, opts.bg_fit, image_path, opts.max_depth_mm)


def _read_input(task: tuple[Sources, ComposeOptions, str, int]) -> None:
    """Read one background (with its depth map) or one foreground as rendering will (DataError naming it)."""
    sources, opts, kind, index = task
    if kind == "bg":
        _background(sources, opts, index)
    else:
        load_foreground(sources.foregrounds[index], sources.masks[index])


def check_inputs(sources: Sources, opts: ComposeOptions, workers: int) -> None:
    """Read every input once before rendering: a bad one (damaged, not 8-bit, a depth map of another size or beyond
    max_depth_mm, an empty mask) is named at once, not after every input before it was rendered (minutes at the
    seeds' 100 × 100)."""
    tasks = [(sources, opts, "bg", b) for b in range(len(sources.backgrounds))]
    tasks += [(sources, opts, "fg", f) for f in range(len(sources.foregrounds))]
    for _ in ordered_map(_read_input, tasks, workers):
        pass


def _render(unit: _Unit) -> list[tuple[str, bytes]]:
    """Zip entries of one unit: the background image (first unit of a background) and its samples."""
    opts, sources = unit.opts, unit.sources
    bg, bg_depth = _background(sources, opts, unit.bg)
    bg_id = bg_name(unit.bg, len(sources.backgrounds))
    bg_quality = jpeg_quality_for(opts.jpeg_quality, (opts.seed, unit.bg))
    entries = [(f"bg/{bg_id}.jpg", encode_jpeg(bg, bg_quality))] if unit.with_bg else []
    cutout = load_foreground(sources.foregrounds[unit.fg], sources.masks[unit.fg])
    for _, m, s, p in seed_scheme(1, opts.flips, len(opts.scales), opts.positions):
        sample_id = seed_sample_id(bg_id, unit.fg, m, s, p, len(sources.foregrounds))
        rgb, alpha, top, left = place(cutout, opts, unit.bg, unit.fg, m, s, p)
        fg_bg, mask = paste(bg, rgb, alpha, top, left)
        quality = jpeg_quality_for(opts.jpeg_quality, (opts.seed, unit.bg, unit.fg, m, s, p))
        entries.append((f"fg_bg/{sample_id}.jpg", encode_jpeg(fg_bg, quality)))
        entries.append((f"mask/{sample_id}.png", encode_mask(mask)))
        if bg_depth is not None:
            entries.append((f"depth/{sample_id}.png", encode_depth_mm(composite_depth(bg_depth, mask))))
    return entries


def _check(opts: ComposeOptions) -> None:
    check_image_options(opts.image_size, opts.seed, opts.jpeg_quality)
    if not opts.scales or not all(0 < s for s in opts.scales):
        raise ValueError(f"scales must be > 0, got {list(opts.scales)}")
    if opts.positions < 1:
        raise ValueError(f"positions must be >= 1, got {opts.positions}")
    if not opts.fg_max_side > 0:
        raise ValueError(f"fg_max_side must be > 0 (px at 224), got {opts.fg_max_side}")
    if opts.max_side(max(opts.scales)) > opts.image_size:
        raise ValueError(
            f"fg_max_side={opts.fg_max_side:g} (px at 224) at scale {max(opts.scales):g} is larger than the image: "
            f"the object must fit (fg_max_side x scale at most 224)"
        )
    if opts.bg_fit not in BG_FITS:
        raise ValueError(f"bg_fit must be one of {', '.join(BG_FITS)}, got {opts.bg_fit!r}")
    if not 1000 <= opts.max_depth_mm <= 65535:
        raise ValueError(f"max_depth_mm must be in [1000, 65535] (16-bit PNG), got {opts.max_depth_mm}")


def compose(
    out: str | Path,
    bg_dir: str | Path,
    fg_dir: str | Path,
    mask_dir: str | Path | None = None,
    depth_dir: str | Path | None = None,
    workers: int | None = None,
    **options: Any,
) -> Path:
    """Write the composited canonical zip to `out` (module docstring); returns its path. options: see
    ComposeOptions. `workers` processes render (default: the CPU count); the bytes do not depend on it."""
    opts = options_from_config(ComposeOptions, "compose", options)
    output_file(out, "out")
    _check(opts)
    sources = find_sources(bg_dir, fg_dir, mask_dir, depth_dir)
    nb, nf = len(sources.backgrounds), len(sources.foregrounds)
    flips, scales = 2 if opts.flips else 1, len(opts.scales)
    if nb * nf * flips * scales * opts.positions > MAX_SAMPLES:
        raise ValueError(
            f"compose would write {nb * nf * flips * scales * opts.positions:,} samples ({nb} backgrounds x {nf} "
            f"objects x {flips} flips x {scales} scales x {opts.positions:,} positions), above {MAX_SAMPLES:,}: "
            "lower positions or scales"
        )
    per_pair = list(seed_scheme(1, opts.flips, scales, opts.positions))
    rows = [
        sample_row(seed_sample_id(bg_name(b, nb), f, m, s, p, nf), bg_name(b, nb), sources.depths is not None)
        for b in range(nb)
        for f in range(nf)
        for _, m, s, p in per_pair
    ]
    meta = {
        "generator": "mdeas.synth.compose",
        "version": GENERATOR_VERSION,
        "seed": opts.seed,
        "num_samples": len(rows),
        "num_backgrounds": nb,
        "num_foregrounds": nf,
        "image_size": opts.image_size,
        "jpeg_quality": opts.jpeg_quality,
        "scales": list(opts.scales),
        "positions": opts.positions,
        "flips": opts.flips,
        "fg_max_side": opts.fg_max_side,
        "bg_fit": opts.bg_fit,
        "backgrounds": [p.name for p in sources.backgrounds],
        "foregrounds": [p.name for p in sources.foregrounds],
        "mask": {"format": "png8", "values": [0, 255]},
        "depth": None,
    }
    if sources.depths is not None:
        meta["depth"] = {"format": "png16", "unit": "mm", "max": opts.max_depth_mm}
        meta["fg_depth"] = "median bg depth on the object's lowest mask row, capped by the bg depth"
    units = [_Unit(sources, opts, b, f, f == 0) for b in range(nb) for f in range(nf)]
    workers = default_workers() if workers is None else workers
    check_inputs(sources, opts, workers)
    entries = (entry for unit_entries in ordered_map(_render, units, workers) for entry in unit_entries)
    return write_zip(out, meta, rows, entries)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compose")
def main(cfg: DictConfig) -> None:
    """CLI: python -m mdeas.synth.compose bg_dir=DIR fg_dir=DIR out=PATH (see conf/compose.yaml)."""
    not_options = ("out", "bg_dir", "fg_dir", "mask_dir", "depth_dir", "workers")
    with exit_on_data_error(TypeError, ValueError):
        for key in ("out", "bg_dir", "fg_dir", "mask_dir", "depth_dir"):
            file_name(cfg[key], key)  # one name each (a list is refused)
        options = {k: v for k, v in cfg.items() if k not in not_options}
        path = compose(
            cfg.out,
            cfg.bg_dir,
            cfg.fg_dir,
            cfg.mask_dir,
            cfg.depth_dir,
            workers=None if cfg.workers is None else whole_number(cfg.workers, "workers", 1),
            **options,
        )
    with zipfile.ZipFile(path) as archive:
        print(f"wrote {json.loads(archive.read('meta.json'))['num_samples']} samples to {path}")


if __name__ == "__main__":
    run_app(main, sigterm_as_ctrl_c=True)

"""Synthetic dataset generator: procedural scenes with exact depth, written as a canonical dataset zip.

    python -m mdeas.data.synth out=data/synth.zip num_samples=2000 image_size=128 seed=0

Each background (a room seen by a random camera, see `mdeas.data.scene`) is reused for `fg_per_bg` samples,
each with one object standing on the ground. The zip holds (see DESIGN.md, "Canonical dataset zip"):
manifest.csv, meta.json, bg/<bg_id>.jpg, fg_bg/<id>.jpg, mask/<id>.png (0/255), depth/<id>.png (uint16 mm,
the depth of the fg_bg scene). The same arguments give a byte-identical zip.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image

from mdeas.data.scene import SceneInfo, composite, contact_shadow, place_foreground, render_background

GENERATOR_VERSION = 1
MANIFEST_COLUMNS = ["id", "bg", "fg_bg", "mask", "depth"]
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, eq=False)
class Background:
    """A rendered background. rgb: uint8 [S, S, 3] as stored (with sensor noise); clean: float64 [S, S, 3] in
    [0, 1] (noise-free, what objects are composited onto); depth: float32 [S, S] planar depth in m."""

    index: int
    id: str
    rgb: np.ndarray
    clean: np.ndarray
    depth: np.ndarray
    scene: SceneInfo


@dataclass(frozen=True, eq=False)
class SampleArrays:
    """One sample before encoding. fg_bg: uint8 [S, S, 3]; mask: bool [S, S]; depth: float32 [S, S] m (the fg_bg
    scene); bg_depth: float32 [S, S] m (background only); fg_depth: float32 [S, S] m (inf off the object);
    contact: (row, column) of the pixel where the object touches the ground."""

    id: str
    background: Background
    fg_bg: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    bg_depth: np.ndarray
    fg_depth: np.ndarray
    contact: tuple[int, int]


def background_rng(seed: int, bg_index: int) -> np.random.Generator:
    """The random stream of one background: depends on (seed, bg_index) only."""
    return np.random.default_rng([seed, 0, bg_index])


def sample_rng(seed: int, bg_index: int, fg_index: int) -> np.random.Generator:
    """The random stream of one sample (object, shadow, noise): depends on (seed, bg_index, fg_index) only."""
    return np.random.default_rng([seed, 1, bg_index, fg_index])


def add_noise(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Float image [H, W, 3] in [0, 1] → uint8 with Gaussian sensor noise of 0.5-3 grey levels."""
    sigma = rng.uniform(0.5, 3.0)
    noisy = rgb * 255.0 + rng.normal(0.0, sigma, rgb.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def bg_name(bg_index: int, num_backgrounds: int) -> str:
    """Background id, e.g. b00012 (at least 5 digits)."""
    return f"b{bg_index:0{max(5, len(str(num_backgrounds - 1)))}d}"


def sample_name(bg_id: str, fg_index: int, fg_per_bg: int) -> str:
    """Sample id, e.g. b00012_f03 (at least 2 digits for the object)."""
    return f"{bg_id}_f{fg_index:0{max(2, len(str(fg_per_bg - 1)))}d}"


def make_background(
    seed: int, bg_index: int, image_size: int, max_depth_m: float, num_backgrounds: int = 1
) -> Background:
    """Render background `bg_index` of the dataset with this seed (deterministic)."""
    rng = background_rng(seed, bg_index)
    rgb, depth, scene = render_background(rng, image_size, max_depth_m)
    clean = rgb.astype(np.float64) / 255.0
    return Background(bg_index, bg_name(bg_index, num_backgrounds), add_noise(rng, clean), clean, depth, scene)


def make_sample(background: Background, seed: int, fg_index: int, fg_per_bg: int = 10) -> SampleArrays:
    """Place object `fg_index` into `background`: composite, mask and depth as float arrays (deterministic)."""
    rng = sample_rng(seed, background.index, fg_index)
    scene = background.scene
    fg = place_foreground(rng, scene, background.depth)
    shadow = contact_shadow(scene, fg, rng.uniform(0.15, 0.45))
    rgb, mask, depth = composite(background.clean * shadow[..., None], background.depth, fg)
    return SampleArrays(
        id=sample_name(background.id, fg_index, fg_per_bg),
        background=background,
        fg_bg=add_noise(rng, rgb),
        mask=mask,
        depth=depth.astype(np.float32),
        bg_depth=background.depth,
        fg_depth=fg.depth.astype(np.float32),
        contact=fg.contact,
    )


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] → JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    """bool [H, W] → 8-bit grey PNG with values 0 and 255."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def depth_to_mm(depth_m: np.ndarray, max_depth_mm: int) -> np.ndarray:
    """Depth in m [H, W] → uint16 millimetres in [1, max_depth_mm] (every synthetic pixel is known, so never 0)."""
    return np.clip(np.rint(depth_m * 1000.0), 1, max_depth_mm).astype(np.uint16)


def encode_depth(depth_m: np.ndarray, max_depth_mm: int) -> bytes:
    """Depth in m [H, W] → 16-bit grey PNG of millimetres (mode I;16)."""
    buffer = io.BytesIO()
    Image.fromarray(depth_to_mm(depth_m, max_depth_mm)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes, compress: bool = False) -> None:
    """Add one entry with fixed metadata, so that equal contents give equal zip bytes."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _manifest(ids: list[tuple[str, str]]) -> bytes:
    """manifest.csv for (sample id, bg id) pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for sample_id, bg_id in ids:
        entries = [f"fg_bg/{sample_id}.jpg", f"mask/{sample_id}.png", f"depth/{sample_id}.png"]
        writer.writerow([sample_id, f"bg/{bg_id}.jpg", *entries])
    return buffer.getvalue().encode("utf-8")


def _check_args(
    num_samples: int, image_size: int, seed: int, jpeg_quality: int, fg_per_bg: int, max_depth_mm: int
) -> None:
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if fg_per_bg < 1:
        raise ValueError(f"fg_per_bg must be >= 1, got {fg_per_bg}")
    if not 1000 <= max_depth_mm <= 65535:
        raise ValueError(f"max_depth_mm must be in [1000, 65535] (16-bit PNG), got {max_depth_mm}")


def generate(
    out: str | Path,
    num_samples: int,
    image_size: int = 224,
    seed: int = 0,
    jpeg_quality: int = 75,
    fg_per_bg: int = 10,
    max_depth_mm: int = 20000,
) -> Path:
    """Write a canonical dataset zip of `num_samples` samples at `image_size` px to `out`; returns its path.

    ceil(num_samples / fg_per_bg) backgrounds are rendered; depth is stored in mm, clamped to max_depth_mm.
    The zip is written to `out`.tmp and moved into place, so `out` is either complete or absent.
    """
    _check_args(num_samples, image_size, seed, jpeg_quality, fg_per_bg, max_depth_mm)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_backgrounds = math.ceil(num_samples / fg_per_bg)
    plan = [(b, k) for b in range(num_backgrounds) for k in range(fg_per_bg)][:num_samples]
    ids = [(sample_name(bg_name(b, num_backgrounds), k, fg_per_bg), bg_name(b, num_backgrounds)) for b, k in plan]
    meta = {
        "generator": "mdeas.data.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_samples": num_samples,
        "num_backgrounds": num_backgrounds,
        "image_size": image_size,
        "jpeg_quality": jpeg_quality,
        "fg_per_bg": fg_per_bg,
        "depth": {"format": "png16", "unit": "mm", "max": max_depth_mm},
        "mask": {"format": "png8", "values": [0, 255]},
    }
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            _write(archive, "meta.json", json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"), compress=True)
            _write(archive, "manifest.csv", _manifest(ids), compress=True)
            for b in range(num_backgrounds):
                background = make_background(seed, b, image_size, max_depth_mm / 1000.0, num_backgrounds)
                _write(archive, f"bg/{background.id}.jpg", encode_jpeg(background.rgb, jpeg_quality))
                for k in range(min(fg_per_bg, num_samples - b * fg_per_bg)):
                    sample = make_sample(background, seed, k, fg_per_bg)
                    _write(archive, f"fg_bg/{sample.id}.jpg", encode_jpeg(sample.fg_bg, jpeg_quality))
                    _write(archive, f"mask/{sample.id}.png", encode_mask(sample.mask))
                    _write(archive, f"depth/{sample.id}.png", encode_depth(sample.depth, max_depth_mm))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


@hydra.main(version_base="1.3", config_path="../../conf", config_name="synth")
def main(cfg: DictConfig) -> None:
    """CLI: python -m mdeas.data.synth out=PATH num_samples=N image_size=S seed=K (see conf/synth.yaml)."""
    path = generate(
        cfg.out,
        num_samples=int(cfg.num_samples),
        image_size=int(cfg.image_size),
        seed=int(cfg.seed),
        jpeg_quality=int(cfg.jpeg_quality),
        fg_per_bg=int(cfg.fg_per_bg),
        max_depth_mm=int(cfg.max_depth_mm),
    )
    print(f"wrote {cfg.num_samples} samples to {path}")


if __name__ == "__main__":
    main()

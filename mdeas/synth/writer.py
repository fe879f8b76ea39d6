"""Write a canonical dataset zip (DESIGN.md, "Canonical dataset zip") byte-reproducibly.

Entries carry fixed metadata, so equal contents in equal order give equal bytes; images are stored (their
formats compress already), manifest.csv and meta.json are deflated. The zip is written beside `out` and renamed
into place (`mdeas.atomic`), so `out` is either complete or absent.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import numpy as np
from PIL import Image

from mdeas.atomic import atomic_write
from mdeas.config_values import finite_number, flag, whole_number
from mdeas.data.layouts import MANIFEST_COLUMNS

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_QUALITY_STREAM = 6  # the random stream of JPEG qualities, apart from every other draw of a sample

JpegQuality: TypeAlias = int | tuple[int, int]  # one quality for every image, or a range [low, high] drawn per image


def jpeg_quality_for(quality: JpegQuality, key: Sequence[int]) -> int:
    """The JPEG quality of one image: `quality` itself, or for a range (low, high) a uniform draw in it from the
    image's own stream `key` (ints), so bg and each fg_bg are saved at independent qualities, as separately saved
    photographs are; the draw does not depend on the number of workers."""
    if isinstance(quality, int):
        return quality
    low, high = quality
    return int(np.random.default_rng([*key, _QUALITY_STREAM]).integers(low, high + 1))


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


def encode_depth_mm(depth_mm: np.ndarray) -> bytes:
    """uint16 [H, W] millimetres (0 = unknown) → 16-bit grey PNG (mode I;16)."""
    buffer = io.BytesIO()
    Image.fromarray(depth_mm.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def manifest_csv(rows: Iterable[Sequence[str]]) -> bytes:
    """manifest.csv for rows (id, bg, fg_bg, mask, depth); an empty depth field means unknown depth."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def sample_row(sample_id: str, bg_id: str, with_depth: bool = True) -> list[str]:
    """The manifest row of a sample in the standard entry names: bg/<bg_id>.jpg, fg_bg/<id>.jpg, mask/<id>.png,
    depth/<id>.png (or empty)."""
    depth = f"depth/{sample_id}.png" if with_depth else ""
    return [sample_id, f"bg/{bg_id}.jpg", f"fg_bg/{sample_id}.jpg", f"mask/{sample_id}.png", depth]


def _add(archive: zipfile.ZipFile, name: str, data: bytes, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def write_zip(out: str | Path, meta: dict, rows: Sequence[Sequence[str]], entries: Iterable[tuple[str, bytes]]) -> Path:
    """Write meta.json, manifest.csv (`rows`) and then `entries` (name, bytes) in the order given; returns `out`."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w") as archive:
            _add(archive, "meta.json", json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"), compress=True)
            _add(archive, "manifest.csv", manifest_csv(rows), compress=True)
            for name, data in entries:
                _add(archive, name, data, compress=False)

    atomic_write(out, write)
    return Path(out)


def as_jpeg_quality(value: int | Sequence[int], key: str = "jpeg_quality") -> JpegQuality:
    """A config value (an int, or a list [low, high] from Hydra) as a JpegQuality; ValueError naming `key` for
    anything but whole numbers (`true` would be quality 1, 95.9 would be 95)."""
    whole = lambda q: isinstance(q, int | np.integer) and not isinstance(q, bool)  # noqa: E731
    if whole(value):
        return int(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and all(whole(q) for q in value):
        return tuple(int(q) for q in value)
    raise ValueError(f"{key} must be a whole number or a range [low, high] of them, got {value!r}")


T = TypeVar("T")


def options_from_config(cls: type[T], what: str, options: Mapping[str, Any], *args: Any) -> T:
    """`cls(*args, **options)` for an options dataclass (`what` names it in errors), from config values: ValueError
    naming unknown keys and the known ones; `jpeg_quality` as a JpegQuality; lists (Hydra's) for fields of tuples
    of floats as such tuples; true or false for bool fields, whole numbers >= 0 for int fields and finite numbers
    for float fields (ValueError naming the option for other values: `flips=no` is a string Python takes for true)."""
    kinds = {f.name: str(f.type) for f in fields(cls)}
    unknown = sorted(set(options) - set(kinds))
    if unknown:
        raise ValueError(f"unknown {what} options {unknown}; known: {', '.join(kinds)}")
    values = dict(options)
    for key, value in options.items():
        named = f"{what} option {key}"
        if kinds[key] == "bool":
            flag(value, named)
        elif kinds[key] == "int":
            whole_number(value, named)
        elif kinds[key] == "float":
            values[key] = finite_number(value, named)
        if key == "jpeg_quality":
            values[key] = as_jpeg_quality(value, named)
        if kinds[key].startswith("tuple[float"):  # [true] and ['0.5'] were taken for 1.0 and 0.5
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"{what} option {key}: expected a list of numbers, got {value!r}")
            values[key] = tuple(finite_number(v, f"{what} option {key}[{i}]") for i, v in enumerate(value))
    return cls(*args, **values)


MAX_IMAGE_SIZE = 8192  # px a side: a generated sample's float buffers then take about 2 GB, not a machine's memory


def check_image_options(image_size: int, seed: int, jpeg_quality: JpegQuality) -> None:
    """ValueError naming the option for an image size outside [16, MAX_IMAGE_SIZE], a negative seed or a JPEG
    quality (or range) outside [1, 100]."""
    if not 16 <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be in [16, {MAX_IMAGE_SIZE}] px, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    qualities = (jpeg_quality,) if isinstance(jpeg_quality, int) else tuple(jpeg_quality)
    counted = len(qualities) == (1 if isinstance(jpeg_quality, int) else 2)
    if not counted or not all(1 <= q <= 100 for q in qualities) or qualities[0] > qualities[-1]:
        given = jpeg_quality if isinstance(jpeg_quality, int) else list(jpeg_quality)  # as written: [60, 40]
        raise ValueError(f"jpeg_quality must be in [1, 100] or a range [low, high] in it, got {given}")

"""Decode image bytes into numpy arrays, with errors that name the entry."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mdeas.data.errors import DataError
from mdeas.data.layouts import DepthEncoding

_EIGHT_BIT = ("RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "LA", "1")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L")


def _open(data: bytes, source: str, entry: str) -> Image.Image:
    if not data:
        raise DataError(source, entry, "empty entry (0 bytes)", "decode")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(source, entry, f"cannot decode image ({e})", "decode") from None
    return image


def _eight_bit(image: Image.Image, source: str, entry: str, what: str) -> None:
    if image.mode not in _EIGHT_BIT:
        raise DataError(source, entry, f"expected an 8-bit {what}, got mode {image.mode}", "channels")


def decode_rgb(data: bytes, source: str, entry: str) -> np.ndarray:
    """8-bit colour image → uint8 [H, W, 3]; grey is repeated to 3 channels, alpha is dropped, palettes expanded."""
    image = _open(data, source, entry)
    _eight_bit(image, source, entry, "colour image")
    return np.asarray(image.convert("RGB"))


def decode_grey(data: bytes, source: str, entry: str) -> np.ndarray:
    """8-bit grey image (masks, 8-bit depth) → uint8 [H, W]; colour is converted to luminance, alpha dropped."""
    image = _open(data, source, entry)
    _eight_bit(image, source, entry, "grey image")
    return np.asarray(image.convert("L"))


def decode_png16(data: bytes, source: str, entry: str) -> np.ndarray:
    """16-bit grey PNG → float32 [H, W] in the stored unit."""
    image = _open(data, source, entry)
    if image.mode not in (*_SIXTEEN_BIT, "I"):
        raise DataError(source, entry, f"expected a 16-bit depth PNG, got mode {image.mode}", "channels")
    return np.asarray(image, dtype=np.float32)


def binarise(mask: np.ndarray) -> np.ndarray:
    """uint8 grey mask [H, W] → float32 {0, 1}, thresholded at half range (JPEG masks are not strictly binary)."""
    return (mask >= 128).astype(np.float32)


def decode_depth(data: bytes, source: str, entry: str, encoding: DepthEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Depth entry → (float32 [H, W] normalised to [0, 1], larger = farther, 0 where unknown; bool [H, W] known).

    `png16`: 16-bit, 0 = unknown; `gray8`: 8-bit grey, every pixel known. Values are divided by `encoding.max`
    and, when `encoding.inverted` (larger = nearer), flipped to `1 - value / max`.
    """
    if encoding.format == "png16":
        raw = decode_png16(data, source, entry)
        valid = raw > 0
    elif encoding.format == "gray8":
        raw = decode_grey(data, source, entry).astype(np.float32)
        valid = np.ones(raw.shape, bool)
    else:
        raise DataError(source, entry, f"unknown depth format {encoding.format!r} (png16 or gray8)", "layout")
    depth = np.clip(raw / np.float32(encoding.max), 0.0, 1.0)
    if encoding.inverted:
        depth = 1.0 - depth
    return np.where(valid, depth, 0.0).astype(np.float32), valid

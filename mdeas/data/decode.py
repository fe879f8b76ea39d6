"""Decode image bytes into numpy arrays, with errors that name the entry."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mdeas.data.errors import DataError


def _open(data: bytes, source: str, entry: str) -> Image.Image:
    if not data:
        raise DataError(source, entry, "empty entry (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(source, entry, f"cannot decode image ({e})") from None
    return image


def decode_rgb(data: bytes, source: str, entry: str) -> np.ndarray:
    """RGB image → uint8 [H, W, 3]; grey is repeated to 3 channels, alpha is dropped."""
    image = _open(data, source, entry)
    if image.mode not in ("RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "LA"):
        raise DataError(source, entry, f"expected an 8-bit colour image, got mode {image.mode}")
    return np.asarray(image.convert("RGB"))


def decode_mask(data: bytes, source: str, entry: str) -> np.ndarray:
    """Mask image → float32 [H, W] in {0, 1}, thresholded at half range (JPEG masks are not binary)."""
    image = _open(data, source, entry)
    if image.mode not in ("L", "1", "P", "RGB", "RGBA", "LA"):
        raise DataError(source, entry, f"expected an 8-bit mask, got mode {image.mode}")
    return (np.asarray(image.convert("L")) >= 128).astype(np.float32)


def decode_depth_png16(data: bytes, source: str, entry: str) -> np.ndarray:
    """16-bit PNG depth → float32 [H, W] in the stored unit (0 = unknown)."""
    image = _open(data, source, entry)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(source, entry, f"expected a 16-bit depth PNG, got mode {image.mode}")
    return np.asarray(image, dtype=np.float32)

"""Decode image bytes into numpy arrays, with errors that name the entry.

Two steps: `open_image` reads the header (format, mode and size, known before any pixel is decoded), then
`to_rgb`, `to_grey`, `to_mask` or `to_depth` decode the pixels, at full size or reduced by a factor of 2, 4 or 8
(`reduction`: when training at a size much smaller than the stored one). JPEG pixels are decoded by OpenCV, at a
reduced scale through libjpeg's DCT scaling (the decoder does less work; about twice as fast as Pillow's draft
mode); other formats by Pillow, then reduced: colour by averaging each k×k block, grey and depth by keeping the
block's centre pixel (nearest: masks stay binary, depth values stay real). `decode_rgb` takes the bytes and does
both steps.
`encode_depth` is the inverse of `to_depth` (predicted depth is written in the dataset's own encoding), and
`image_problem` says in words why an image could not be read.

Decodes are bounded (README "Security"): `open_image` reads only formats a dataset may hold (JPEG, PNG, BMP, TIFF,
WEBP) and refuses a header declaring more than `max_pixels` (default 64 megapixels, MDEAS_MAX_MEGAPIXELS raises
it) before any pixel memory is allocated.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from mdeas.data.errors import DataError
from mdeas.data.layouts import DepthEncoding
from mdeas.data.zipstore import env_limit

_EIGHT_BIT = ("RGB", "L", "RGBA", "P", "PA", "CMYK", "YCbCr", "LA", "1")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L")
GREY_MODES = ("L", "LA", "1")
FOREGROUND = 128  # a mask pixel is foreground from this value on (`binarise`)
_SCALES = (8, 4, 2)
_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")  # what Pillow may read (JPEG opens a camera's multi-picture MPO too)
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)  # how Pillow says an image is damaged
MAX_MEGAPIXELS = 64.0  # 8000×8000; a 48-MP phone photo passes, the seeds' images have 0.05-0.16
_KEEP_AS_STORED = cv2.IMREAD_IGNORE_ORIENTATION  # like Pillow: EXIF orientation is not applied
EXIF_ORIENTATION = 0x0112  # the EXIF tag; its values 2-8 → the turn that shows the image upright (1: as stored)
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_JPEG_FLAGS = {  # (grey, scale) → cv2.imdecode flags
    (False, 1): cv2.IMREAD_COLOR,
    (False, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (False, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (False, 8): cv2.IMREAD_REDUCED_COLOR_8,
    (True, 1): cv2.IMREAD_GRAYSCALE,
    (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


_SIGNATURES = (  # first bytes → format: tells a damaged image from a file that is no image at all
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
)
_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def image_format(head: bytes) -> str | None:
    """The still-image format whose signature the first bytes `head` (at least 12) of a file start with, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)


def image_problem(error: BaseException, head: bytes) -> str:
    """What Pillow's `error` means for an image file or entry whose first bytes are `head`, in words without
    Python object reprs: `not an image file (unknown format)`, `damaged PNG header`, `truncated image`, ..."""
    known = image_format(head)
    if isinstance(error, UnidentifiedImageError) and known and known not in _FORMATS:
        return f"a {known} image, a format not read: only {', '.join(_FORMATS)}"
    if isinstance(error, UnidentifiedImageError):
        return f"damaged {known} header" if known else "not an image file (unknown format)"
    if isinstance(error, Image.DecompressionBombError):
        return f"too large to decode ({str(error).split(',')[0]})"
    text = " ".join(_OBJECT_REPR.sub("", str(error)).split())
    if "truncated" in text.lower():
        return "truncated image"
    return f"corrupt {known or 'image'} data" + (f" ({text})" if text else "")


@dataclass(frozen=True)
class Encoded:
    """One image entry: its bytes, the zip and entry it came from (for messages), and its header (a Pillow image
    whose pixels are not decoded yet)."""

    data: bytes
    source: str
    entry: str
    header: Image.Image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as stored."""
        return self.header.size

    def error(self, problem: str, category: str) -> DataError:
        return DataError(self.source, self.entry, problem, category)


def reduction(size: tuple[int, int], target_size: int | None) -> int:
    """The largest of 8, 4, 2 that an image of `size` (width, height) can be shrunk by with both sides still at
    least `target_size` pixels; 1 when none can, or without a target."""
    if target_size:
        for scale in _SCALES:
            if min(size) // scale >= target_size:
                return scale
    return 1


def max_pixels() -> float:
    """The pixel limit of one image: MDEAS_MAX_MEGAPIXELS (default 64) million pixels (inf: none)."""
    return env_limit("MDEAS_MAX_MEGAPIXELS", MAX_MEGAPIXELS) * 1e6


def _too_many(said: str, source: str, entry: str) -> DataError:
    limit = f"the {max_pixels() / 1e6:g}-megapixel limit (MDEAS_MAX_MEGAPIXELS)"
    return DataError(source, entry, f"refused: declares {said} pixels, above {limit}", "limit")


def check_pixels(width: int, height: int, source: str, entry: str) -> None:
    """DataError naming the entry (or file) when width × height is above `max_pixels()`."""
    if width * height > max_pixels():
        raise _too_many(f"{width}x{height}", source, entry)


def open_image(data: bytes, source: str, entry: str) -> Encoded:
    """Read the header of an image entry; DataError naming the entry when it is empty, not an image of a dataset's
    formats, or larger than `max_pixels()` (checked before any pixel is decoded)."""
    if not data:
        raise DataError(source, entry, f"empty {'entry' if entry else 'file'} (0 bytes)", "decode")
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # Pillow's own guard (refusing above twice this) never below ours
    try:
        with warnings.catch_warnings():  # Pillow warns of sizes this refuses anyway (or allows when raised)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data), formats=_FORMATS)
        width, height = header.size
    except Image.DecompressionBombError as e:  # Pillow's guard: above twice its limit, so above ours
        count = re.search(r"(\d+) pixels", str(e))
        raise _too_many(count.group(1) if count else "too many", source, entry) from None
    except _UNREADABLE as e:
        raise DataError(source, entry, f"cannot decode image ({image_problem(e, data[:12])})", "decode") from None
    check_pixels(width, height, source, entry)
    return Encoded(data, source, entry, header)


def to_pillow(encoded: Encoded, mode: str | None = None) -> Image.Image:
    """The pixels of `encoded` as a Pillow image, converted to `mode` (None: as stored); DataError naming the entry
    when they cannot be decoded."""
    image = encoded.header
    try:
        image.load()
        return image.convert(mode) if mode else image
    except _UNREADABLE as e:
        raise encoded.error(f"cannot decode image ({image_problem(e, encoded.data[:12])})", "decode") from None


def _jpeg(encoded: Encoded, grey: bool, scale: int) -> np.ndarray:
    """uint8 [ceil(H/scale), ceil(W/scale)] grey or [..., 3] BGR, decoded by libjpeg at 1/scale."""
    flags = _JPEG_FLAGS[grey, scale] | _KEEP_AS_STORED
    try:
        array = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), flags)
    except cv2.error as e:
        raise encoded.error(f"cannot decode image (corrupt JPEG data: {e.err})", "decode") from None
    if array is None:
        raise encoded.error("cannot decode image (truncated or corrupt JPEG data)", "decode")
    width, height = encoded.size
    if array.shape[:2] != (-(-height // scale), -(-width // scale)):
        shape = f"{array.shape[1] * scale}x{array.shape[0] * scale}"
        raise encoded.error(f"cannot decode image (JPEG data of {shape} pixels, header {width}x{height})", "decode")
    return array


def check_eight_bit(encoded: Encoded, what: str) -> None:
    """DataError naming the entry when its pixels are not 8-bit (`what`: the image it should be, for the message)."""
    if encoded.header.mode not in _EIGHT_BIT:
        raise encoded.error(f"expected an 8-bit {what}, got mode {encoded.header.mode}", "channels")


def _nearest(array: np.ndarray, scale: int) -> np.ndarray:
    """The centre pixel of each `scale`×`scale` block of [H, W] (the last one of a cut block): [ceil(H/scale),
    ceil(W/scale)], the size libjpeg's scaling gives, aligned with its block averages."""
    if scale == 1:
        return array
    rows, cols = (np.minimum(np.arange(-(-n // scale)) * scale + scale // 2, n - 1) for n in array.shape[:2])
    return np.ascontiguousarray(array[np.ix_(rows, cols)])


def to_rgb(encoded: Encoded, scale: int = 1) -> np.ndarray:
    """8-bit colour image → uint8 [H/scale, W/scale, 3] (sides rounded up); grey is repeated to 3 channels, alpha
    dropped, palettes expanded."""
    check_eight_bit(encoded, "image (colour or grey)")
    if encoded.header.format == "JPEG":
        return cv2.cvtColor(_jpeg(encoded, False, scale), cv2.COLOR_BGR2RGB)
    image = to_pillow(encoded, "RGB")
    return np.asarray(image.reduce(scale) if scale > 1 else image)


def to_grey(encoded: Encoded, scale: int = 1) -> np.ndarray:
    """8-bit grey image (masks, 8-bit depth) → uint8 [H/scale, W/scale] (sides rounded up); colour is converted
    to luminance, alpha dropped. A reduced JPEG is averaged by libjpeg; other formats keep each block's centre pixel."""
    check_eight_bit(encoded, "grey image")
    if encoded.header.format == "JPEG":
        return _jpeg(encoded, True, scale)
    return _nearest(np.asarray(to_pillow(encoded, "L")), scale)


def to_mask(encoded: Encoded, scale: int = 1) -> np.ndarray:
    """8-bit mask image → uint8 [H/scale, W/scale] (sides rounded up): a grey mask as stored; a colour one (RGB,
    palette) by its brightest channel, so an object drawn in any colour on black (a red mask, a palette's class
    colours) reads as foreground, as luminance would not (pure red is 76 of 255). A mask whose brightest value is
    under FOREGROUND was stored at another level (a boolean array saved as 0/1, which JPEG leaves as 0-2): it is
    returned scaled to that value, 0/1 as 0/255, so that its half range is FOREGROUND."""
    check_eight_bit(encoded, "mask (grey or colour)")
    mask = to_grey(encoded, scale) if encoded.header.mode in GREY_MODES else to_rgb(encoded, scale).max(axis=-1)
    brightest = int(mask.max())
    if 0 < brightest < FOREGROUND:
        return ((mask.astype(np.uint16) * 255 + brightest // 2) // brightest).astype(np.uint8)  # rounded half up
    return mask


def to_png16(encoded: Encoded, scale: int = 1) -> np.ndarray:
    """16-bit grey PNG → float32 [H/scale, W/scale] (each block's centre pixel) in the stored unit."""
    if encoded.header.mode not in (*_SIXTEEN_BIT, "I"):
        raise encoded.error(f"expected a 16-bit depth PNG, got mode {encoded.header.mode}", "channels")
    return _nearest(np.asarray(to_pillow(encoded)), scale).astype(np.float32)


def to_depth(encoded: Encoded, encoding: DepthEncoding, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Depth entry → (float32 [H/scale, W/scale] normalised to [0, 1], larger = farther, 0 where unknown; bool
    [H/scale, W/scale] known).

    `png16`: 16-bit, 0 = unknown; `gray8`: 8-bit grey, every pixel known. Values are divided by `encoding.max`
    and, when `encoding.inverted` (larger = nearer), flipped to `1 - value / max`. A gray8 pixel at the nearest
    value reads as depth 0: known, but left out of the depth metrics, which divide by depth.
    """
    if encoding.format == "png16":
        raw = to_png16(encoded, scale)
        valid = raw > 0
    elif encoding.format == "gray8":
        raw = to_grey(encoded, scale).astype(np.float32)
        valid = np.ones(raw.shape, bool)
    else:
        raise encoded.error(f"unknown depth format {encoding.format!r} (png16 or gray8)", "layout")
    depth = np.clip(raw / np.float32(encoding.max), 0.0, 1.0)
    if encoding.inverted:
        depth = 1.0 - depth
    return np.where(valid, depth, 0.0).astype(np.float32), valid


def encode_depth(depth: np.ndarray, encoding: DepthEncoding) -> np.ndarray:
    """Normalised depth float [H, W] in [0, 1], larger = farther → the stored values that `to_depth` reads back
    as it: `max · depth`, or `max · (1 - depth)` when `encoding.inverted`, rounded; uint16 [H, W] for `png16`
    (at least 1: 0 would read as unknown), uint8 [H, W] grey for `gray8`."""
    depth = np.clip(depth, 0.0, 1.0)
    stored = np.rint(encoding.max * (1.0 - depth if encoding.inverted else depth))
    if encoding.format == "png16":
        return np.clip(stored, 1, 65535).astype(np.uint16)
    if encoding.format == "gray8":
        return np.clip(stored, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown depth format {encoding.format!r} (png16 or gray8)")


def decode_rgb(
    data: bytes, source: str, entry: str, target_size: int | None = None, upright: bool = False
) -> np.ndarray:
    """`to_rgb` of the bytes of one entry, reduced when `target_size` allows (`reduction`); with `upright`, turned
    as its EXIF orientation says (a phone photo as a viewer shows it; a dataset's entries are read as stored, the
    way their masks and depth maps were drawn)."""
    encoded = open_image(data, source, entry)
    rgb = to_rgb(encoded, reduction(encoded.size, target_size))
    turn = exif_turn(encoded) if upright else None
    return rgb if turn is None else np.asarray(Image.fromarray(rgb).transpose(turn))


def exif_turn(encoded: Encoded) -> Image.Transpose | None:
    """The turn that shows `encoded` upright by its EXIF orientation; None for none, and for EXIF that cannot be
    read (a damaged block: the pixels decode, so the image is taken as stored, without Pillow's warnings)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            orientation = encoded.header.getexif().get(EXIF_ORIENTATION, 1)
    except (*_UNREADABLE, struct.error, TypeError):
        return None
    return EXIF_TRANSPOSE.get(orientation)


def binarise(mask: np.ndarray) -> np.ndarray:
    """uint8 grey mask [H, W] → float32 {0, 1}, thresholded at half range (JPEG masks are not strictly binary)."""
    return (mask >= FOREGROUND).astype(np.float32)

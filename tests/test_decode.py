import io
import re
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from mdeas.data.dataset import MaskDepthDataset, load_sample
from mdeas.data.decode import (
    EXIF_ORIENTATION,
    binarise,
    decode_rgb,
    encode_depth,
    open_image,
    reduction,
    to_depth,
    to_grey,
    to_mask,
    to_rgb,
)
from mdeas.data.errors import DataError
from mdeas.data.layouts import SEED_DEPTH, DepthEncoding, load_index
from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD
from mdeas.data.transforms import apply, build_resize
from mdeas.data.zipstore import ZipStore
from mdeas.predict import read_image
from tests.conftest import write_canonical_zip
from tests.layouts_fixtures import replace_entry


def encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scene(height: int, width: int) -> np.ndarray:
    """A photo-like uint8 [H, W, 3]: smooth gradients, a few soft blobs and mild noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rng = np.random.default_rng(0)
    rgb = np.stack([120 + 80 * x, 90 + 100 * y, 160 - 60 * x * y], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1, 3) * [1, 1, 0.2]
        rgb += rng.uniform(-80, 80, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (r + 0.05) ** 2))[..., None]
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


def area(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("size", "target", "scale"),
    [((224, 224), 64, 2), ((224, 224), 56, 4), ((224, 224), 28, 8), ((224, 224), 224, 1), ((224, 224), None, 1),
     ((400, 300), 64, 4), ((40, 24), 16, 1), ((40, 24), 12, 2), ((224, 224), 20, 8)],
)  # fmt: skip
def test_reduction_keeps_both_sides_at_least_the_target(size, target, scale):
    assert reduction(size, target) == scale


@pytest.mark.parametrize("target", [64, 32])
def test_reduced_jpeg_matches_full_decode_after_the_resize(target):
    data = encode(scene(192, 192), "JPEG", quality=90)
    reduced = decode_rgb(data, "a.zip", "fg_bg/1.jpg", target_size=target)
    assert reduced.shape == (192 // reduction((192, 192), target),) * 2 + (3,) and reduced.dtype == np.uint8
    full = decode_rgb(data, "a.zip", "fg_bg/1.jpg")
    assert full.shape == (192, 192, 3)
    diff = np.abs(area(reduced, target).astype(float) - area(full, target))
    assert diff.mean() < 3 and diff.max() < 40


def test_jpeg_and_png_reduce_to_the_same_odd_size():
    rgb = scene(45, 33)
    for scale in (2, 4, 8):
        sizes = {fmt: to_rgb(open_image(encode(rgb, fmt), "a.zip", "x"), scale).shape for fmt in ("JPEG", "PNG")}
        grey = to_grey(open_image(encode(rgb[..., 0], "PNG"), "a.zip", "m.png"), scale).shape
        assert sizes["JPEG"] == sizes["PNG"] == (-(-45 // scale), -(-33 // scale), 3) and grey == sizes["PNG"][:2]


def test_png_colour_is_block_averaged():
    rgb = scene(32, 32)
    reduced = to_rgb(open_image(encode(rgb, "PNG"), "a.zip", "bg.png"), 2)
    blocks = rgb.astype(float).reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(reduced - blocks).max() <= 1


def test_reduced_jpeg_mask_stays_binary_and_close():
    mask = np.zeros((96, 96), np.uint8)
    mask[20:70, 30:61] = 255
    data = encode(mask, "JPEG", quality=50)
    full = binarise(to_grey(open_image(data, "a.zip", "mask/1.jpg"))) > 0
    reduced = binarise(to_grey(open_image(data, "a.zip", "mask/1.jpg"), 2))
    assert reduced.shape == (48, 48) and set(np.unique(reduced)) == {0.0, 1.0}
    assert (reduced.astype(bool) != full[::2, ::2]).mean() < 0.03
    assert reduced[10:35, 15:30].all() and not reduced[:8].any()


def test_reduced_png16_depth_is_nearest_and_keeps_unknown():
    depth = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 7 + 1000).astype(np.uint16)
    depth[::3, ::5] = 0
    encoded = open_image(encode(depth, "PNG"), "a.zip", "depth/1.png")
    encoding = DepthEncoding(max=20000)
    full, full_valid = to_depth(encoded, encoding)
    reduced, valid = to_depth(open_image(encode(depth, "PNG"), "a.zip", "depth/1.png"), encoding, 2)
    assert reduced.shape == valid.shape == (10, 15)
    # each 2×2 block's lower-right pixel, the nearest to its centre (row 2r + 1, column 2c + 1)
    assert np.array_equal(reduced, full[1::2, 1::2]) and np.array_equal(valid, full_valid[1::2, 1::2])
    assert reduced[1, 2] == 0 and not valid[1, 2] and reduced[0, 0] == pytest.approx((1000 + 31 * 7) / 20000)


@pytest.mark.parametrize(
    "encoding", [DepthEncoding(max=20000), SEED_DEPTH, DepthEncoding("gray8", "relative", 255.0, inverted=False)]
)
def test_encode_depth_writes_back_what_to_depth_read(encoding):
    rng = np.random.default_rng(0)
    if encoding.format == "png16":
        stored = rng.integers(0, 20001, (12, 10)).astype(np.uint16)
        stored[0, :3] = (0, 1, 20000)  # unknown, nearest, farthest
    else:
        stored = rng.integers(0, 256, (12, 10)).astype(np.uint8)
        stored[0, :2] = (0, 255)
    depth, valid = to_depth(open_image(encode(stored, "PNG"), "a.zip", "depth/1.png"), encoding)
    written = encode_depth(depth, encoding)
    assert written.dtype == stored.dtype and np.array_equal(written[valid], stored[valid])


def test_encode_depth_of_seed_data_is_near_bright_and_png16_never_unknown():
    near_far = np.array([[0.0, 0.25, 1.0]], np.float32)
    assert encode_depth(near_far, SEED_DEPTH).tolist() == [[255, 191, 0]]
    assert encode_depth(near_far, DepthEncoding(max=20000)).tolist() == [[1, 5000, 20000]]


def test_load_sample_reduces_every_array_alike(tmp_path):
    index = load_index(str(write_canonical_zip(tmp_path / "d.zip", num_samples=2, size=48)))
    full = load_sample(index, index.samples[1])
    raw = load_sample(index, index.samples[1], target_size=24)
    assert raw["bg"].shape == raw["fg_bg"].shape == (24, 24, 3)
    assert raw["mask"].shape == raw["depth"].shape == raw["valid"].shape == (24, 24)
    assert np.array_equal(raw["depth"], full["depth"][1::2, 1::2])
    assert np.array_equal(raw["mask"], full["mask"][1::2, 1::2])
    # noise backgrounds: the block means survive reduction (per channel), the pasted red square stays red
    assert np.abs(raw["fg_bg"].mean(axis=(0, 1)) - full["fg_bg"].mean(axis=(0, 1))).max() < 2
    assert raw["fg_bg"][raw["mask"] > 0][:, 0].mean() > 200


def test_size_mismatch_names_stored_sizes_when_decoding_reduced(tmp_path):
    src = write_canonical_zip(tmp_path / "d.zip", num_samples=2, size=48)
    odd = replace_entry(src, tmp_path / "odd.zip", "mask/b000_f01.png", encode(np.zeros((46, 46), np.uint8), "PNG"))
    index = load_index(str(odd))
    with pytest.raises(
        DataError, match=r"odd.zip: mask/b000_f01.png: size 46x46 differs from fg_bg/b000_f01.jpg \(48x48\)"
    ):
        load_sample(index, index.samples[1], target_size=16)


def test_a_gif_is_named_as_a_format_not_read():
    image = io.BytesIO()
    Image.new("RGB", (4, 4)).save(image, "GIF")
    with pytest.raises(DataError, match=r"^a.zip: fg_bg/1.gif: cannot decode image \(a GIF image, a format not read: "):
        open_image(image.getvalue(), "a.zip", "fg_bg/1.gif")


def test_truncated_jpeg_fails_at_every_scale():
    data = encode(scene(64, 64), "JPEG")[:600]
    for scale in (1, 2):
        with pytest.raises(DataError, match=r"^a.zip: fg_bg/1.jpg: cannot decode image"):
            to_rgb(open_image(data, "a.zip", "fg_bg/1.jpg"), scale)
    with pytest.raises(DataError, match=r"^a.zip: bg/1.jpg: cannot decode image"):
        open_image(b"\x00" * 10, "a.zip", "bg/1.jpg")


def test_dataset_decodes_at_its_resize_and_normalises_exactly(tmp_path):
    index = load_index(str(write_canonical_zip(tmp_path / "d.zip", num_samples=2, size=48)))
    data = MaskDepthDataset(index, index.samples, 16)
    assert data[0]["fg_bg"].shape == (3, 16, 16)
    image = scene(5, 7)
    mean, std = (np.asarray(v, np.float32) for v in (IMAGENET_MEAN, IMAGENET_STD))  # on the 0–1 scale
    expected = (image.astype(np.float32) - mean * 255.0) / (std * 255.0)
    normalise = data.normalisation.from_uint8
    assert np.array_equal(normalise(image).numpy(), expected.transpose(2, 0, 1))
    assert np.array_equal(normalise(image[:, ::-1]).numpy(), expected[:, ::-1].transpose(2, 0, 1))


# Reading entries: ZipStore's own central-directory reader must agree with zipfile on every kind of zip it meets.


def _zip(path, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("folder/", b"")
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_store_reads_deflated_utf8_and_prefixed_zips_like_zipfile(tmp_path):
    entries = {"a.txt": b"alpha" * 50, "fö/ß.png": encode(scene(8, 8), "PNG"), "empty": b""}
    plain = _zip(tmp_path / "p.zip", entries, zipfile.ZIP_DEFLATED)
    prefixed = tmp_path / "x.zip"
    prefixed.write_bytes(b"#!/bin/sh\n" * 40 + plain.read_bytes())  # like a self-extracting archive
    for path in (plain, prefixed):
        store = ZipStore([path])
        assert store.listing == [list(entries)]  # folders are not entries
        assert {name: store.read(name) for name in entries} == entries


def test_store_reads_zip64_directories(tmp_path):
    names = [f"e/{i}.bin" for i in range(0x10000 + 5)]  # more entries than a plain end record can count
    with zipfile.ZipFile(tmp_path / "big.zip", "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(name, i.to_bytes(3, "little"))
    store = ZipStore([tmp_path / "big.zip"])
    assert store.listing[0] == names
    assert store.read(names[-1]) == (len(names) - 1).to_bytes(3, "little") and store.read("e/7.bin") == b"\x07\0\0"


def test_damaged_entry_and_directory_name_the_culprit(tmp_path):
    path = _zip(tmp_path / "d.zip", {"x.bin": b"0123456789" * 10})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"0123456789") + 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"d.zip: x.bin: cannot read entry \(Bad CRC-32: the data differs"):
        ZipStore([path]).read("x.bin")
    path.write_bytes(bytes(raw[: raw.rindex(b"PK\x01\x02") + 20]))  # cut inside the central directory
    with pytest.raises(DataError, match=r"d.zip: not a readable zip \(no end of central directory record\)"):
        ZipStore([path])


def test_an_entry_compressed_in_a_way_not_read_names_the_method_and_the_fix(tmp_path):
    with zipfile.ZipFile(tmp_path / "lzma.zip", "w", compression=zipfile.ZIP_LZMA) as zf:
        zf.writestr("meta.json", '{"depth": null}')
        zf.writestr("manifest.csv", "id,bg,fg_bg,mask,depth\n")
    message = (
        r"lzma.zip: meta.json: cannot read entry \(compressed with LZMA, which is not read: zip it again with deflate"
    )
    with pytest.raises(DataError, match=message):
        ZipStore([tmp_path / "lzma.zip"]).read("meta.json")
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path))}/{message}"):  # itself, not in a layout complaint
        load_index(str(tmp_path / "lzma.zip"))


def test_colour_masks_read_by_their_brightest_channel_and_grey_ones_as_stored():
    shape = np.zeros((40, 40), bool)
    shape[10:30, 5:25] = True
    red = np.zeros((40, 40, 3), np.uint8)
    red[shape] = (255, 0, 0)
    palette = Image.fromarray(shape.astype(np.uint8), "L").convert("P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # class 1 drawn in dark red, as VOC's palette does
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    grey = np.where(shape, 255, 0).astype(np.uint8)
    for data, kind in (
        (encode(red, "PNG"), "red PNG"),
        (buffer.getvalue(), "palette PNG"),
        (encode(grey, "PNG"), "grey PNG"),
    ):
        mask = binarise(to_mask(open_image(data, "a.zip", "mask/1.png")))
        assert np.array_equal(mask.astype(bool), shape), kind
    assert to_grey(open_image(encode(red, "PNG"), "a.zip", "mask/1.png"))[shape].max() == 76  # what luminance said
    rgb_jpeg = encode(np.repeat(grey[..., None], 3, -1), "JPEG", quality=50)  # a grey mask saved with 3 channels
    stored = open_image(rgb_jpeg, "a.zip", "mask/1.jpg")
    assert stored.header.mode == "RGB"
    assert np.abs(to_mask(stored).astype(int) - to_grey(stored).astype(int)).max() <= 3


def test_a_0_1_mask_read_as_0_255_stored_as_png_or_jpeg():
    """A boolean array saved as it is: exactly 0/1 in a PNG, 0-2 after JPEG (ringing at the edge). Scaled to its
    brightest value it reads as the object; nothing of an empty mask becomes foreground."""
    shape = np.zeros((32, 32), bool)
    shape[8:24, 6:20] = True
    png = to_mask(open_image(encode(shape.astype(np.uint8), "PNG"), "a.zip", "mask/1.png"))
    assert set(np.unique(png)) == {0, 255} and np.array_equal(png == 255, shape)
    jpeg = to_mask(open_image(encode(shape.astype(np.uint8), "JPEG", quality=75), "a.zip", "mask/1.jpg"))
    assert (binarise(jpeg).astype(bool) != shape).mean() < 0.05  # at most the ringing next to the edge
    assert not to_mask(open_image(encode(np.zeros((32, 32), np.uint8), "JPEG"), "a.zip", "mask/2.jpg")).any()


def _centre(weights: np.ndarray) -> np.ndarray:
    """Centroid (row, col) of a non-negative [H, W] map, in pixel-centre units."""
    rows, cols = np.mgrid[: weights.shape[0], : weights.shape[1]]
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


@pytest.mark.parametrize(("stored", "size"), [(224, 64), (224, 112), (224, 256), (101, 32)])
def test_resized_mask_and_depth_stay_on_the_image_they_label(stored, size):
    """Squares at 16 sub-pixel offsets in fg_bg, mask and depth, resized as training does: on average the mask's and
    the foreground depth's centroids land where the image's does (OpenCV's plain nearest sat half a source pixel
    down-right), each one within the rounding of a nearest sample."""
    shifts = []
    for offset in range(16):
        square = np.zeros((stored, stored), bool)
        square[31 + offset : 78 + offset, 40 + offset // 2 : 95 + offset] = True
        image = np.where(square[..., None], 255, 0).astype(np.uint8).repeat(3, -1)
        depth = np.where(square, 1.0, 5.0).astype(np.float32)
        out = apply(build_resize(size), image, image, square.astype(np.float32), depth, np.ones_like(square))
        image_centre = _centre(out["fg_bg"][..., 0].astype(np.float64))
        shifts += [_centre(out["mask"]) - image_centre, _centre((out["depth"] < 3).astype(np.float64)) - image_centre]
    shifts = np.array(shifts)
    # nearest has no pixel at an even block's centre: the least bias it can have is half a source pixel there
    bound = 0.5 * size / stored + 0.02 if stored % size == 0 else 0.1
    assert np.abs(shifts.mean(0)).max() < bound and np.abs(shifts).max() <= 0.5 + 1e-6, shifts.mean(0)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_a_png_mask_reduced_at_decode_is_centred_like_the_jpeg_images(scale):
    shifts = []
    for offset in range(16):
        square = np.zeros((225, 224), np.uint8)
        square[31 + offset : 78 + offset, 40 + offset // 2 : 95 + offset] = 255
        mask = to_mask(open_image(encode(square, "PNG"), "a.zip", "mask/1.png"), scale)
        jpeg = encode(square.repeat(3).reshape(225, 224, 3), "JPEG", quality=95)
        image = to_rgb(open_image(jpeg, "a.zip", "fg_bg/1.jpg"), scale)
        assert mask.shape == image.shape[:2] == (-(-225 // scale), 224 // scale)
        shifts.append(_centre(mask.astype(np.float64)) - _centre(image[..., 0].astype(np.float64)))
    assert np.abs(np.mean(shifts, 0)).max() < 0.5 / scale + 0.02, np.mean(shifts, 0)  # half a source pixel at most


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])  # JPEG pixels come from OpenCV, told to keep them as stored
@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_decoding_turns_an_image_as_its_exif_orientation_says(orientation, fmt):
    """As Pillow's exif_transpose shows it; a dataset entry (upright=False) stays as stored."""
    stored = np.random.default_rng(orientation).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    data = buffer.getvalue()
    as_stored = Image.open(io.BytesIO(data)).convert("RGB")  # Pillow's decode
    for upright, expected in ((True, ImageOps.exif_transpose(as_stored)), (False, as_stored)):
        got, expected = decode_rgb(data, f"photo.{fmt.lower()}", "", upright=upright), np.asarray(expected)
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() < 0.5, (upright, fmt)
    turned = np.asarray(ImageOps.exif_transpose(as_stored))
    assert turned.shape[:2] == ((40, 24) if orientation >= 5 else (24, 40))  # 5-8 swap the sides


def test_a_damaged_exif_block_reads_the_image_as_stored(tmp_path):
    """Pillow raises SyntaxError reading such a block; the pixels decode, so predict takes the image as stored."""
    for name, options in (
        ("b.png", {"exif": b"XXXXXXXX"}),
        ("b.jpg", {"exif": b"Exif\0\0XXXXXXXX", "dpi": (300, 300)}),
    ):
        Image.new("RGB", (16, 8), (10, 200, 30)).save(tmp_path / name, **options)
        image = read_image(tmp_path / name)
        assert image.shape == (8, 16, 3) and np.abs(image.astype(int) - (10, 200, 30)).max() <= 2, name

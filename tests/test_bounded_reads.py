"""Reads and decodes are bounded before memory is spent: declared entry sizes and compression ratios, inflation
past the declared size, local headers that disagree with the directory, overlapping entries, and image headers
declaring too many pixels (README "Security")."""

import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from experiments.fuzz_inputs import jpeg_declaring, png_declaring
from mdeas.data.decode import open_image, to_depth, to_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import DepthEncoding
from mdeas.data.zipstore import ZipStore
from mdeas.predict import read_image, video_items
from tests.conftest import encode, write_canonical_zip

GIB = 1 << 30
ONE_SAMPLE = "b000_f00"


def zeros_deflated(size: int) -> bytes:
    """Raw deflate data of `size` zero bytes (a multiple of 1 MiB) in about size / 1000 bytes, built in
    milliseconds: after a full flush every further MiB compresses to the same bytes."""
    chunk, deflater = bytes(1 << 20), zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    repeat = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    return first + repeat * (size // len(chunk) - 2) + deflater.compress(chunk) + deflater.flush()


def zeros_crc(size: int) -> int:
    crc, chunk = 0, bytes(1 << 20)
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return crc


def raw_zip(path: Path, entries: list[tuple[str, int, int, int, bytes]]) -> Path:
    """A zip written byte by byte from (name, method, CRC-32, declared size, packed data): the directory says
    what it is told, whatever the data holds."""
    body, directory = b"", b""
    for name, method, crc, size, packed in entries:
        raw = name.encode()
        common = struct.pack("<5H3L2H", 20, 0, method, 0, 0, crc, len(packed), size, len(raw), 0)
        directory += b"PK\x01\x02" + struct.pack("<H", 20) + common + struct.pack("<3H2L", 0, 0, 0, 0, len(body))
        directory += raw
        body += b"PK\x03\x04" + common + raw + packed
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path


def dataset_with(path: Path, replaced: dict[str, tuple[int, int, int, bytes]]) -> Path:
    """A canonical 12-sample dataset whose entries named in `replaced` hold (method, CRC, declared size, data)."""
    source = write_canonical_zip(path.with_name("source-" + path.name))
    entries = []
    with zipfile.ZipFile(source) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            entries.append((info.filename, *replaced.get(info.filename, (0, zlib.crc32(data), len(data), data))))
    return raw_zip(path, entries)


def stored(data: bytes) -> tuple[int, int, int, bytes]:
    return 0, zlib.crc32(data), len(data), data


def test_an_entry_declaring_more_than_the_limit_is_refused(tmp_path):
    bomb = dataset_with(tmp_path / "d.zip", {f"mask/{ONE_SAMPLE}.png": (8, zeros_crc(GIB), GIB, zeros_deflated(GIB))})
    with pytest.raises(DataError, match=rf"d.zip: mask/{ONE_SAMPLE}.png: refused: declares 1024.0 MiB, above the 256 "):
        ZipStore([bomb]).read(f"mask/{ONE_SAMPLE}.png")
    with pytest.raises(DataError, match=r"d.zip: manifest.csv: refused: .* above the 0.0005 MiB limit"):
        ZipStore([bomb], max_entry_mb=0.0005).read("manifest.csv")  # 524 bytes: the 12-line manifest is more


def test_the_ratio_limit_refuses_large_entries_only_and_can_be_raised(tmp_path, monkeypatch):
    two, half = 2 << 20, 1 << 19
    small = zlib.compressobj(9, zlib.DEFLATED, -15)
    path = raw_zip(
        tmp_path / "r.zip",
        [
            ("big.bin", 8, zeros_crc(two), two, zeros_deflated(two)),
            ("small.bin", 8, zlib.crc32(bytes(half)), half, small.compress(bytes(half)) + small.flush()),
        ],
    )
    store = ZipStore([path])
    assert store.read("small.bin") == bytes(half)  # 500:1, but small: never refused for its ratio
    with pytest.raises(DataError, match=r"r.zip: big.bin: refused: declares 2.0 MiB from \d+ bytes, above the 100:1"):
        store.read("big.bin")
    monkeypatch.setenv("MDEAS_MAX_RATIO", "inf")
    assert ZipStore([path]).read("big.bin") == bytes(two)


def test_data_inflating_past_its_declared_size_stops_there(tmp_path):
    path = raw_zip(tmp_path / "i.zip", [("x.png", 8, 0, 100, zeros_deflated(GIB))])
    with pytest.raises(DataError, match=r"i.zip: x.png: cannot read entry \(inflates past its declared 100 bytes\)"):
        ZipStore([path]).read("x.png")


def _local_edit(path: Path, out: Path, offset: int, value: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(value)] = value
    out.write_bytes(bytes(raw))
    return out


def test_a_local_header_must_agree_with_the_directory(tmp_path):
    data = b"0123456789" * 10
    path = raw_zip(tmp_path / "a.zip", [("a.bin", *stored(data))])
    cases = {  # local header field offset, new bytes, message
        "name": (30, b"b", r"local header names 'b.bin'"),
        "method": (8, struct.pack("<H", 8), r"local header says method 8, the directory 0"),
        "size": (22, struct.pack("<L", 99), r"local header says 99 bytes \(100 packed\), the directory 100 \(100"),
        "extra": (28, struct.pack("<H", 50), r"its data runs into the next entry"),
    }
    for kind, (offset, value, message) in cases.items():
        edited = _local_edit(path, tmp_path / f"{kind}.zip", offset, value)
        with pytest.raises(DataError, match=rf"{kind}.zip: a.bin: cannot read entry \({message}"):
            ZipStore([edited]).read("a.bin")


def test_overlapping_entries_names_twice_and_offsets_past_the_end_refuse_the_zip(tmp_path):
    data = b"x" * 64
    path = raw_zip(tmp_path / "o.zip", [("a.bin", *stored(data)), ("b.bin", *stored(data))])
    raw = path.read_bytes()
    second = raw.rindex(b"PK\x01\x02")
    shared = bytearray(raw)
    shared[second + 42 : second + 46] = struct.pack("<L", 0)  # b.bin's directory record points at a.bin's header
    (tmp_path / "shared.zip").write_bytes(bytes(shared))
    with pytest.raises(DataError, match=r"shared.zip: a.bin: not a readable zip \(overlaps entry b.bin\)"):
        ZipStore([tmp_path / "shared.zip"])
    past = bytearray(raw)
    past[second + 42 : second + 46] = struct.pack("<L", 10_000)
    (tmp_path / "past.zip").write_bytes(bytes(past))
    with pytest.raises(DataError, match=r"past.zip: b.bin: not a readable zip \(lies past the central directory"):
        ZipStore([tmp_path / "past.zip"])
    twice = raw_zip(tmp_path / "twice.zip", [("a.bin", *stored(data))] * 2)
    with pytest.raises(DataError, match=r"twice.zip: a.bin: not a readable zip \(appears twice in the directory\)"):
        ZipStore([twice])


def test_a_limit_that_is_not_a_positive_number_is_named(tmp_path, monkeypatch):
    path = raw_zip(tmp_path / "a.zip", [("a.bin", *stored(b"a"))])
    for variable, value in (("MDEAS_MAX_ENTRY_MB", "lots"), ("MDEAS_MAX_RATIO", "-1")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(DataError, match=rf"^{variable}: must be a positive number \(or inf\), got '{value}'$"):
            ZipStore([path])
        monkeypatch.delenv(variable)


def test_image_headers_declaring_too_many_pixels_are_refused_before_decoding(monkeypatch):
    rgb = encode(np.zeros((16, 16, 3), np.uint8), "JPEG")
    refused = "refused: declares {} pixels, above the 64-megapixel limit \\(MDEAS_MAX_MEGAPIXELS\\)"
    cases = [
        (png_declaring(10_000, 8_000), "10000x8000"),
        (jpeg_declaring(rgb, 9_000, 9_000), "9000x9000"),
        (png_declaring(20_000, 20_000, bit_depth=16), "400000000"),  # past Pillow's own guard: its count
        (png_declaring(50_000, 50_000), "2500000000"),
    ]
    for data, said in cases:
        with pytest.raises(DataError, match=f"^z.zip: e.png: {refused.format(said)}$") as caught:
            open_image(data, "z.zip", "e.png")
        assert caught.value.category == "limit"
    monkeypatch.setenv("MDEAS_MAX_MEGAPIXELS", "100")
    header = open_image(png_declaring(10_000, 8_000), "z.zip", "e.png")  # allowed now: the tiny IDAT is short
    with pytest.raises(DataError, match="z.zip: e.png: cannot decode image"):
        to_rgb(header)
    monkeypatch.setenv("MDEAS_MAX_MEGAPIXELS", "0.0001")
    depth16 = encode(np.full((16, 16), 1000, np.uint16), "PNG")
    with pytest.raises(DataError, match=r"d.png: refused: declares 16x16 pixels, above the 0.0001-megapixel"):
        to_depth(open_image(depth16, "z.zip", "d.png"), DepthEncoding())


def test_inf_switches_the_megapixel_limit_off(monkeypatch):
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # raised to ours here: restored after
    monkeypatch.setenv("MDEAS_MAX_MEGAPIXELS", "inf")
    assert to_rgb(open_image(encode(np.zeros((4, 4, 3), np.uint8), "PNG"), "z.zip", "a.png")).shape == (4, 4, 3)
    header = open_image(png_declaring(50_000, 50_000), "z.zip", "e.png")  # 2.5 gigapixels, allowed
    assert header.header.size == (50_000, 50_000)


def test_a_jpeg_decoding_to_another_size_than_its_header_is_an_error(monkeypatch):
    header = open_image(encode(np.zeros((16, 16, 3), np.uint8), "JPEG"), "z.zip", "e.jpg")
    monkeypatch.setattr("mdeas.data.decode.cv2.imdecode", lambda data, flags: np.zeros((900, 900, 3), np.uint8))
    with pytest.raises(DataError, match=r"e.jpg: cannot decode image \(JPEG data of 900x900 pixels, header 16x16\)"):
        to_rgb(header)


def test_predict_bounds_image_files_and_video_frames(tmp_path, monkeypatch):
    (tmp_path / "huge.png").write_bytes(png_declaring(50_000, 50_000))
    with pytest.raises(DataError, match=r"huge.png: refused: declares 2500000000 pixels, above the 64-megapixel"):
        read_image(tmp_path / "huge.png")
    cv2.imwrite(str(tmp_path / "bg.png"), np.zeros((32, 48, 3), np.uint8))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for _ in range(2):
        writer.write(np.zeros((32, 48, 3), np.uint8))
    writer.release()
    assert len(list(video_items(str(tmp_path / "clip.avi"), str(tmp_path / "bg.png")))) == 2
    monkeypatch.setenv("MDEAS_MAX_MEGAPIXELS", "0.001")  # 1,000 pixels: the bg (1,536) and the frames are above
    with pytest.raises(DataError, match=r"bg.png: refused: declares 48x32 pixels"):
        read_image(tmp_path / "bg.png")
    monkeypatch.setattr("mdeas.predict.read_image", lambda path: np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(DataError, match=r"clip.avi: refused: declares 48x32 pixels, above the 0.001-megapixel"):
        next(video_items(str(tmp_path / "clip.avi"), str(tmp_path / "bg.png")))
    monkeypatch.setenv("MDEAS_MAX_ENTRY_MB", "0.0001")  # 105 bytes
    with pytest.raises(DataError, match=r"bg.png: refused: 0.0 MiB, above the 0.0001 MiB limit \(MDEAS_MAX_ENTRY_MB\)"):
        read_image(tmp_path / "bg.png")


_PEAK = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB (Linux reports KiB)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr, "peak_mb": peak}))
"""


def test_gigabyte_bombs_and_a_50000_pixel_square_png_end_in_lines_naming_them_under_1_gb(tmp_path):
    """The check entry point on a dataset holding a mask declaring 1 GiB, a mask declaring 100 bytes that inflates
    to 1 GiB, and a mask PNG declaring 50,000 × 50,000 pixels: one line for each naming its entry, exit status 1,
    and the process's peak memory under 1 GB."""
    bombs = {
        "mask/b000_f00.png": (8, zeros_crc(GIB), GIB, zeros_deflated(GIB)),
        "mask/b001_f02.png": (8, 0, 100, zeros_deflated(GIB)),
        "mask/b002_f04.png": stored(png_declaring(50_000, 50_000)),
    }
    data = dataset_with(tmp_path / "bombs.zip", bombs)
    probe = [sys.executable, "-c", _PEAK, sys.executable, "-m", "mdeas.data.check", f"path={data}", "num_workers=0"]
    result = json.loads(subprocess.run(probe, capture_output=True, text=True, timeout=300, cwd=tmp_path).stdout)
    assert result["rc"] == 1 and "Traceback" not in result["err"], result["err"][-2000:]
    lines = result["out"].splitlines()
    expected = [
        "mask/b000_f00.png: refused: declares 1024.0 MiB, above the 256 MiB limit (MDEAS_MAX_ENTRY_MB)",
        "mask/b001_f02.png: cannot read entry (inflates past its declared 100 bytes)",
        "mask/b002_f04.png: refused: declares 2500000000 pixels, above the 64-megapixel limit (MDEAS_MAX_MEGAPIXELS)",
    ]
    for message in expected:
        assert sum(line.strip() == f"{data}: {message}" for line in lines) == 1, (message, result["out"])
    assert result["err"].strip().splitlines()[-1] == f"error: 3 problems in {data}"
    assert result["peak_mb"] < 1000, result["peak_mb"]


def test_the_central_directory_is_read_by_its_size_not_its_16_bit_count(tmp_path):
    path = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(3):
            zf.writestr(f"x{k}.txt", b"hi")
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # a count of 1 for 3 entries, as a wrapped 65,537 would read
    path.write_bytes(bytes(data))
    assert len(zipfile.ZipFile(path).namelist()) == 3
    assert ZipStore([path]).listing[0] == ["x0.txt", "x1.txt", "x2.txt"]


def test_entries_named_with_backslashes_read_as_folders(tmp_path):
    path = tmp_path / "windows.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fg_bg\\a.jpg", b"x")
    store = ZipStore([path])
    assert store.listing[0] == ["fg_bg/a.jpg"] and store.read("fg_bg/a.jpg") == b"x"

"""Fuzz the data readers: damaged copies of small valid zips of every layout must index, decode and `check`
cleanly or end in one DataError, one line naming a zip: never another exception, never a hang.

    python -m experiments.fuzz_inputs --cases 5000 [--seed 0]

Prints the cases tried, the outcomes by kind (per stage: `ok`, the first DataError's category, or for `check` the
problems it reported), then tracebacks and hangs; exit status 1 when either is not 0. tests/test_fuzz_inputs.py
runs the same `run_case` on a short, fixed series.

A case (hypothesis strategy `cases`) takes the zips of one layout (canonical, seed002, seed003 over two zips,
seed000, by_kind over four), entries stored or deflated, and applies to one of them: entry edits (swap two entries'
data, rename, drop, add junk), manifest edits (drop, repeat or rewrite a line or field, cut, insert bytes), a new
meta.json, image edits (flipped bytes, cuts, another format, size or bit depth, a PNG or JPEG header declaring
another size), zip field edits (a central directory or local header field set to an edge value), then flipped
bytes or a cut of the zip file itself. Each stage runs under a time bound (`CASE_SECONDS`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from PIL import Image

from mdeas.data.check import check
from mdeas.data.dataset import MaskDepthDataset
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from tests.conftest import write_canonical_zip
from tests.layouts_fixtures import make_samples, write_by_kind, write_seed000, write_seed002, write_seed003

CASE_SECONDS = 10.0  # a stage that takes longer counts as a hang
SIZE = 16  # px: the images of the base zips
LAYOUTS = ("canonical", "seed002", "seed003", "seed000", "by_kind")
MANIFESTS = ("manifest.csv", "label_data.csv", "labels.txt")
EDGE_INTS = (0, 1, 2, 8, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF)
CENTRAL_FIELDS = {"flags": (8, "H"), "method": (10, "H"), "crc": (16, "I"), "packed": (20, "I"), "size": (24, "I"),
                  "name_len": (28, "H"), "extra_len": (30, "H"), "offset": (42, "I")}  # fmt: skip
LOCAL_FIELDS = {"flags": (6, "H"), "method": (8, "H"), "packed": (18, "I"), "size": (22, "I"), "name_len": (26, "H"),
                "extra_len": (28, "H")}  # fmt: skip


class Hang(BaseException):
    """A stage ran past CASE_SECONDS (a BaseException: no reader's `except Exception` may swallow it)."""


@cache
def base_zips(layout: str, deflated: bool) -> tuple[tuple[str, tuple[tuple[str, bytes], ...]], ...]:
    """The valid zips of `layout` as (file name, ((entry name, data), ...)), entries in their written order."""
    records = make_samples(backgrounds=2, per_bg=2, size=SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if layout == "canonical":
            paths = [write_canonical_zip(root / "set.zip", num_samples=4, size=SIZE, fg_per_bg=2)]
        elif layout == "seed002":
            write_seed002(root / "seed002.zip", records)
            paths = [root / "seed002.zip"]
        elif layout == "seed003":
            paths = [root / "part1.zip", root / "part2.zip"]
            write_seed003((paths[0], paths[1]), records)
        elif layout == "seed000":
            write_seed000(root / "seed000.zip", records)
            paths = [root / "seed000.zip"]
        else:
            paths, _ = write_by_kind(root, records)
        zips = []
        for path in paths:
            with zipfile.ZipFile(path) as zf:
                zips.append((path.name, tuple((info.filename, zf.read(info)) for info in zf.infolist())))
    return tuple(zips)


def write_zip(entries: list[tuple[str, bytes]], deflated: bool) -> bytes:
    """A zip of `entries` (names may repeat), stored or deflated."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of repeated names
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


# --- edits of one image ----------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    """A PNG whose IHDR declares width × height (correct CRCs) with one tiny IDAT: a header-only image."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0/SOF2) rewritten to declare width × height."""
    at = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    if at < 0:
        return jpeg
    return jpeg[: at + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + jpeg[at + 9 :]


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def other_image(kind: str, width: int, height: int) -> bytes:
    """A valid image of another kind than the entry's: `rgb_png`, `grey_jpeg`, `png16`, `bmp`, `tiff`, `webp`,
    `gif` (a format no dataset holds), `rgba_png`, `one_bit`."""
    rng = np.random.default_rng(width * 1000 + height)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    if kind == "png16":
        return encode(rng.integers(0, 65535, (height, width), dtype=np.uint16), "PNG")
    if kind == "grey_jpeg":
        return encode(rgb[..., 0], "JPEG")
    if kind == "rgba_png":
        return encode(np.dstack([rgb, rgb[..., :1]]), "PNG")
    if kind == "one_bit":
        buffer = io.BytesIO()
        Image.fromarray(rgb[..., 0] > 128).save(buffer, format="PNG")
        return buffer.getvalue()
    fmt = {"rgb_png": "PNG", "bmp": "BMP", "tiff": "TIFF", "webp": "WEBP", "gif": "GIF"}[kind]
    return encode(rgb, fmt)


IMAGE_KINDS = ("rgb_png", "grey_jpeg", "png16", "bmp", "tiff", "webp", "gif", "rgba_png", "one_bit")


def edit_image(data: bytes, edit: tuple) -> bytes:
    """One image edit: ("flip", [(fraction, xor), ...]), ("cut", fraction), ("other", kind, width, height),
    ("declare", width, height) (the PNG or JPEG header only), ("append", bytes)."""
    kind = edit[0]
    if kind == "flip":
        raw = bytearray(data)
        for fraction, xor in edit[1]:
            if raw:
                raw[int(fraction * (len(raw) - 1))] ^= xor
        return bytes(raw)
    if kind == "cut":
        return data[: int(edit[1] * len(data))]
    if kind == "other":
        return other_image(*edit[1:])
    if kind == "declare":
        if data.startswith(b"\x89PNG"):
            body = struct.pack(">II", edit[1], edit[2]) + data[24:29]
            return data[:8] + _png_chunk(b"IHDR", body) + data[33:]
        return jpeg_declaring(data, edit[1], edit[2])
    return data + edit[1]


# --- edits of one manifest or meta.json --------------------------------------------------------------------------


def edit_text(data: bytes, edit: tuple, names: list[str]) -> bytes:
    """One manifest edit: ("drop", line), ("repeat", line), ("field", line, field, text), ("name", line, field,
    entry index) (another entry's name), ("cut", fraction), ("insert", fraction, bytes)."""
    kind = edit[0]
    if kind == "cut":
        return data[: int(edit[1] * len(data))]
    if kind == "insert":
        at = int(edit[1] * len(data))
        return data[:at] + edit[2] + data[at:]
    lines = data.split(b"\n")
    line = edit[1] % len(lines)
    if kind == "drop":
        del lines[line]
    elif kind == "repeat":
        lines.insert(line, lines[line])
    else:
        separator = next((s for s in (b"\t", b";", b",") if s in lines[line]), b",")
        fields = lines[line].split(separator)
        text = edit[3] if kind == "field" else names[edit[3] % len(names)].encode()
        fields[edit[2] % len(fields)] = text
        lines[line] = separator.join(fields)
    return b"\n".join(lines)


# --- edits of the zip's own structure ----------------------------------------------------------------------------


def _records(raw: bytes, signature: bytes) -> list[int]:
    """Offsets of the local headers (`PK\\3\\4`) or central directory headers (`PK\\1\\2`) of a zip."""
    found, at = [], raw.find(signature)
    while at >= 0:
        found.append(at)
        at = raw.find(signature, at + 4)
    return found


def edit_field(raw: bytes, edit: tuple) -> bytes:
    """("central" | "local", record index, field name, value): set one header field (values wrap to its width;
    -1 and +1 step the stored value)."""
    where, index, name, value = edit
    records = _records(raw, b"PK\x01\x02" if where == "central" else b"PK\x03\x04")
    if not records:
        return raw
    at = records[index % len(records)]
    offset, code = (CENTRAL_FIELDS if where == "central" else LOCAL_FIELDS)[name]
    width = struct.calcsize("<" + code)
    if at + offset + width > len(raw):
        return raw
    stored = struct.unpack_from("<" + code, raw, at + offset)[0]
    new = stored + value if value in (-1, 1) else value
    out = bytearray(raw)
    struct.pack_into("<" + code, out, at + offset, new % (1 << (8 * width)))
    return bytes(out)


def edit_bytes(raw: bytes, edit: tuple) -> bytes:
    """("flip", [(fraction, xor), ...]) or ("cut", fraction) of the zip file's bytes."""
    return edit_image(raw, edit)


# --- cases --------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """A layout's zips, stored or deflated, and the edits applied to zip number `target` (of that layout's)."""

    layout: str
    deflated: bool
    target: int
    entry_edits: list[tuple]
    field_edits: list[tuple]
    byte_edits: list[tuple]

    def zips(self) -> list[tuple[str, bytes]]:
        """(file name, bytes) of each zip after the edits."""
        out = []
        for k, (name, entries) in enumerate(base_zips(self.layout, self.deflated)):
            if k != self.target % len(base_zips(self.layout, self.deflated)):
                out.append((name, write_zip(list(entries), self.deflated)))
                continue
            edited = list(entries)
            for edit in self.entry_edits:
                edited = edit_entries(edited, edit)
            raw = write_zip(edited, self.deflated)
            for edit in self.field_edits:
                raw = edit_field(raw, edit)
            for edit in self.byte_edits:
                raw = edit_bytes(raw, edit)
            out.append((name, raw))
        return out


def edit_entries(entries: list[tuple[str, bytes]], edit: tuple) -> list[tuple[str, bytes]]:
    """One entry edit: ("swap", i, j) their data, ("rename", i, name), ("drop", i), ("junk", name, data),
    ("manifest", text edit), ("meta", bytes), ("image", i, image edit)."""
    entries = list(entries)
    names = [name for name, _ in entries]
    kind = edit[0]
    if kind == "swap":
        i, j = edit[1] % len(entries), edit[2] % len(entries)
        (a, da), (b, db) = entries[i], entries[j]
        entries[i], entries[j] = (a, db), (b, da)
    elif kind == "rename":
        i = edit[1] % len(entries)
        entries[i] = (edit[2], entries[i][1])
    elif kind == "drop" and len(entries) > 1:
        del entries[edit[1] % len(entries)]
    elif kind == "junk":
        entries.append((edit[1], edit[2]))
    elif kind in ("manifest", "meta"):
        wanted = MANIFESTS if kind == "manifest" else ("meta.json",)
        for i, (name, data) in enumerate(entries):
            if name.rsplit("/", 1)[-1] in wanted:
                entries[i] = (name, edit_text(data, edit[1], names) if kind == "manifest" else edit[1])
    elif kind == "image":
        images = [i for i, name in enumerate(names) if name.lower().endswith((".jpg", ".jpeg", ".png"))]
        if images:
            i = images[edit[1] % len(images)]
            entries[i] = (entries[i][0], edit_image(entries[i][1], edit[2]))
    return entries


_fractions = st.floats(0, 1, allow_nan=False)
_flips = st.lists(st.tuples(_fractions, st.integers(1, 255)), min_size=1, max_size=8)
_small_bytes = st.binary(max_size=40)
_names = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda t: t.split("\0")[0]),  # zipfile cuts a name at NUL
    st.sampled_from(["manifest.csv", "meta.json", "labels.txt", "label_data.csv", "bg/x.jpg", "/abs/y.png", "a/"]),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_depth_meta = st.fixed_dictionaries(
    {
        "depth": st.fixed_dictionaries(
            {}, optional={"format": _json | st.sampled_from(["png16", "gray8"]), "unit": _json, "max": _json}
        )
    }  # fmt: skip
)
_meta = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    _depth_meta.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
)
_image_edit = st.one_of(
    st.tuples(st.just("flip"), _flips),
    st.tuples(st.just("cut"), _fractions),
    st.tuples(st.just("other"), st.sampled_from(IMAGE_KINDS), st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.just("declare"), st.sampled_from([0, 1, 15, 17, 8193, 65535, 50_000]), st.integers(0, 70_000)),
    st.tuples(st.just("append"), _small_bytes),
)
_text_edit = st.one_of(
    st.tuples(st.sampled_from(["drop", "repeat"]), st.integers(0, 30)),
    st.tuples(st.just("field"), st.integers(0, 30), st.integers(0, 5), st.binary(max_size=20)),
    st.tuples(st.just("name"), st.integers(0, 30), st.integers(0, 5), st.integers(0, 100)),
    st.tuples(st.just("cut"), _fractions),
    st.tuples(st.just("insert"), _fractions, st.sampled_from([b'"', b"\0", b"\r", b"\t", b";", b"\xff", b"\n\n"])),
)
_entry_edit = st.one_of(
    st.tuples(st.just("swap"), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("rename"), st.integers(0, 100), _names),
    st.tuples(st.just("drop"), st.integers(0, 100)),
    st.tuples(st.just("junk"), _names, _small_bytes),
    st.tuples(st.just("manifest"), _text_edit),
    st.tuples(st.just("meta"), _meta),
    st.tuples(st.just("image"), st.integers(0, 100), _image_edit),
)
_field_edit = st.one_of(
    st.tuples(st.just("central"), st.integers(0, 100), st.sampled_from(sorted(CENTRAL_FIELDS)),
              st.sampled_from([-1, *EDGE_INTS]) | st.integers(0, 2**32 - 1)),
    st.tuples(st.just("local"), st.integers(0, 100), st.sampled_from(sorted(LOCAL_FIELDS)),
              st.sampled_from([-1, *EDGE_INTS]) | st.integers(0, 2**32 - 1)),
)  # fmt: skip
_byte_edit = st.one_of(st.tuples(st.just("flip"), _flips), st.tuples(st.just("cut"), _fractions))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A Case with one to three edits of some kinds (at least one edit in all)."""
    edits = draw(
        st.tuples(
            st.lists(_entry_edit, max_size=3), st.lists(_field_edit, max_size=2), st.lists(_byte_edit, max_size=1)
        ).filter(lambda e: any(e))
    )
    return Case(draw(st.sampled_from(LAYOUTS)), draw(st.booleans()), draw(st.integers(0, 3)), *map(list, edits))


# --- running a case -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise Hang in the block when it runs past `seconds` (SIGALRM; main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Failure(AssertionError):
    """A stage that ended otherwise than in success or one DataError naming a zip: `kind` is `traceback`, `hang` or
    `unnamed` (a DataError of several lines, or naming no zip)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _named(error: DataError, paths: list[Path]) -> str:
    """The category of `error`; Failure when it is not one line naming one of `paths`."""
    text = str(error)
    if "\n" in text or not any(path.name in text for path in paths):
        raise Failure("unnamed", repr(text))
    return error.category


def _stage(run: Callable[[], object], paths: list[Path]) -> str:
    """Run one stage under the time bound: `ok` or what it returned, the category of its DataError, or Failure."""
    try:
        with time_bound(CASE_SECONDS):
            return str(run() or "ok")
    except DataError as e:
        return _named(e, paths)
    except Hang as e:
        raise Failure("hang", str(e)) from None
    except Exception as e:
        raise Failure("traceback", "".join(traceback.format_exception(e))) from None


def run_case(paths: list[Path]) -> dict[str, str]:
    """Outcome of each stage on the zips `paths`: `index` (load_index), `dataset` (every sample of the index
    through MaskDepthDataset: ok, or the first DataError's category) and `check` (ok, problems, or the category of
    its one DataError). Each sample is a stage of its own. Raises Failure on anything else."""
    names = [str(p) for p in paths]
    index = []
    outcome = {"index": _stage(lambda: index.append(load_index(names)), paths), "dataset": "skipped"}
    if index:
        data = MaskDepthDataset(index[0], index[0].samples, SIZE)
        found = [_stage(lambda i=i: data[i] and None, paths) for i in range(len(data))]
        outcome["dataset"] = next((f for f in found if f != "ok"), "ok")

    def checked() -> str:
        with contextlib.redirect_stderr(io.StringIO()):
            result = check(names, num_workers=0)
        for problem in result.problems:
            _named(problem, paths)
        return "problems" if result.problems else "ok"

    outcome["check"] = _stage(checked, paths)
    return outcome


def run_written(case: Case, folder: Path) -> dict[str, str]:
    """Write the zips of `case` into `folder` (replacing any there) and `run_case` them."""
    paths = []
    for name, raw in case.zips():
        path = folder / name
        path.write_bytes(raw)
        paths.append(path)
    return run_case(paths)


def fuzz(count: int, seed: int, folder: Path) -> tuple[int, Counter, list[Failure]]:
    """Run `count` generated cases: (cases tried, `stage: outcome` counts, failures)."""
    outcomes: Counter = Counter()
    failures: list[Failure] = []
    tried = 0

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(cases())
    def one(case: Case) -> None:
        nonlocal tried
        tried += 1
        try:
            outcomes.update(f"{stage}: {result}" for stage, result in run_written(case, folder).items())
        except Failure as e:
            e.add_note(repr(case)[:800])
            failures.append(e)

    one()
    return tried, outcomes, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases to generate")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tried, outcomes, failures = fuzz(args.cases, args.seed, Path(tmp))
    kinds = Counter(f.kind for f in failures)
    print(f"cases tried: {tried} in {time.perf_counter() - start:.0f} s (seed {args.seed})")
    for key, count in sorted(outcomes.items()):
        print(f"  {key}: {count}")
    print(f"tracebacks: {kinds['traceback']}, hangs: {kinds['hang']}, unnamed errors: {kinds['unnamed']}")
    for failure in failures[:5]:
        print(f"\n{failure}\n{failure.__notes__[0]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

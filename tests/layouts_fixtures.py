"""Tiny datasets in every supported zip layout, written as the README's "Dataset layouts" describes them.

Every writer stores the same samples (`make_samples`), with zip entries in a shuffled order (pairing must never
depend on it), and returns {fg_bg entry name: Record} so that tests can compare what they read with what was
written. Seed depth is 8-bit grey JPEG with near = bright, as the DenseDepth outputs in those sets.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 24


@dataclass(frozen=True)
class Record:
    """One written sample: bg b (1-based), fg f, placement k; bg, fg_bg uint8 [S,S,3]; mask bool [S,S]; depth
    float [S,S] normalised, larger = farther (stored as grey 255·(1 − depth): near = bright)."""

    b: int
    f: int
    k: int
    n: int
    bg: np.ndarray
    fg_bg: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def grey_depth(depth: np.ndarray) -> np.ndarray:
    """Normalised depth (larger = farther) → 8-bit grey with near = bright."""
    return np.rint(255 * (1 - depth)).astype(np.uint8)


def make_samples(backgrounds: int = 2, per_bg: int = 3, size: int = SIZE) -> list[Record]:
    """Smooth backgrounds (a gradient per bg), a bright square whose place and depth depend on the sample."""
    ramp = np.linspace(0, 1, size)[None, :, None]
    records, n = [], 0
    for b in range(1, backgrounds + 1):
        bg = np.clip(40 + 120 * ramp * np.array([1.0, 0.6 * b, 0.3]) + 30 * b, 0, 255).astype(np.uint8)
        bg = np.broadcast_to(bg, (size, size, 3)).copy()
        for j in range(per_bg):
            n += 1
            mask = np.zeros((size, size), bool)
            top, left = 3 + 3 * j, 2 + 4 * j
            mask[top : top + 8, left : left + 8] = True
            fg_bg = bg.copy()
            fg_bg[mask] = (240, 230, 40 + 40 * (j % 5))
            depth = np.tile(np.linspace(0.9, 0.5, size)[:, None], (1, size)).astype(np.float32)
            depth[mask] = 0.2 + 0.05 * n
            records.append(Record(b, j // 2 + 1, j % 2 + 1, n, bg, fg_bg, mask, depth))
    return records


def _write(path: Path, entries: dict[str, bytes], seed: int = 0) -> Path:
    names = list(entries)
    random.Random(seed).shuffle(names)
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, entries[name])
    return path


def _images(record: Record, fg_bg: str, mask: str, depth: str) -> dict[str, bytes]:
    return {
        fg_bg: encode(record.fg_bg),
        mask: encode(np.where(record.mask, 255, 0).astype(np.uint8)),
        depth: encode(grey_depth(record.depth)),
    }


def write_seed002(path: Path, records: list[Record], prefix: str = "") -> dict[str, Record]:
    """Seed 002: label_data.csv (`;`, every field quoted, no header: bg, fg_bg, mask, depth), bg/bgN.jpg,
    bgN/fg_M/{overlay,mask,depth}/K.jpg. `prefix` is put before every name in the csv (not in the zip)."""
    entries, rows, written = {}, [], {}
    for r in records:
        folder = f"bg{r.b}/fg_{r.f}"
        names = [f"bg/bg{r.b}.jpg", *(f"{folder}/{kind}/{r.k}.jpg" for kind in ("overlay", "mask", "depth"))]
        entries[names[0]] = encode(r.bg)
        entries.update(_images(r, *names[1:]))
        rows.append([prefix + name for name in names])
        written[names[1]] = r
    text = io.StringIO()
    csv.writer(text, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    entries["label_data.csv"] = text.getvalue().encode()
    _write(path, entries)
    return written


def write_seed003(
    paths: tuple[Path, Path], records: list[Record], part_folders_in_zip: bool = True, fg_first: bool = False
) -> dict[str, Record]:
    """Seed 003: data_k/{Fg-Bg,Fg-Bg-Mask,Depth}/{fg-bgN,fg-bg-maskN,depthN}.jpg, half the samples in each of two
    zips; the first also holds Bg/bgN.jpg and labels.txt (tab-separated: bg, fg, fg_bg, mask, depth). Without
    `part_folders_in_zip` the zips lack the `data_k/` folder that labels.txt names; `fg_first` swaps the first two
    columns (as some copies of that set have them)."""
    parts: list[dict[str, bytes]] = [{}, {}]
    rows, written = [], {}
    for r in records:
        part = 0 if r.n <= len(records) // 2 else 1
        listed = [f"data_{part + 1}/{d}/{stem}{r.n}.jpg" for d, stem in _PARTS_003]
        stored = listed if part_folders_in_zip else [name.split("/", 1)[1] for name in listed]
        parts[0][f"Bg/bg{r.b}.jpg"] = encode(r.bg)
        parts[part].update(_images(r, *stored))
        first = [f"Bg/bg{r.b}.jpg", f"Fg/fg{r.f}.png"]
        rows.append("\t".join(first[::-1] if fg_first else first) + "\t" + "\t".join(listed))
        written[stored[0]] = r
    parts[0]["labels.txt"] = ("\n".join(rows) + "\n").encode()
    for path, entries in zip(paths, parts, strict=True):
        _write(path, entries)
    return written


_PARTS_003 = (("Fg-Bg", "fg-bg"), ("Fg-Bg-Mask", "fg-bg-mask"), ("Depth", "depth"))


def write_seed000(path: Path, records: list[Record], manifest_prefix: str = "") -> dict[str, Record]:
    """Seed 000: bg_images/Image_B.JPEG; fg_bg/, fg_bg_mask/, fg_bg_depth/ share Image_{bg}_{fg}_{n}.JPEG;
    labels.txt (tab-separated: bg, fg, fg_bg, mask; depth by the fg_bg name in fg_bg_depth/)."""
    entries, rows, written = {}, [], {}
    for r in records:
        name = f"Image_{r.b}_{r.f}_{r.n}.JPEG"
        bg, stored = f"bg_images/Image_{r.b}.JPEG", [f"{d}/{name}" for d in ("fg_bg", "fg_bg_mask", "fg_bg_depth")]
        entries[bg] = encode(r.bg)
        entries.update(_images(r, *stored))
        listed = [manifest_prefix + n for n in (bg, f"fg_images/Image_{r.f}.png", stored[0], stored[1])]
        rows.append("\t".join(listed))
        written[stored[0]] = r
    entries["labels.txt"] = ("\n".join(rows) + "\n").encode()
    _write(path, entries)
    return written


def write_by_kind(
    folder: Path, records: list[Record], zip_names: dict[str, str] | None = None, folders: dict[str, str] | None = None
) -> tuple[list[Path], dict[str, Record]]:
    """Seeds 001/004: one zip per kind (bg, fg_bg, mask, depth), fg_bg/mask/depth sharing the file name
    bg{B}_fg{F}_{K}.jpg and bg named bg{B}.jpg. `zip_names` and `folders` (kind → name; folder "" = none) say what
    the zips and the folders inside them are called."""
    zip_names = zip_names or {kind: f"{kind}.zip" for kind in ("bg", "fg_bg", "mask", "depth")}
    folders = {kind: kind for kind in zip_names} if folders is None else folders
    entries: dict[str, dict[str, bytes]] = {kind: {} for kind in zip_names}
    written = {}
    for r in records:
        name = f"bg{r.b}_fg{r.f}_{r.k}.jpg"
        where = {kind: f"{folders[kind]}/" if folders[kind] else "" for kind in zip_names}
        entries["bg"][f"{where['bg']}bg{r.b}.jpg"] = encode(r.bg)
        for kind, data in zip(("fg_bg", "mask", "depth"), _images(r, "a", "b", "c").values(), strict=True):
            entries[kind][where[kind] + name] = data
        written[where["fg_bg"] + name] = r
    paths = [_write(folder / zip_names[kind], entries[kind], seed=i) for i, kind in enumerate(zip_names)]
    return paths, written


def drop_entry(src: Path, dst: Path, name: str) -> Path:
    """A copy of zip `src` without entry `name`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        assert name in zin.namelist(), name
        for info in zin.infolist():
            if info.filename != name:
                zout.writestr(info, zin.read(info))
    return dst


def replace_entry(src: Path, dst: Path, name: str, data: bytes) -> Path:
    """A copy of zip `src` with entry `name` holding `data`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        assert name in zin.namelist(), name
        for info in zin.infolist():
            zout.writestr(info, data if info.filename == name else zin.read(info))
    return dst

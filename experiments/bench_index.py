"""Indexing a full-size dataset zip: seconds and peak memory of `load_index` on 400k entries.

    python -m experiments.bench_index                  # 400k entries, canonical and seed002 layouts
    python -m experiments.bench_index --entries 1200000 --layouts seed002    # the seeds' full 400k samples

The zips hold one tiny JPEG and one tiny PNG, reused for every entry, so they build in seconds; they are cached
under data/cache/bench/. Canonical: each sample has its own bg (4 entries a sample, 100k samples); seed002: its
own layout, 3 entries a sample plus one bg per 4,000 (133k samples). Each measurement runs in a fresh Python
process that only imports mdeas and indexes: peak RSS (the process's VmHWM on Linux) includes the interpreter and
the imports (about 30 MB). Targets: < 10 s and < 500 MB for 400k entries. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path("data/cache/bench")
TARGET_SECONDS, TARGET_MB = 10.0, 500.0
_PROBE = """
import json, resource, sys, time
start = time.perf_counter()
from mdeas.data.layouts import load_index
imported = time.perf_counter()
index = load_index(sys.argv[1])
done = time.perf_counter()
try:  # this process's own high-water mark (ru_maxrss would carry over the size of the process that started it)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    peak = int(status["VmHWM"].split()[0]) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"samples": len(index.samples), "seconds": done - imported, "import": imported - start, "mb": peak}))
"""


def _tiny(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _canonical_rows(samples: int) -> tuple[list[str], list[list[str]]]:
    """Entry names and manifest rows of a canonical set, one bg per sample."""
    names, rows = [], [["id", "bg", "fg_bg", "mask", "depth"]]
    for i in range(samples):
        sid = f"b{i:06d}_f00"
        row = [f"bg/b{i:06d}.jpg", f"fg_bg/{sid}.jpg", f"mask/{sid}.png", f"depth/{sid}.png"]
        names += row
        rows.append([sid, *row])
    return names, rows


def _seed002_rows(samples: int) -> tuple[list[str], list[list[str]]]:
    """Entry names and `label_data.csv` rows of seed 002's layout: `bgN/fg_M/{overlay,mask,depth}/K.jpg`."""
    names, rows = [], []
    for b in range(-(-samples // 4000)):
        names.append(f"bg/bg{b}.jpg")
    for i in range(samples):
        b, f, k = i // 4000, i // 40 % 100, i % 40 + 1
        row = [f"bg/bg{b}.jpg", *(f"bg{b}/fg_{f}/{kind}/{k}.jpg" for kind in ("overlay", "mask", "depth"))]
        names += row[1:]
        rows.append(row)
    return names, rows


def build(layout: str, samples: int, path: Path) -> Path:
    """Write a `layout` zip of `samples` samples (every image the same tiny bytes) to `path`, unless present."""
    if path.exists():
        return path
    names, rows = (_canonical_rows if layout == "canonical" else _seed002_rows)(samples)
    jpeg, png = _tiny("JPEG"), _tiny("PNG")
    text = io.StringIO()
    if layout == "canonical":
        csv.writer(text, lineterminator="\n").writerows(rows)
    else:
        csv.writer(text, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    with zipfile.ZipFile(partial, "w") as zf:
        zf.writestr("manifest.csv" if layout == "canonical" else "label_data.csv", text.getvalue())
        if layout == "canonical":
            zf.writestr("meta.json", json.dumps({"depth": {"format": "png16", "unit": "mm", "max": 20000}}))
        for name in names:
            zf.writestr(name, png if name.endswith(".png") else jpeg)
    partial.replace(path)
    return path


def measure(path: Path) -> dict:
    """Index `path` in a fresh interpreter: {samples, seconds, import, mb (peak RSS)}."""
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=400_000, help="image entries per zip (default 400,000)")
    parser.add_argument("--layouts", nargs="+", default=["canonical", "seed002"], choices=["canonical", "seed002"])
    parser.add_argument("--repeats", type=int, default=1, help="index each zip this many times, keep the fastest")
    args = parser.parse_args(argv)
    print("| layout | entries | samples | index s | peak RSS MB | import s | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for layout in args.layouts:
        samples = args.entries // (4 if layout == "canonical" else 3)
        path = build(layout, samples, CACHE / f"index-{layout}-{args.entries}.zip")
        with zipfile.ZipFile(path) as zf:
            entries = len(zf.infolist())
        result = min((measure(path) for _ in range(args.repeats)), key=lambda r: r["seconds"])
        met = result["seconds"] < TARGET_SECONDS and result["mb"] < TARGET_MB
        verdict = f"{'met' if met else 'missed'} (< {TARGET_SECONDS:.0f} s, < {TARGET_MB:.0f} MB)"
        cells = f"{entries:,} | {result['samples']:,} | {result['seconds']:.1f} | {result['mb']:.0f}"
        print(f"| {layout} | {cells} | {result['import']:.1f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()

"""Sizes on paper: what one machine holds for the seeds' 400,000 samples at training sizes 64, 128 and 224 px.

    python -m experiments.sizes                       # 400k samples; rates on 1,000 generated samples at 224 px
    python -m experiments.sizes --samples 400000 --sizes 64 128 224 --measure 1000 --cores 16

Per training size, measured on `--measure` generated samples stored at 224 px (the seeds' size; the zip is cached
under data/cache/bench/, shared with experiments.bench_data), scaled to `--samples`:

- the resized cache (`mdeas.data.resized_cache`): bytes on disk of a cache built here, per sample and in all;
- decode: CPU ms per sample to decode and resize one sample from the zip (what a loader worker does each epoch
  without the cache), one thread, so 1000 / ms is one core's rate; then the seconds an epoch of `--samples` takes to
  decode on `--cores` cores;
- cached: CPU ms per sample to read it back from the cache (page cache warm).

CPU time (not wall time) is measured, so other programs on the machine barely change it. The index: peak RSS and
seconds of a fresh process indexing the seeds' layout (seed002: 3 entries a sample, one bg per 4,000) with
`--samples` samples, through experiments.bench_index (its zip is built once under data/cache/bench/). Prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import torch

from experiments.bench_index import CACHE, build, measure
from mdeas.data.dataset import MaskDepthDataset
from mdeas.data.layouts import load_index
from mdeas.data.resized_cache import resized_cache
from mdeas.synth.generate import generate

STORED = 224  # px: the seeds' images


def stored_zip(samples: int) -> Path:
    """The cached zip of `samples` generated samples at STORED px (experiments.bench_data's, when it made one)."""
    path = CACHE / f"bench-{samples}x{STORED}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, samples, image_size=STORED, seed=0)
    return path


def cpu_ms(call, count: int) -> float:
    """CPU milliseconds per call of `call(i)` over i < count."""
    start = time.process_time()
    for i in range(count):
        call(i)
    return (time.process_time() - start) * 1000 / count


def size_row(path: Path, size: int, args: argparse.Namespace) -> str:
    """One table row for training size `size`."""
    index = load_index(path)
    dataset = MaskDepthDataset(index, index.samples, size)
    decode = cpu_ms(dataset.resized, len(dataset))
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        cache = resized_cache(dataset, folder, num_workers=0, max_gb=1e9)
        per_sample = sum(f.stat().st_size for f in cache.folder.iterdir()) / len(dataset)
        cpu_ms(cache.__getitem__, len(dataset))  # the page cache warm
        cached = cpu_ms(cache.__getitem__, len(dataset))
    epoch = args.samples * decode / 1000 / args.cores
    total = per_sample * args.samples / 1e9
    return (
        f"| {size} | {per_sample / 1e3:,.1f} kB | {total:,.1f} GB | {decode:.2f} | {1000 / decode:,.0f} | "
        f"{epoch:,.0f} s | {cached:.3f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400_000, help="the dataset to size (default 400,000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="training sizes, px")
    parser.add_argument("--measure", type=int, default=1000, help="generated samples to measure on (224 px)")
    parser.add_argument("--cores", type=int, default=16, help="cores decoding an epoch, for its seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    path = stored_zip(args.measure)
    print(f"{args.samples:,} samples; rates measured on {args.measure:,} samples stored at {STORED} px, one thread\n")
    print(f"| size px | cache a sample | cache for {args.samples:,} | decode CPU ms | decodes/s a core | "
          f"epoch decoded on {args.cores} cores | cached read CPU ms |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        print(size_row(path, size, args), flush=True)
    entries = 3 * args.samples
    index = measure(build("seed002", args.samples, CACHE / f"index-seed002-{entries}.zip"))
    print("\n| index | entries | samples | peak RSS MB | seconds |\n|---|---:|---:|---:|---:|")
    print(f"| seed002 layout | {entries + -(-args.samples // 4000):,} | {index['samples']:,} | {index['mb']:.0f} | "
          f"{index['seconds']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()

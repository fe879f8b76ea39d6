"""Generator throughput: samples/s (and per worker process) at several image sizes and worker counts.

    python experiments/bench_synth.py                       # 64/128/224 px, 1 and 2 workers
    python experiments/bench_synth.py --sizes 224 --workers 1 2 4 --seconds 60

Each cell writes a real zip (random scheme, 10 samples per background) to a temporary folder; the time covers
everything `generate` does, process start-up included; CPU ms/sample adds up the time of every process (the
cost that does not depend on how busy the machine is). The sample count per cell is chosen from a short probe
so that a cell takes about `--seconds` with one worker. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from mdeas.synth.generate import generate


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(size: int, samples: int, workers: int, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds to generate `samples` samples at `size` px with `workers` processes."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    generate(folder / f"bench-{size}-{workers}.zip", samples, image_size=size, seed=0, workers=workers)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0, help="target duration of a one-worker cell")
    args = parser.parse_args(argv)
    print("| image size | workers | samples | seconds | samples/s | samples/s per worker | CPU ms/sample |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            probe = run(size, 20, 1, folder)[0] / 20
            samples = max(20, round(args.seconds / probe / 10) * 10)
            for workers in args.workers:
                seconds, cpu = run(size, samples, workers, folder)
                rate = samples / seconds
                row = f"| {size} | {workers} | {samples} | {seconds:.1f} | {rate:.1f} | {rate / workers:.1f} |"
                print(f"{row} {1000 * cpu / samples:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Model zoo benchmark: parameters, forward GFLOPs at 224 and CPU forward time at 64, one row per preset.

`python experiments/bench_models.py [--size 64] [--batch 8] [--threads 2] [--runs 7]` prints a markdown table.
GFLOPs come from `torch.utils.flop_counter` (mdeas.summary.layer_table, one image, bg and fg_bg); time is the
median of `--runs` timed eval forwards after two warm-up ones, per image, with `--threads` intra-op threads, and
also as a ratio to densenet_dilated timed in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mdeas.models import create_model, list_models
from mdeas.summary import layer_table

BASELINE = "densenet_dilated"


def forward_ms_per_image(model: nn.Module, size: int, batch: int, runs: int, warmup: int = 2) -> float:
    """Median eval-mode forward time (ms) per image of a [batch, 3, size, size] pair."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    bg, fg_bg = (torch.randn(batch, 3, size, size, generator=generator) for _ in range(2))
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(bg, fg_bg)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / batch


def bench(size: int, batch: int, runs: int) -> list[tuple[str, int, float, float]]:
    """Rows (preset, params, GFLOPs at 224, forward ms/image at `size`) for every registered preset."""
    rows = []
    for name in list_models():
        torch.manual_seed(0)
        model = create_model(name)
        params = sum(p.numel() for p in model.parameters())
        _, gflops = layer_table(model, 224)
        rows.append((name, params, gflops, forward_ms_per_image(model, size, batch, runs)))
    return rows


def table(rows: list[tuple[str, int, float, float]], size: int) -> str:
    """The markdown table, with time relative to the baseline preset."""
    base = {name: ms for name, _, _, ms in rows}[BASELINE]
    lines = [
        f"| preset | params | GFLOPs at 224 | CPU forward ms/image at {size} | × {BASELINE} |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| `{n}` | {p:,} | {g:.2f} | {ms:.2f} | {ms / base:.2f} |" for n, p, g, ms in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="timed input size (default 64)")
    parser.add_argument("--batch", type=int, default=8, help="timed batch size (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs after warm-up (default 7)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(table(bench(args.size, args.batch, args.runs), args.size))
    print(f"\ntorch {torch.__version__}, {args.threads} threads, batch {args.batch}; `composed` with its defaults")


if __name__ == "__main__":
    main()

"""Model zoo benchmark: parameters, forward GFLOPs at 224 and CPU forward time at 64, one row per preset.

`python experiments/bench_models.py [--size 64] [--batch 8] [--threads 2] [--runs 7]` prints a markdown table.
GFLOPs come from `torch.utils.flop_counter` (mdeas.summary.layer_table, one image, bg and fg_bg). Time: after two
warm-up forwards of each preset, `--runs` rounds each time one eval forward of every preset in turn (so a slower
or faster spell of the machine falls on all of them alike); per image, the median over rounds, with `--threads`
intra-op threads, and the median over rounds of the ratio to densenet_dilated's forward in the same round.
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


def forward_seconds(model: nn.Module, bg: torch.Tensor, fg_bg: torch.Tensor) -> float:
    """Wall time (s) of one eval-mode forward of the pair."""
    start = time.perf_counter()
    with torch.inference_mode():
        model(bg, fg_bg)
    return time.perf_counter() - start


def bench(size: int, batch: int, runs: int, warmup: int = 2) -> list[tuple[str, int, float, float, float]]:
    """Rows (preset, params, GFLOPs at 224, forward ms/image at `size`, × baseline) for every registered preset,
    timed in alternating rounds (module docstring) on a [batch, 3, size, size] pair."""
    generator = torch.Generator().manual_seed(0)
    bg, fg_bg = (torch.randn(batch, 3, size, size, generator=generator) for _ in range(2))
    models = {}
    for name in list_models():
        torch.manual_seed(0)
        models[name] = create_model(name).eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(warmup + runs):
        for name, model in models.items():
            seconds = forward_seconds(model, bg, fg_bg)
            if round_ >= warmup:
                times[name].append(seconds)
    rows = []
    for name, model in models.items():
        ratio = statistics.median(t / b for t, b in zip(times[name], times[BASELINE], strict=True))
        params = sum(p.numel() for p in model.parameters())
        _, gflops = layer_table(model, 224)
        rows.append((name, params, gflops, statistics.median(times[name]) * 1000 / batch, ratio))
    return rows


def table(rows: list[tuple[str, int, float, float, float]], size: int) -> str:
    """The markdown table, with time relative to the baseline preset."""
    lines = [
        f"| preset | params | GFLOPs at 224 | CPU forward ms/image at {size} | × {BASELINE} |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| `{n}` | {p:,} | {g:.2f} | {ms:.2f} | {ratio:.2f} |" for n, p, g, ms, ratio in rows]
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

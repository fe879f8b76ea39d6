"""Dataset statistics, streamed over every sample (or a seeded subset): the input normalisation and more.

    python -m mdeas.data.stats path=data/set.zip
    python -m mdeas.data.stats path=data/set.zip limit=5000 out=conf/data/norm/myset.yaml

Prints per-channel mean and std of bg and fg_bg (0-1 scale, at the stored size), of both together (what
`data.mean` / `data.std` take), the mask foreground fraction, and depth mean and std over known pixels (normalised,
larger = farther), or that none is known. `out=` writes `mean`/`std` as a `data` config: under `conf/data/norm/`
(or a folder added with `hydra.searchpath`) it is used by `python -m mdeas.train +data/norm=myset`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from torch.utils.data import Dataset

from mdeas.atomic import atomic_write, output_folder
from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_names, output_file, whole_number, worker_count
from mdeas.data.dataset import dataset_paths, load_sample, scan
from mdeas.data.decode import binarise
from mdeas.data.layouts import DatasetIndex, load_index
from mdeas.data.splits import subset

SUMS = ("bg", "fg_bg", "mask", "depth")


def _moments(values: np.ndarray) -> np.ndarray:
    """[N, C] values → float64 [3, C]: count, sum, sum of squares."""
    values = values.astype(np.float64)
    return np.stack([np.full(values.shape[1], len(values), np.float64), values.sum(0), (values**2).sum(0)])


class _Sums(Dataset):
    """Item i: the moments of sample i under the keys of SUMS (images on the 0-1 scale)."""

    def __init__(self, index: DatasetIndex, samples: Sequence) -> None:
        self.index, self.samples = index, list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        raw = load_sample(self.index, self.samples[i])
        return {
            "bg": _moments(raw["bg"].reshape(-1, 3) / 255.0),
            "fg_bg": _moments(raw["fg_bg"].reshape(-1, 3) / 255.0),
            "mask": _moments(binarise(raw["mask"]).reshape(-1, 1)),
            "depth": _moments(raw["depth"][raw["valid"]].reshape(-1, 1)),
        }


def _mean_std(moments: np.ndarray) -> tuple[list[float], list[float]]:
    count, total, squares = moments
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
    return mean.tolist(), std.tolist()


def dataset_stats(
    paths: str | Sequence[str],
    layout: str | None = None,
    depth_inverted: bool | None = None,
    limit: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
) -> dict:
    """Statistics of the dataset at `paths` (of `limit` samples drawn by `seed`, or all).

    Returns {"samples", "layout", "bg", "fg_bg", "inputs": {"mean": [3], "std": [3]}, "mask_fraction",
    "depth": {"mean", "std", "known"}} — images on the 0-1 scale, depth normalised (larger = farther), `known` the
    fraction of depth pixels that are known (mean and std None where none is, as in a set without depth).
    """
    index = load_index(paths, layout, depth_inverted)
    samples = subset(index.samples, limit, seed)
    sums = {k: 0.0 for k in SUMS}
    for item in scan(_Sums(index, samples), num_workers, "statistics"):
        sums = {k: sums[k] + item[k] for k in SUMS}
    stats: dict = {"samples": len(samples), "layout": index.layout}
    for name, moments in (("bg", sums["bg"]), ("fg_bg", sums["fg_bg"]), ("inputs", sums["bg"] + sums["fg_bg"])):
        mean, std = _mean_std(moments)
        stats[name] = {"mean": mean, "std": std}
    stats["mask_fraction"] = _mean_std(sums["mask"])[0][0]
    depth_mean, depth_std = _mean_std(sums["depth"])
    known = float(sums["depth"][0][0] / max(sums["mask"][0][0], 1))
    if not known:
        depth_mean, depth_std = [None], [None]
    stats["depth"] = {"mean": depth_mean[0], "std": depth_std[0], "known": known}
    return stats


def _numbers(values: Sequence[float], sep: str = ", ") -> str:
    return "[" + sep.join(f"{v:.4f}" for v in values) + "]"


def format_stats(stats: dict) -> str:
    """Human-readable lines, ending with the `data.mean` / `data.std` override."""
    inputs = stats["inputs"]
    depth = stats["depth"]
    lines = [f"{stats['samples']} samples (layout {stats['layout']}), images on the 0-1 scale"]
    for name in ("bg", "fg_bg", "inputs"):
        lines.append(f"{name:<7} mean {_numbers(stats[name]['mean'])}  std {_numbers(stats[name]['std'])}")
    lines.append(f"mask    foreground fraction {stats['mask_fraction']:.4f}")
    if depth["known"]:
        lines.append(
            f"depth   mean {depth['mean']:.4f}  std {depth['std']:.4f}  (normalised, larger = farther; "
            f"{depth['known']:.1%} of pixels known)"
        )
    else:
        lines.append("depth   none known in this set")
    lines.append(f"data.mean={_numbers(inputs['mean'], ',')} data.std={_numbers(inputs['std'], ',')}")
    return "\n".join(lines)


def write_norm(stats: dict, out: str | Path, source: str) -> Path:
    """Write `mean` / `std` of the inputs as a yaml merged into the `data` config (`# @package data`), atomically."""
    out = Path(out)
    text = (
        "# @package data\n"
        f"# input normalisation of {source} ({stats['samples']} samples), by python -m mdeas.data.stats\n"
        f"mean: {_numbers(stats['inputs']['mean'])}\n"
        f"std: {_numbers(stats['inputs']['std'])}\n"
    )
    atomic_write(out, lambda tmp: tmp.write_text(text))
    return out


@hydra.main(version_base="1.3", config_path="../../conf", config_name="stats")
def main(cfg: DictConfig) -> None:
    """CLI: python -m mdeas.data.stats path=ZIP|[ZIP,...] [limit=N] [out=FILE.yaml] (see conf/stats.yaml)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_data_error(ValueError):
        paths = dataset_paths(cfg.path)
        file_names(cfg, "out")
        if cfg.out:  # found before the scan, not after it
            output_file(cfg.out, "out (the yaml file to write, e.g. out=conf/data/norm/my.yaml)")
        seed, workers = whole_number(cfg.seed, "seed"), worker_count(cfg.num_workers, "num_workers")
        with output_folder(Path(cfg.out).parent) if cfg.out else nullcontext():  # a folder it cannot make: now
            stats = dataset_stats(paths, cfg.layout, cfg.depth_inverted, cfg.limit, seed, workers)
            print(format_stats(stats))
            if cfg.out:
                print(f"wrote {write_norm(stats, cfg.out, ', '.join(paths) if isinstance(paths, list) else paths)}")


if __name__ == "__main__":
    run_app(main)

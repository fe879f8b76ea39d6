"""Check a dataset before training: every sample's entries exist, stay within the read and decode limits (README
"Security"), decode, agree in size, masks are binary and 8-bit depth maps grey.

    python -m mdeas.data.check path=data/set.zip
    python -m mdeas.data.check 'path=[part1.zip,part2.zip]' layout=seed003 num_workers=4

Prints the sample count and a summary of problems by kind, with the first offending entries of each; exits with
status 1 when there is any problem (or when the zips cannot be indexed at all).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import hydra
import numpy as np
from omegaconf import DictConfig
from torch.utils.data import Dataset

from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import finite_number, whole_number, worker_count
from mdeas.data.dataset import dataset_paths, load_sample, scan
from mdeas.data.decode import GREY_MODES, open_image, to_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import DatasetIndex, Sample, load_index
from mdeas.failure import fail

MID_GREY = (32, 223)  # mask values that are neither background nor foreground, even after JPEG
COLOUR_SPREAD = 16  # mean spread of a pixel's channels (0-255) above which an 8-bit depth map is in colour


@dataclass
class CheckResult:
    """What `check` found: the index (complete samples) and every problem, indexing problems first."""

    index: DatasetIndex
    problems: list[DataError] = field(default_factory=list)


class _Inspect(Dataset):
    """Item i: the problems of sample i (an empty list when it is fine)."""

    def __init__(self, index: DatasetIndex, max_mid_grey: float) -> None:
        self.index, self.max_mid_grey = index, max_mid_grey

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int) -> list[DataError]:
        sample = self.index.samples[i]
        try:
            mask = load_sample(self.index, sample)["mask"]
            colour = self.colour_depth(sample)
        except DataError as e:
            return [e]
        return [*self.mask_problems(sample, mask), *colour]

    def colour_depth(self, sample: Sample) -> list[DataError]:
        """A problem when the sample's 8-bit depth map is in colour (a colour map, read as its luminance)."""
        store = self.index.store
        if not sample.depth or self.index.depth.format != "gray8":
            return []
        image = open_image(store.read(sample.depth), str(store.source(sample.depth)), store.name(sample.depth))
        if image.header.mode in GREY_MODES:
            return []
        rgb = to_rgb(image).astype(np.int16)
        spread = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())
        if spread <= COLOUR_SPREAD:
            return []  # grey stored in three channels (JPEG leaves a little colour)
        what = f"a depth map in colour (channels {spread:.0f} apart on average): read as its grey; store it as grey"
        return [DataError(store.source(sample.depth), store.name(sample.depth), what, "depth")]

    def mask_problems(self, sample: Sample, mask: np.ndarray) -> list[DataError]:
        """A problem when `mask` (uint8 [H, W] as read, `decode.to_mask`: one stored under 255, such as 0/1, is
        scaled to its brightest value) is not binary."""
        grey = float(((mask >= MID_GREY[0]) & (mask <= MID_GREY[1])).mean())
        if grey <= self.max_mid_grey:
            return []
        what = f"not a binary mask: {grey:.0%} of its pixels are mid-grey (at most {self.max_mid_grey:.0%} expected)"
        store = self.index.store
        return [DataError(store.source(sample.mask), store.name(sample.mask), what, "mask")]


def check(
    paths: str | Sequence[str],
    layout: str | None = None,
    num_workers: int = 0,
    max_mid_grey: float = 0.1,
) -> CheckResult:
    """Index `paths` (leaving problem samples out) and decode every sample in `num_workers` processes; a problem
    of an entry that several samples share (a background) is listed once."""
    index = load_index(paths, layout, strict=False, require_samples=False)
    result = CheckResult(index, list(index.problems))
    seen = {str(problem) for problem in result.problems}
    for problems in scan(_Inspect(index, max_mid_grey), num_workers, "checking"):
        result.problems += [problem for problem in problems if str(problem) not in seen]
        seen.update(str(problem) for problem in problems)
    return result


def report(result: CheckResult, listed: int = 5) -> str:
    """The summary: the count of samples with all four entries, then per kind of problem its count and first
    `listed` messages (one line each: zip, entry, what is wrong)."""
    index = result.index
    bad = len(result.problems)
    lines = [f"{index.store.describe()}: layout {index.layout}, {len(index.samples)} samples with all their entries"]
    if not bad:
        return "\n".join([*lines, "no problems"])
    by_kind: dict[str, list[DataError]] = {}
    for problem in result.problems:
        by_kind.setdefault(problem.category, []).append(problem)
    lines.append(f"{bad} problems:")
    for kind, problems in by_kind.items():
        lines.append(f"  {kind}: {len(problems)}")
        lines += [f"    {p}" for p in problems[:listed]]
        if len(problems) > listed:
            lines.append(f"    ... and {len(problems) - listed} more")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="check")
def main(cfg: DictConfig) -> None:
    """CLI: python -m mdeas.data.check path=ZIP|[ZIP,...] [layout=...] [num_workers=N] (see conf/check.yaml)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_data_error(ValueError):
        workers, listed = worker_count(cfg.num_workers, "num_workers"), whole_number(cfg.listed, "listed")
        max_mid_grey = finite_number(cfg.max_mid_grey, "max_mid_grey")
        if not 0 <= max_mid_grey < 1:
            raise ValueError(f"max_mid_grey (a share of a mask's pixels) must be in [0, 1), got {cfg.max_mid_grey}")
        result = check(dataset_paths(cfg.path), cfg.layout, workers, max_mid_grey)
    print(report(result, listed))
    if result.problems:
        fail(f"{len(result.problems)} problems in {result.index.store.describe()}")
    if not result.index.samples:
        fail(f"{result.index.store.describe()}: dataset has no samples")


if __name__ == "__main__":
    run_app(main)

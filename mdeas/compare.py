"""Compare checkpoints on the same samples: mask IoU at each sample's stored size, with paired intervals.

`python -m mdeas.compare 'ckpt_paths=[runs/a/checkpoints/best.ckpt,runs/b/checkpoints/best.ckpt]'
data.path=data/real_check.zip data.split_by=both 'data.split=[0,0.5,0.5]' data.seed=0` scores every checkpoint on
the test split of the first one's data config, changed by the `data.*` overrides as `evaluate` changes it, and
gives each later checkpoint the 95 % bootstrap interval of its pooled-IoU gain over the first, paired (the same
resampled images for both): an interval that holds 0 means these samples cannot rank the two. `part=val` scores
the val split instead: with those overrides, the selection part of a real-photo check set, where recipes are
chosen, keeping the test split (the report part) unseen. Writes compare.json to `output` (default: the current
folder) and prints a markdown table. Each mask is averaged with that of the pair mirrored left to right (`mirror=false`:
one pass).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from mdeas.atomic import output_folder, write_json
from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_names, flag
from mdeas.data.errors import DataError
from mdeas.evaluate import data_config, data_overrides, holds_trained_files, same_files, warn_if_changed
from mdeas.inference import CheckpointError, load_module, resolve_device, stored_data_config
from mdeas.native_eval import model_mask_scores, objects_of, paired_intervals
from mdeas.outline import KnownBackgroundOutline, from_config
from mdeas.report import cell, markdown_table

log = logging.getLogger(__name__)
PARTS = ("test", "val")
SCORES = ("mask/iou", "mask/iou_per_image", "mask/boundary_f", "mask/precision", "mask/recall")


def same_data(a: dict, b: dict) -> bool:
    """Whether two data configs read the same samples: the same files, or (neither naming any) the same generated
    set (equal `synth` options)."""
    if a.get("path") or b.get("path"):
        return same_files(a.get("path"), b.get("path"))
    return a.get("synth") is not None and a.get("synth") == b.get("synth")


def compare(
    ckpt_paths: list[str],
    data: dict[str, Any],
    output: str | None = None,
    device: str = "auto",
    outline: KnownBackgroundOutline | None = None,
    part: str = "test",
    mirror: bool = False,
) -> dict:
    """{"samples", "part", "rows": one per checkpoint with SCORES, "mask/iou_ci95" and, after the first,
    "mask/iou_gain_ci95" over it, each also "_by_object" where the ids name objects (`paired_intervals`)}, scored
    on the split `part` (test or val); written to <output>/compare.json. Each
    model's masks are averaged with the mirrored pair's when `mirror`, and taken after `outline` when given. The
    checkpoints must share their input normalisation (ValueError naming the one that differs)."""
    if not ckpt_paths:
        raise ValueError("ckpt_paths needs a checkpoint or more, got none")
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    device = resolve_device(device)
    modules = [load_module(path) for path in ckpt_paths]
    trained = [stored_data_config(module, path) for path, module in zip(ckpt_paths, modules, strict=True)]
    first = trained[0]
    for path, stored in zip(ckpt_paths[1:], trained[1:], strict=True):
        if (stored.get("mean"), stored.get("std")) != (first.get("mean"), first.get("std")):
            raise ValueError(f"{path}: its input normalisation differs from {ckpt_paths[0]}'s")
    out = Path(output or ".")
    with output_folder(out):
        # masks are read at full size from the zip: a resized cache would be built for nothing
        contents = [(module.hparams.data or {}).get("contents") for module in modules]
        scoring = data_config(first, {**data, "cache_resized": False}, contents[0])
        for path, stored, held in zip(ckpt_paths, trained, contents, strict=True):
            other_split = any(stored.get(key) != scoring.get(key) for key in ("split", "split_by", "seed"))
            if other_split and (same_data(stored, scoring) or holds_trained_files(scoring.get("path"), stored, held)):
                log.warning("%s trained on another split of the data scored here: its scores may include its own "
                            "training samples", path)  # fmt: skip
        datamodule = instantiate(scoring, _convert_="all")
        datamodule.prepare_data()
        datamodule.setup()
        warn_if_changed(datamodule.index.store, first, data, contents[0])
        samples = datamodule.datasets[part]
        if not samples:
            raise DataError(
                datamodule.index.store.describe(), None, f"the {part} split is empty: change data.split or part"
            )
        scores = model_mask_scores(modules, samples, device, outline, mirror)  # each sample decoded once for all
        objects = objects_of(samples.samples, scores[0].ids)
        rows = []
        for i, (path, score) in enumerate(zip(ckpt_paths, scores, strict=True)):
            values = score.compute()
            row = {"checkpoint": str(path), **{k: values[k] for k in SCORES}}
            for suffix, paired in paired_intervals(score, scores[0], objects).items():
                row[f"mask/iou_ci95{suffix}"] = paired["model"]
                if i:
                    row[f"mask/iou_gain_ci95{suffix}"] = paired["gain"]
            rows.append(row)
        outline_step = repr(outline) if outline else None
        scored = len(scores[0].counts)  # samples left out under data.on_error=skip are not
        results = {"samples": scored, "part": part, "outline": outline_step, "mirror": mirror, "rows": rows}
        write_json(out / "compare.json", results)
    return results


def table(results: dict) -> str:
    """Markdown: one row per checkpoint, its scores and its IoU gain over the first (also with whole objects
    resampled, where the rows have that interval)."""
    by_object = any("mask/iou_ci95_by_object" in row for row in results["rows"])
    header = ["checkpoint", "IoU [95 %]", "gain over the first [95 %]"]
    header += ["gain, objects resampled [95 %]"] * by_object + ["per-image IoU", "boundary F", "precision", "recall"]
    rows = []
    for row in results["rows"]:
        interval = cell(row["mask/iou_ci95"]) if row["mask/iou_ci95"] else "(too few images)"
        gains = [signed(row.get("mask/iou_gain_ci95"))] + [signed(row.get("mask/iou_gain_ci95_by_object"))] * by_object
        scores = (cell(row[f"mask/{key}"]) for key in ("iou_per_image", "boundary_f", "precision", "recall"))
        rows.append([cell(row["checkpoint"]), f"{row['mask/iou']:.4f} {interval}", *gains, *scores])
    return "\n".join(markdown_table(header, rows, numeric_from=1))


def signed(interval: list[float] | None) -> str:
    """An interval of gains as [+lo, +hi]; "–" for none (the first row, or too few images or objects)."""
    return "[{:+.4f}, {:+.4f}]".format(*interval) if interval else "–"


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    """Score several checkpoints on one dataset, paired sample by sample (see conf/compare.yaml)."""
    with exit_on_data_error(CheckpointError, ValueError):
        file_names(cfg, "ckpt_paths", "output")
        paths = [cfg.ckpt_paths] if isinstance(cfg.ckpt_paths, str) else list(cfg.ckpt_paths)  # one path: a str
        outline = from_config(cfg.get("outline"))
        mirror = flag(cfg.get("mirror", True), "mirror")
        results = compare(paths, data_overrides(cfg), cfg.output, cfg.device, outline, cfg.part, mirror)
    print(f"{results['samples']} {results['part']} samples, masks scored at each sample's stored size; "
          f"mirrored: {results['mirror']}; outline step: {results['outline']}")  # fmt: skip
    print(table(results))


if __name__ == "__main__":
    run_app(main)

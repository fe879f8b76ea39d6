"""Evaluate a checkpoint on its test split, or on any dataset, beside the |fg_bg − bg| and depth baselines.

`python -m mdeas.evaluate ckpt_path=outputs/.../checkpoints/best.ckpt [data.path=other.zip] [data.limit=200 ...]`
writes metrics.json (model, baseline, depth_baseline; by_object where the sample ids name objects) and prints a
markdown table. Any `data.*` override that
`train` takes changes the data config stored in the checkpoint. The baseline's threshold is chosen on the validation
split; the depth baselines (the median depth, the per-pixel mean depth map) are fitted on the train split, or on the
validation split when there is none (another dataset). Masks at native size are averaged with those of the pair
mirrored left to right (`mirror=false`: one pass; depth stays one pass, at the model's size).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mdeas.atomic import output_folder, write_json
from mdeas.baseline import fit_depth_baselines, fit_threshold, score, score_depth
from mdeas.callbacks.interrupt import ctrl_c_as_interrupt
from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_names, flag
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.dataset import MaskDepthDataset, checked_path
from mdeas.data.errors import DataError
from mdeas.data.zipstore import ZipStore
from mdeas.inference import CheckpointError, load_module, resolve_device, stored_data_config
from mdeas.metrics.classes import DepthMetrics
from mdeas.models.net import check_size
from mdeas.module import NO_DEPTH_LEARNT, MaskDepthModule, depth_alignment, selection_score
from mdeas.native_eval import native_mask_scores
from mdeas.outline import KnownBackgroundOutline, from_config
from mdeas.report import cell, markdown_table
from mdeas.resume_dir import run_folder

OTHER_DATASET_SPLIT = [0.0, 0.15, 0.85]
RESOLUTIONS = ("native", "model")

log = logging.getLogger(__name__)


def same_files(a: str | list[str] | None, b: str | list[str] | None) -> bool:
    """Whether two `data.path` values (a zip or a list of zips) name the same files, in order."""
    paths = [[a] if isinstance(a, str) and a else list(a or []), [b] if isinstance(b, str) and b else list(b or [])]
    if not paths[0] or len(paths[0]) != len(paths[1]):
        return False
    return all(
        os.path.samefile(x, y) if os.path.exists(x) and os.path.exists(y) else Path(x).resolve() == Path(y).resolve()
        for x, y in zip(*paths, strict=True)
    )


def holds_trained_files(path: str | Sequence[str], stored: dict, contents: list[str] | None) -> bool:
    """Whether `data.path=path` names the zips a checkpoint trained on: the same files as its stored config's
    `path`, or zips of the same `contents` (ZipStore.contents, recorded in the checkpoint), wherever they are: a
    relative path typed in another folder, a copy, the generated set named by its file."""
    if not path:  # data.path=null: the generated default, as before
        return False
    if same_files(path, stored.get("path")):
        return True
    if not contents:
        return False
    store = ZipStore([path] if isinstance(path, str) else list(path))
    try:
        return store.contents() == contents
    finally:
        store.close()


def warn_if_changed(store: ZipStore, stored: dict, overrides: dict[str, Any], contents: list[str] | None) -> None:
    """Warn when the data scored keeps the checkpoint's training split (its own data, or its files named again by
    path) but no longer holds what it trained on (`contents`): a changed generator, or a zip replaced at its path.
    Nothing is said when the overrides choose other generated data (`synth.*`) or the checkpoint recorded none."""
    if not contents or any(key.startswith("synth") for key in overrides):
        return
    kept = "path" not in overrides or same_files(overrides["path"], stored.get("path"))
    if kept and store.contents() != contents:
        log.warning("%s: not the files this checkpoint trained on (their contents differ from those it recorded: a "
                    "changed generator or a replaced zip), so the split scored may hold samples it trained on",
                    store.describe())  # fmt: skip


def data_config(stored: dict, overrides: dict[str, Any], contents: list[str] | None = None) -> dict:
    """The checkpoint's data config with `overrides` applied ({dotted key under data: value}, e.g.
    `{"path": "x.zip", "limit": 200, "synth.num_samples": 500}`). Another dataset (`path` given and not the
    files the checkpoint trained on) is split OTHER_DATASET_SPLIT (val picks the baseline threshold, test is
    scored) and used whole, unless the overrides set `split` or `limit` themselves; the training files named again
    (`holds_trained_files`, with the checkpoint's `contents`) keep the training split, so the test split stays
    unseen. A checkpoint without a data config (not saved by
    mdeas.train) takes the data module's defaults."""
    if not stored and "path" not in overrides:
        raise ValueError("the checkpoint holds no data config; give data.path=...")
    checked_path(overrides.get("path"))
    cfg = OmegaConf.create(stored or {"_target_": f"{MaskDepthDataModule.__module__}.{MaskDepthDataModule.__name__}"})
    if "path" in overrides and not holds_trained_files(overrides["path"], stored, contents):
        cfg.split, cfg.limit = OTHER_DATASET_SPLIT, None
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return OmegaConf.to_container(cfg, resolve=True)


def data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The `data.<key>=<value>` overrides of this command line, with the values Hydra composed for them, and
    always `cache_dir` as this command composes it (a setting of this machine, e.g. MDEAS_CACHE_DIR, not of the
    run that trained the checkpoint)."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(HydraConfig.get().overrides.task)]
    given = {key.removeprefix("data."): OmegaConf.select(cfg, key) for key in keys if key.startswith("data.")}
    return {"cache_dir": cfg.data.cache_dir, **given}


def default_output(ckpt_path: Path, data_path: str | Sequence[str] | None = None) -> Path:
    """Where metrics.json goes without `output=`: <run>/evaluate for a checkpoint in <run>/checkpoints/, else an
    evaluate/ folder beside the checkpoint; for a dataset named by `data.path`, its sub-folder named by the zips'
    stems (`evaluate/real_check`, `evaluate/a+b`), so that scores of several datasets are kept (zips of one name in
    two folders share a folder: give `output=` to keep both)."""
    ckpt = ckpt_path.resolve()
    folder = (run_folder(ckpt) or ckpt.parent) / "evaluate"
    if not data_path:
        return folder
    paths = [data_path] if isinstance(data_path, str) else list(data_path)
    return folder / "+".join(PurePosixPath(str(path).rstrip("/")).stem for path in paths)


def depth_maps(dataset: MaskDepthDataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(depth, valid) of every sample of a MaskDepthDataset at its size, not augmented: float32 [S, S] normalised
    depth and bool [S, S] (samples skipped by `on_error="skip"` are left out)."""
    for key in range(len(dataset)):
        item = dataset.resized(key)
        if item is not None:
            yield torch.from_numpy(item["depth"]), torch.from_numpy(item["valid"])


def depth_baseline(datamodule: MaskDepthDataModule, scale: float, align: str) -> dict | None:
    """The depth baselines fitted on the train split (the val split when train is empty) and scored on the test
    split by DepthMetrics(scale, align): {"fit_on", "median" (in the reported unit), "constant": {metric: value},
    "mean_map": {...}}; None when the fitting split has no valid depth."""
    fit_on = "train" if len(datamodule.datasets["train"]) else "val"
    baselines = fit_depth_baselines(depth_maps(datamodule.datasets[fit_on]))
    if baselines is None:
        return None
    scores = score_depth(datamodule.test_dataloader(), baselines, scale, align)
    return {"fit_on": fit_on, "median": baselines.constant * scale, **scores}


def check_model_size(module: MaskDepthModule, size: object) -> None:
    """ValueError naming data.image_size when the model cannot take it (not divisible by its stride), before any
    sample is decoded and cached at that size."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        try:
            check_size(torch.empty(0, 0, size, size), module.model.stride)
        except ValueError as error:
            raise ValueError(f"data.image_size={size}: {error}") from None


def evaluate(
    ckpt_path: str,
    data: dict[str, Any],
    output: str | None = None,
    device: str = "auto",
    resolution: str = "native",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> dict:
    """Test metrics of the checkpoint and of the baselines on the same samples (mask metrics only, and no
    depth_baseline, for a dataset without depth or a checkpoint that learnt none: `MaskDepthModule.learns_depth`), on
    the checkpoint's data config changed by `data` (see `data_config`); writes <output>/metrics.json. At native size,
    where every sample id names its object, also the intervals over objects and each object's IoU (`by_object`:
    `mdeas.native_eval.native_mask_scores`).

    `resolution="native"`: masks (model and |fg_bg − bg| baseline) are scored at each sample's stored size
    (`mdeas.native_eval`), the model's averaged with the mirrored pair's when `mirror`, after `outline` when given;
    `"model"`: at the model's input size, as validation during training (one pass, no outline step: `outline` and
    `mirror` are not applied, and recorded as None and False).
    Depth is scored at the model's size either way."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    torch_device = resolve_device(device)
    gpu = torch_device.startswith("cuda")
    module = load_module(ckpt_path)
    out = Path(output) if output else default_output(Path(ckpt_path), data.get("path"))
    with output_folder(out):
        stored = stored_data_config(module, ckpt_path)
        contents = (module.hparams.data or {}).get("contents")
        config = data_config(stored, data, contents)
        check_model_size(module, config.get("image_size"))
        datamodule = instantiate(config, _convert_="all")
        datamodule.prepare_data()
        datamodule.setup("test")
        warn_if_changed(datamodule.index.store, stored, data, contents)
        needs = {"test": "it is what is scored", "val": "the |fg_bg − bg| baseline's threshold is chosen on it"}
        for split, why in needs.items():
            if not datamodule.datasets[split]:
                problem = f"the {split} split is empty: {why}; change data.split"
                raise DataError(datamodule.index.store.describe(), None, problem)
        depth = datamodule.index.depth
        align = depth_alignment(depth.unit, depth.inverted)
        # the prediction in the training set's range, the target in this set's
        module.depth_metrics["test"] = DepthMetrics(
            scale=depth.scale, align=align, pred_scale=module.hparams.depth_max_m
        )
        module.depth_relative = depth.unit == "relative"  # the score's δ1 as this set's depth allows
        devices = [torch.device(torch_device).index or 0] if gpu else 1
        trainer = pl.Trainer(accelerator="gpu" if gpu else "cpu", devices=devices, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)  # fmt: skip
        with ctrl_c_as_interrupt(trainer):
            tested = trainer.test(module, datamodule, verbose=False)[0]
        model = {k.removeprefix("test/"): float(v) for k, v in tested.items()}
        has_depth = "depth/delta1" in model  # logged only where some test pixel has a known depth (and it learnt depth)
        if not module.learns_depth:
            log.info("depth not scored: %s learnt no depth (%s)", ckpt_path, NO_DEPTH_LEARNT)
        if not has_depth:  # a set without depth: its depth rows mean nothing
            model = {k: v for k, v in model.items() if not k.startswith("loss/depth")}
        if resolution == "native":
            native, baseline, by_object, counted = native_mask_scores(
                module, datamodule.datasets["val"], datamodule.datasets["test"], torch_device, outline, mirror
            )
            model = {**{k: v for k, v in model.items() if not k.startswith("mask/")}, **native}
            scored = {"mask/iou": torch.tensor(native["mask/iou"]), "depth/count": float(has_depth)}
            scored |= {k: model[k] for k in ("depth/delta1", "depth/delta1_ssi") if has_depth}
            model["score"] = float(selection_score(scored, module.depth_relative))
        else:
            denormalise = datamodule.datasets["test"].denormalise
            threshold = fit_threshold(datamodule.val_dataloader(), denormalise)
            scores = score(datamodule.test_dataloader(), denormalise, threshold)
            baseline = {"threshold": threshold, **{f"mask/{k}": v for k, v in scores.items()}}
            counted = len(datamodule.datasets["test"]) - trainer.test_dataloaders.skipped  # left out: on_error=skip
        results = {"checkpoint": str(ckpt_path), "samples": counted, "resolution": resolution,
                   "outline": repr(outline) if outline and resolution == "native" else None,
                   "mirror": mirror and resolution == "native",
                   "model": model, "baseline": baseline}  # fmt: skip
        if resolution == "native" and by_object is not None:
            results["by_object"] = by_object
        depth_base = depth_baseline(datamodule, depth.scale, align) if has_depth else None
        if depth_base is not None:
            results["depth_baseline"] = depth_base
        write_json(out / "metrics.json", results)
    return results


def table(results: dict) -> str:
    """Markdown: one row per metric, the model beside the |fg_bg − bg| baseline (mask rows) and, when there is a
    depth_baseline, the train median depth and the train mean depth map (depth rows)."""
    columns = [results["baseline"]]
    header = ["metric", "model", "\\|fg_bg − bg\\| baseline"]
    depth_base = results.get("depth_baseline")
    if depth_base:
        columns += [depth_base["constant"], depth_base["mean_map"]]
        header += [f"{depth_base['fit_on']} median depth", f"{depth_base['fit_on']} mean depth map"]
    rows = [
        [key, cell(value), *(cell(column.get(key)) for column in columns)]
        for key, value in results["model"].items()
        if not key.startswith("loss") and value is not None
    ]
    return "\n".join(markdown_table(header, rows))


WORST_OBJECTS_SHOWN = 10


def object_table(by_object: dict[str, dict], shown: int = WORST_OBJECTS_SHOWN) -> str:
    """Markdown: the `shown` objects with the lowest model IoU (`results["by_object"]`), worst first, each beside
    the baseline's IoU on the same images, with a line saying how many objects there are in all."""
    worst = sorted(by_object.items(), key=lambda item: (item[1]["model"], item[0]))[:shown]
    header = ["object", "images", "model IoU", "\\|fg_bg − bg\\| baseline IoU"]
    rows = [[name, str(row["images"]), cell(row["model"]), cell(row["baseline"])] for name, row in worst]
    lines = markdown_table(header, rows, numeric_from=1)
    return "\n".join([f"the {len(worst)} lowest of {len(by_object)} objects (all in metrics.json):", *lines])


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Score a checkpoint and the |fg_bg − bg| baseline on a dataset's test split (see conf/evaluate.yaml)."""
    with exit_on_data_error(CheckpointError, ValueError):
        file_names(cfg, "ckpt_path", "output")
        outline = from_config(cfg.get("outline"))
        mirror = flag(cfg.get("mirror", True), "mirror")
        results = evaluate(cfg.ckpt_path, data_overrides(cfg), cfg.output, cfg.device, cfg.resolution, outline, mirror)
    print(f"{results['samples']} test samples, masks scored at {results['resolution']} resolution; "
          f"baseline threshold {results['baseline']['threshold']:.2f}; mirrored: {results['mirror']}; "
          f"outline step: {results['outline']}")  # fmt: skip
    print(table(results))
    if results.get("by_object"):
        print(object_table(results["by_object"]))


if __name__ == "__main__":
    run_app(main)

"""Train: `python -m mdeas.train [model=...] [loss=...] [key=value ...]` (Hydra app, `-m` for sweeps)."""

from __future__ import annotations

import json
import logging
import shlex
import signal
from collections.abc import Mapping
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from mdeas.atomic import write_json
from mdeas.callbacks.atomic_checkpoint import AtomicCheckpointIO
from mdeas.callbacks.csv_logger import CSVLogger
from mdeas.callbacks.hparams import log_hparams, run_hparams
from mdeas.callbacks.interrupt import ResumeOnInterrupt, ctrl_c_as_interrupt
from mdeas.callbacks.objective_check import ObjectiveCheck
from mdeas.callbacks.options import check_callback_options
from mdeas.callbacks.plateau_resume import PlateauResume
from mdeas.callbacks.steps import val_log_step
from mdeas.cli import exit_on_data_error, full_traces, one_line, run_app
from mdeas.config_values import file_name, finite_number, flag, numbers, whole_number
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.failed_run import log_to_files
from mdeas.failure import failure_message
from mdeas.inference import CheckpointError, load_weights, read_checkpoint
from mdeas.module import MaskDepthModule, NonFiniteLossError
from mdeas.precision import resolve_precision
from mdeas.progressive import StageError, apply_stage, finished
from mdeas.report import markdown_table
from mdeas.resume_dir import register
from mdeas.run_lock import sole_trainer
from mdeas.schedules import check_lr_find, find_lr
from mdeas.sweep import clear_failure, objective, record_failure

register()  # ${resume_dir:...} in conf/train.yaml, resolved when Hydra starts the run

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, datamodule: MaskDepthDataModule) -> MaskDepthModule:
    """The LightningModule of `cfg`; it records what predicting needs: input size, normalisation, depth encoding."""
    depth = datamodule.index.depth
    data = {
        "image_size": datamodule.image_size,
        "mean": list(datamodule.mean),
        "std": list(datamodule.std),
        "depth": {"format": depth.format, "unit": depth.unit, "max": depth.max, "inverted": depth.inverted},
        "depth_known": any(s.depth is not None for s in datamodule.index.samples),  # else the depth head learns nothing
        "config": OmegaConf.to_container(cfg.data, resolve=True),  # rebuilds the datamodule (evaluate)
        "contents": datamodule.index.store.contents(),  # the zips it read, known wherever they are named from
    }
    module = MaskDepthModule(
        model=cfg.model,
        loss=cfg.loss,
        optim=cfg.optim,
        sched=cfg.get("sched") or None,
        depth_max_m=depth.scale,
        data=data,
    )
    module.skip_nonfinite = flag(cfg.get("skip_nonfinite", False), "skip_nonfinite")
    size = datamodule.image_size
    module.example_input_array = (torch.zeros(1, 3, size, size), torch.zeros(1, 3, size, size))  # summary FLOPs, graph
    return module


def _target(group: dict | None) -> str | None:
    """The class an optim or sched config builds (a sched's `scheduler._target_`; None for no schedule)."""
    group = group or {}
    return (group.get("scheduler") or group).get("_target_")


RESUMED_DATA = ("image_size", "batch_size", "seed", "split", "split_by", "limit", "crop")  # what fixes the batches


def check_resume(module: MaskDepthModule, ckpt_path: str, ckpt: dict) -> None:
    """Refuse `ckpt_path=` (read as `ckpt`) before Lightning loads it when it holds another model's
    weights or another optimiser's or LR schedule's state than the config asks for, or was trained on other data
    or other batches (`RESUMED_DATA`, the zips' contents) (CheckpointError naming the file): Lightning would load
    a schedule's state into another kind of schedule, or drop it, and a resumed epoch would skip or repeat samples."""
    saved = ckpt["hyper_parameters"]
    shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if shapes != {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith("model.")}:
        theirs, ours = (m.get("name", m.get("_target_")) for m in (saved["model"], module.hparams.model))
        raise CheckpointError(
            f"{ckpt_path}: weights of model {theirs!r} do not fit model {ours!r}; resume with the run's own model "
            "config, or start another model afresh"
        )
    for group, kind in (("optim", "optimiser"), ("sched", "LR schedule")):
        theirs, ours = (_target(config) or "none" for config in (saved.get(group), module.hparams.get(group)))
        if theirs != ours:
            raise CheckpointError(
                f"{ckpt_path}: holds the state of {kind} {theirs}, not {ours}; resume with the run's own {group}, "
                "or start from its weights with init_from="
            )
    theirs, ours = ((data or {}).get("config") or {} for data in (saved.get("data"), module.hparams.data))
    for key in RESUMED_DATA:  # another order or other batches: the rest of the epoch would be skipped or repeated
        if theirs and theirs.get(key) != ours.get(key):
            raise CheckpointError(
                f"{ckpt_path}: trained with data.{key}={theirs.get(key)!r}, not {ours.get(key)!r}; resume with the "
                "run's own data settings, or start from its weights with init_from="
            )
    held = (saved.get("data") or {}).get("contents")
    if held and held != module.hparams.data.get("contents"):
        raise CheckpointError(
            f"{ckpt_path}: trained on other data than data.path holds now; resume on the run's own data, or start "
            "from its weights with init_from="
        )


def check_optim(optim: Mapping) -> None:
    """ValueError naming the key for a learning rate that is not a finite number >= 0 (inf trains to NaN losses that
    would be blamed on the data) and for Adam's betas other than 2 numbers in [0, 1)."""
    lr, betas = optim.get("lr"), optim.get("betas")
    if lr is not None and not finite_number(lr, "optim.lr") >= 0:  # 0: the weights stay as they start
        raise ValueError(f"optim.lr must be a finite number >= 0, got {lr!r}")
    if betas is not None and not all(0 <= b < 1 for b in numbers(betas, "optim.betas", 2)):
        raise ValueError(f"optim.betas must be 2 numbers in [0, 1), got {list(betas)!r}")


def record_config(cfg: DictConfig) -> None:
    """Rewrite the run's `.hydra/config.yaml` with `cfg` (e.g. after a progressive stage set its own size, batch,
    epochs and starting weights), so that the file says what ran."""
    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is None:
        return
    hydra_cfg = HydraConfig.get()
    OmegaConf.save(cfg, Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir / "config.yaml")


def _scalars(metrics: dict, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def train(cfg: DictConfig) -> dict:
    """Fit, then validate and test the best checkpoint; writes metrics.json in the run dir and returns it.

    With `tune_lr` the LR range test runs first (`tune_lr=only`: and nothing else; returns `{"lr_find": record}`).
    """
    if cfg.get("tune_lr") not in (None, False, True, "only"):
        raise ValueError(f"tune_lr must be true, false or only, got {cfg.tune_lr!r}")
    if cfg.get("tune_lr"):
        check_lr_find(cfg.get("lr_find") or {})
    for key in ("test", "compile", "channels_last"):  # `test=no` is a string, which Python takes for true
        flag(cfg.get(key, False), key)
    if cfg.get("progressive"):  # first: a stage sets sizes and epochs, checked below
        done = finished(cfg)
        cfg = apply_stage(cfg)
        record_config(cfg)  # Hydra wrote the chain's base config; a finished stage's file too
        if done is not None:
            return done
    for key in ("check_val_every_n_epoch", "accumulate_grad_batches"):
        if cfg.trainer.get(key) is not None:
            whole_number(cfg.trainer[key], f"trainer.{key}", 1)
    for key in ("max_epochs", "max_steps"):  # read by the schedules before Lightning; 0 would train nothing
        value = cfg.trainer.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not (value == -1 or value >= 1)
        ):
            raise ValueError(f"trainer.{key} must be a whole number >= 1 (-1: no limit), got {value!r}")
    check_optim(cfg.optim)
    check_callback_options(cfg.get("callbacks"))
    # a wrong path fails here, before the data is made
    resumed = read_checkpoint(cfg.ckpt_path) if file_name(cfg.get("ckpt_path"), "ckpt_path") else None
    if file_name(cfg.get("init_from"), "init_from"):
        read_checkpoint(cfg.init_from)
    pl.seed_everything(whole_number(cfg.seed, "seed"), workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if not datamodule.datasets["val"]:
        split = list(cfg.data.split)
        log.warning("data.split=%s leaves no val samples: no validation (no best.ckpt by a val metric)", split)
    if cfg.get("test") and not datamodule.datasets["test"]:
        raise ValueError(f"test=true but data.split={list(cfg.data.split)} leaves no test samples; set test=false")
    module = build_module(cfg, datamodule)
    if cfg.get("init_from"):
        load_weights(module.model, cfg.init_from)
        log.info("initialised the model's weights from %s", cfg.init_from)
    resume_step = None
    if resumed is not None:
        check_resume(module, cfg.ckpt_path, resumed)
        resume_step, resumed = resumed["global_step"], None  # Lightning reads the file again; this copy can go
    module.set_memory_format(cfg.get("channels_last", False), cfg.get("compile", False))
    if cfg.trainer.get("precision") == "auto":
        cfg.trainer.precision = resolve_precision("auto", cfg.trainer.get("accelerator", "auto"))
        log.info("precision auto: %s", cfg.trainer.precision)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += [ObjectiveCheck(cfg.optimized_metric), PlateauResume()]
    for callback in (c for c in callbacks if isinstance(c, ResumeOnInterrupt)):
        if cfg.get("progressive"):  # a chain resumes as a whole, in its sweep folder
            callback.resume_hint = f"python -m mdeas.train -m <same overrides> hydra.sweep.dir={out_dir.parent}"
        elif HydraConfig.initialized():  # the command line, whose ckpt_path= the hint sets anew
            given = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
            callback.overrides = " ".join(shlex.quote(o) for o in given)
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    if isinstance(logger, CSVLogger):  # a resumed run keeps the rows logged before its checkpoint
        logger.resume_step = resume_step
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()])
    if module.skip_nonfinite and trainer.world_size > 1:  # a skipped batch would leave the other processes waiting
        raise ValueError(f"skip_nonfinite=true is single-device only; this run has {trainer.world_size} processes")
    if cfg.get("tune_lr"):
        with ctrl_c_as_interrupt(trainer):
            found = find_lr(trainer, module, datamodule, out_dir, **cfg.get("lr_find", {}))
        if cfg.tune_lr == "only":
            return {"lr_find": found}
    with ctrl_c_as_interrupt(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    left_out = {"every training sample was left out (data.on_error=skip)": cfg.data.get("on_error") == "skip",
                "every training loss was non-finite (skip_nonfinite=true)": module.skip_nonfinite}  # fmt: skip
    if trainer.global_step == 0 and any(left_out.values()):  # nothing trained: an untrained model's scores would follow
        raise ValueError(f"train: no training step was taken: {' or '.join(k for k, v in left_out.items() if v)}")

    best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # none without a ModelCheckpoint
    # the best checkpoint's scores go to metrics.json and the HPARAMS tab, not as second points on the curves
    loggers, trainer.loggers = trainer.loggers, []
    # a weight average's checkpoint holds the average as its weights: scored as it is, not swapped for the raw ones
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    which = best if best else None
    results: dict = {"best_checkpoint": best}
    if trainer.fast_dev_run:
        which = None
    with ctrl_c_as_interrupt(trainer):
        validated = trainer.validate(module, datamodule=datamodule, ckpt_path=which, verbose=False)
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=which, verbose=False) if cfg.get("test") else []
    results["val"] = _scalars(validated[0], "val/") if validated else {}  # {}: no validation (limit_val_batches=0)
    if tested:
        results["test"] = _scalars(tested[0], "test/")
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", results)
        log.info("val metrics: %s", json.dumps(results["val"]))
        print(format_metrics(results))
    trainer.strategy.barrier("metrics.json")  # every process sees the run finished (a progressive chain's next stage)
    hp_metrics = dict(results["val"])
    if results["val"] and not isinstance(cfg.optimized_metric, str):  # a combination of metrics: a column of its own
        hp_metrics["val/objective"] = objective(results["val"], cfg.optimized_metric)
    step = val_log_step(read_checkpoint(which)["global_step"] if which else trainer.global_step)
    log_hparams(loggers, run_hparams(cfg, module), hp_metrics, step)
    return results


def format_metrics(results: dict) -> str:
    """A markdown table of the val/test metrics."""
    rows = [
        [k, f"{v:.4f}"] for stage in ("val", "test") for k, v in results.get(stage, {}).items() if "/loss/" not in k
    ]
    return "\n".join(markdown_table(["metric", "value"], rows))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return `optimized_metric` of the val metrics to a sweeper (None after `tune_lr=only`, or without
    validation: `+trainer.limit_val_batches=0`).

    Bad data, bad config values (ValueError, e.g. CheckpointError, and Lightning's MisconfigurationException), a
    broken progressive chain and a non-finite loss end the run with one line `error: ...` and exit status 1; in a
    sweep they end the job only (`mdeas.sweep.record_failure`; the job returns None, a failed trial) and the sweep
    exits 1 at its end. A single run's error is also added to its train.log (`mdeas.failed_run`).
    Any other error ends a sweep's job the same way, its type and message in the one line and its traceback in
    the job's log; a single run shows it as a traceback.
    Ctrl-C (exit status 130, `interrupted`) and SIGTERM (exit status 143, as a shell reports a process that SIGTERM
    ended) end the whole sweep; both stop after the batch under way and leave `checkpoints/interrupted.ckpt`
    (`ResumeOnInterrupt`).
    """
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    with exit_on_data_error(), sole_trainer(Path(cfg.paths.output_dir)):  # a second process there ends at once
        return _run(cfg, in_sweep)


def _run(cfg: DictConfig, in_sweep: bool) -> float | None:
    """`main`'s work in the run folder, once it holds it."""
    try:
        with exit_on_data_error(ValueError, MisconfigurationException, StageError, NonFiniteLossError):
            if cfg.get("progressive") and not in_sweep:
                raise StageError("experiment=progressive runs its stages as the jobs of one sweep: add -m")
            if in_sweep:
                clear_failure(Path(cfg.paths.output_dir))
            results = train(cfg)
            return objective(results["val"], cfg.optimized_metric) if results.get("val") else None
    except SIGTERMException:  # Lightning's own exits 0: a stopped run must not read as a finished one
        raise SystemExit(128 + signal.SIGTERM) from None
    except SystemExit as failure:
        if not in_sweep and isinstance(failure.code, str):
            log_to_files(failure_message(failure.code))
        if not in_sweep or not isinstance(failure.code, str):  # an interrupt (Lightning exits 1) ends the sweep
            raise
        record_failure(Path(cfg.paths.output_dir), str(failure.code))  # the other jobs still run
        return None
    except Exception as error:  # a fault no check foresaw: in a sweep it ends its job only, its traceback logged
        if not in_sweep:
            log_to_files(f"{type(error).__name__}: {one_line(error)}", traceback=True)
        if not in_sweep or full_traces():
            raise
        log.exception("job failed")
        record_failure(Path(cfg.paths.output_dir), f"{type(error).__name__}: {one_line(error)} (traceback in its log)")
        return None


if __name__ == "__main__":
    run_app(main)

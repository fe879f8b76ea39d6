"""Learning rate: per-step schedules, the scheduler config Lightning gets, and the LR range test.

A ``sched`` config is ``{scheduler: <partial _target_ config>, interval: step|epoch, monitor?: ..., ...}``; its
scheduler arguments may say ``auto`` for what only the trainer or the optimiser knows (``AUTO_KEYS``):
``total_steps`` (optimiser steps of the whole fit), ``steps_per_epoch`` (optimiser steps per epoch, from the real
train loader) and ``max_lr`` (the optimiser's learning rate, so the LR finder's suggestion carries over).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.tuner import Tuner
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

from mdeas.atomic import write_json
from mdeas.config_values import finite_number, whole_number

log = logging.getLogger(__name__)


class WarmupCyclic:
    """Seed 002's schedule as an LR factor per optimiser step, from the real ``steps_per_epoch``.

    ``warmup_epochs`` at factor 1; then ``cycles`` triangles between ``min_factor`` and 1, each rising for
    ``edge_epochs`` and falling for ``edge_epochs`` (starting and ending at ``min_factor``); then constant
    ``decay^(k+1)`` during the k-th following edge. With the optimiser at 1e-3 and the defaults: 5 epochs at 1e-3,
    three 1e-5 -> 1e-3 -> 1e-5 cycles of 5 + 5 epochs, then 1e-4, 1e-5, ... for 5 epochs each.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        warmup_epochs: float = 5,
        edge_epochs: float = 5,
        cycles: int = 3,
        min_factor: float = 0.01,
        decay: float = 0.1,
    ) -> None:
        if edge_epochs <= 0:
            raise ValueError(f"sched.scheduler.edge_epochs={edge_epochs}: a cycle's edge must last more than 0 epochs")
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs, self.edge_epochs, self.cycles = float(warmup_epochs), float(edge_epochs), int(cycles)
        self.min_factor, self.decay = float(min_factor), float(decay)

    def __call__(self, step: int) -> float:
        warmup, edge = self.warmup_epochs * self.steps_per_epoch, self.edge_epochs * self.steps_per_epoch
        if step < warmup:
            return 1.0
        it = step - warmup
        if it < 2 * edge * self.cycles:
            x = abs((it % (2 * edge)) / edge - 1.0)  # 1 at a cycle's ends, 0 at its peak
            return self.min_factor + (1.0 - self.min_factor) * (1.0 - x)
        return self.decay ** ((it - 2 * edge * self.cycles) // edge + 1)


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 1.0, min_factor: float = 0.0
) -> SequentialLR:
    """Linear warm-up for ``warmup_epochs`` (may be fractional), then cosine down to ``min_factor`` × lr. Step per
    batch.

    With ``W = round(warmup_epochs · steps_per_epoch)`` warm-up steps, the LR factor of optimiser step k is
    ``(k + 1) / (W + 1)`` for k < W, then cosine from 1 at step W to ``min_factor`` at step ``total_steps - 1``
    (W is at most ``total_steps - 2``, and 0 for a one-step run: a run no longer than its warm-up still reaches lr
    and ends at the floor).
    The floor is ``min_factor`` × the first parameter group's lr (the module's optimiser has one group). Steps past
    ``total_steps - 1`` (a run resumed with a larger budget keeps its saved schedule) follow torch's periodic cosine
    back up.
    """
    if not finite_number(warmup_epochs, "sched.scheduler.warmup_epochs") >= 0:
        raise ValueError(f"sched.scheduler.warmup_epochs must be a number >= 0, got {warmup_epochs!r}")
    if not 0 <= finite_number(min_factor, "sched.scheduler.min_factor") <= 1:
        raise ValueError(f"sched.scheduler.min_factor must be in [0, 1], got {min_factor!r}")
    warmup = min(round(warmup_epochs * steps_per_epoch), max(0, total_steps - 2))  # peak, then at least one step
    floor = min_factor * optimizer.param_groups[0]["lr"]  # before LinearLR sets the first step's lr
    ramp = LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - 1 - warmup), eta_min=floor)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


class WarmupCyclicLR(LambdaLR):
    """:class:`WarmupCyclic` (seed 002) on every parameter group. Step per batch."""

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, last_epoch: int = -1, **kwargs: Any) -> None:
        super().__init__(optimizer, WarmupCyclic(steps_per_epoch, **kwargs), last_epoch=last_epoch)


def _steps_per_epoch(trainer: pl.Trainer, optimizer: Optimizer) -> int:
    trainer.estimated_stepping_batches  # noqa: B018 -- sets up the train loader when it is not yet
    batches = trainer.num_training_batches
    if math.isinf(batches):
        raise ValueError("sched: steps_per_epoch: auto needs a train loader with a length")
    return math.ceil(batches / trainer.accumulate_grad_batches)


def _total_steps(trainer: pl.Trainer, optimizer: Optimizer) -> int:
    total = trainer.estimated_stepping_batches
    if math.isinf(total):
        raise ValueError("sched: total_steps: auto needs trainer.max_epochs or trainer.max_steps")
    return int(total)


AUTO_KEYS: dict[str, Callable[[pl.Trainer, Optimizer], Any]] = {
    "total_steps": _total_steps,
    "steps_per_epoch": _steps_per_epoch,
    "max_lr": lambda trainer, optimizer: [group["lr"] for group in optimizer.param_groups],
}


def lr_scheduler_config(sched: Mapping[str, Any], optimizer: Optimizer, trainer: pl.Trainer) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` dict for a ``sched`` config: the scheduler (its ``auto`` arguments resolved
    from ``trainer`` and ``optimizer``) plus every other key as is (``interval``, ``monitor``, ``frequency``); an
    epoch schedule on a monitored metric steps every ``trainer.check_val_every_n_epoch`` epochs unless given."""
    auto = [key for key, value in sched["scheduler"].items() if value == "auto"]
    unknown = [key for key in auto if key not in AUTO_KEYS]
    if unknown:
        raise ValueError(f"sched.scheduler.{unknown[0]}: 'auto' is known only for {', '.join(AUTO_KEYS)}")
    partial = instantiate({k: v for k, v in sched["scheduler"].items() if k not in auto}, _convert_="all")
    try:
        scheduler = partial(optimizer=optimizer, **{key: AUTO_KEYS[key](trainer, optimizer) for key in auto})
    except TypeError as e:  # a misspelt option added with +sched.scheduler.<key>=...
        raise ValueError(f"sched.scheduler: {e}") from None
    config = {**{k: v for k, v in sched.items() if k != "scheduler"}, "scheduler": scheduler}
    if config.get("monitor") and config.get("interval", "epoch") == "epoch" and "frequency" not in config:
        config["frequency"] = trainer.check_val_every_n_epoch or 1  # a val metric exists only every n-th epoch
    return config


def _finite(values: list[float]) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def check_lr_find(options: Mapping[str, Any]) -> None:
    """ValueError naming the `lr_find.<key>` of a bad LR range test option: min_lr < max_lr, both finite and > 0;
    num_training a whole number >= 1; early_stop_threshold null or a finite number > 0 (Lightning's own errors are
    a ZeroDivisionError or a TypeError deep in its loop)."""
    low, high = (finite_number(options.get(k, d), f"lr_find.{k}") for k, d in (("min_lr", 1e-8), ("max_lr", 1.0)))
    if not 0 < low < high:
        raise ValueError(f"lr_find.min_lr and lr_find.max_lr must be 0 < min_lr < max_lr, got {low:g} and {high:g}")
    whole_number(options.get("num_training", 100), "lr_find.num_training", 1)
    threshold = options.get("early_stop_threshold", 4.0)
    if threshold is not None and not finite_number(threshold, "lr_find.early_stop_threshold") > 0:
        raise ValueError(f"lr_find.early_stop_threshold must be a number > 0 or null, got {threshold!r}")


def find_lr(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, out_dir: Path, **options: Any
) -> dict[str, Any]:
    """Lightning's LR range test (``Tuner.lr_find(**options)``) on ``module``, whose weights it restores after.

    Writes ``out_dir/lr_find.json`` (``suggestion``, ``configured_lr``, the tested ``lr`` and ``loss`` values) and,
    when matplotlib is installed, the curve ``out_dir/lr_find.png``; sets ``module.hparams.optim["lr"]`` to the
    suggestion (kept as configured when there is none: too few steps) and returns the record.
    """
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, **options)
    results = finder.results if finder is not None else {"lr": [], "loss": []}  # None: skipped (fast_dev_run)
    suggestion = finder.suggestion() if finder is not None else None
    configured = module.hparams.optim["lr"]
    record = {
        "suggestion": suggestion,
        "configured_lr": configured,
        "lr": _finite(results["lr"]),
        "loss": _finite(results["loss"]),
    }
    if suggestion is not None:
        module.hparams.optim["lr"] = suggestion
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "lr_find.json", record)
        if finder is not None and find_spec("matplotlib") is not None:
            import matplotlib.pyplot as plt

            figure = finder.plot(suggest=True)
            figure.savefig(out_dir / "lr_find.png")
            plt.close(figure)
        used = "training with it" if suggestion is not None else f"no suggestion, keeping {configured:g}"
        print(f"lr_find: suggested learning rate {suggestion} ({used}); curve in {out_dir / 'lr_find.json'}")
    return record

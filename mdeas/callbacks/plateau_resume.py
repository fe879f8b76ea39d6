"""Resume schedules stepped per epoch exactly (`sched=plateau`, `sched=step`, ...).

Lightning writes the end-of-epoch checkpoint before it steps a plateau schedule with that epoch's metric, and on
resuming skips the step ("metrics are not saved in the checkpoint"), so a resumed run's schedule would lag one
epoch behind an uninterrupted one. This callback stores the monitored values in such a checkpoint and applies
the missed step when training starts again. Resumed in the middle of an epoch (`interrupted.ckpt`), Lightning
skips every per-epoch step at that epoch's end; the callback takes them instead.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

KEY = "plateau_pending"


class PlateauResume(pl.Callback):
    """Saves `{scheduler index: monitored value}` under `checkpoint["plateau_pending"]` when the checkpoint is taken
    after an epoch's end but before its plateau step, and steps those schedulers with them on resuming; at the end
    of an epoch resumed mid-way, steps the per-epoch schedulers Lightning leaves alone there."""

    def __init__(self) -> None:
        self.pending: dict[int, float] = {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        progress = trainer.fit_loop.epoch_progress.current
        if progress.processed <= progress.completed:  # mid-epoch: the resumed epoch's end steps the schedule
            return
        pending = {}
        for i, config in enumerate(trainer.lr_scheduler_configs):
            value = trainer.callback_metrics.get(config.monitor) if config.reduce_on_plateau else None
            if value is not None and config.interval == "epoch" and (trainer.current_epoch + 1) % config.frequency == 0:
                pending[i] = float(value)
        if pending:
            checkpoint[KEY] = pending

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.pending = dict(checkpoint.get(KEY, {}))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for i, value in self.pending.items():
            trainer.lr_scheduler_configs[i].scheduler.step(value)
        self.pending = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.fit_loop.restarting:  # restarting here: this epoch was resumed mid-way
            return
        for config in trainer.lr_scheduler_configs:
            if config.interval != "epoch" or (trainer.current_epoch + 1) % config.frequency:
                continue
            if not config.reduce_on_plateau:
                config.scheduler.step()
            elif (value := trainer.callback_metrics.get(config.monitor)) is not None:
                config.scheduler.step(float(value))

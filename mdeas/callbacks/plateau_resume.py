"""Resume a ReduceLROnPlateau schedule exactly (`sched=plateau`).

Lightning writes the end-of-epoch checkpoint before it steps a plateau schedule with that epoch's metric, and on
resuming skips the step ("metrics are not saved in the checkpoint"), so a resumed run's schedule would lag one
epoch behind an uninterrupted one. This callback stores the monitored values in such a checkpoint and applies
the missed step when training starts again.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

KEY = "plateau_pending"


class PlateauResume(pl.Callback):
    """Saves `{scheduler index: monitored value}` under `checkpoint["plateau_pending"]` when the checkpoint is taken
    after an epoch's end but before its plateau step, and steps those schedulers with them on resuming."""

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

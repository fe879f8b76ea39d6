"""A checkpoint every m minutes (or n optimiser steps), taken only where a resumed run goes on as an uninterrupted one
would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint` every `minutes` of training (its `train_time_interval`: at the first batch
    after that much time; null: never), or every n optimiser steps with `every_n_train_steps=n` > 0, which replaces
    the minutes; it saves after a training batch only when

    - the batch made an optimiser step: with `trainer.accumulate_grad_batches` > 1 the step count stays put over a
      window, and a save inside one (as right after a resume, when the save record starts afresh) would count the
      window's batches as done without their gradients;
    - no validation follows the batch (the epoch's last one, every `trainer.val_check_interval` batches,
      any when validation is timed, a stop):
      a run resumed from there goes on past that validation, so its score would never compete for best.ckpt nor
      step a plateau schedule, and the epoch's own checkpoints would never be written. The epoch's end has its own
      checkpoint (`last_checkpoint`), written after its validation.
    """

    _step_at_start = -1

    def __init__(
        self, *args: Any, minutes: float | None = None, every_n_train_steps: int | None = 0, **kwargs: Any
    ) -> None:
        if minutes is not None and not minutes > 0:
            raise ValueError(f"minutes must be positive (or null: no checkpoint by time), got {minutes}")
        steps = every_n_train_steps or 0  # null too: Lightning would read it as "every epoch"
        if minutes and not steps:
            kwargs["train_time_interval"] = timedelta(minutes=minutes)
        super().__init__(*args, every_n_train_steps=steps, **kwargs)

    @property
    def state_key(self) -> str:
        """One key whatever the trigger, so that a run resumed with another setting restores this callback's state
        (Lightning's key holds the trigger, and it warns of a missing callback when the key differs)."""
        return self._generate_state_key(filename=self.filename)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._step_at_start = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step > self._step_at_start and not validation_follows(trainer, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def validation_follows(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether fitting may validate (or stop) after training batch `batch_idx` of the epoch: a conservative reading
    of Lightning's own rule (its last batch, a `val_check_interval` in batches or in time, a requested stop)."""
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or trainer.should_stop:
        return True
    if trainer._val_check_time_interval is not None:
        return True
    every = trainer.val_check_batch
    if every is None or every == float("inf"):
        return False
    seen = trainer.fit_loop.epoch_loop.total_batch_idx if trainer.check_val_every_n_epoch is None else batch_idx
    return (seen + 1) % int(every) == 0

"""The learning rate of every optimiser step, as the scalar `train/lr`.

Lightning's LearningRateMonitor logs only every `log_every_n_steps` steps and names the curve after the optimiser
class (`lr-Adam`); a per-batch schedule (warm-up, cosine, one-cycle) is read step by step here instead. The tag
sits in the `train` group so that TensorBoard's Time Series, which opens its first two groups, opens on
`train` and `val`.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.optim import Optimizer


class LearningRate(pl.Callback):
    """Logs `name` = the first parameter group's learning rate, once per optimiser step, at the step it is used
    for (`trainer.global_step` before that step: 0, 1, ...)."""

    def __init__(self, name: str = "train/lr") -> None:
        self.name = name

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        lr = float(optimizer.param_groups[0]["lr"])
        for logger in trainer.loggers:
            logger.log_metrics({self.name: lr}, step=trainer.global_step)

"""Check `optimized_metric` against the metrics the first validation logs, not only when training ends."""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig

from mdeas.sweep import objective


class ObjectiveCheck(pl.Callback):
    """After the first validation of a fit, compute `optimized_metric` (`mdeas.sweep.objective`) on the val metrics
    it logged: a name none of them has (a typo) stops the run there with the ValueError listing the known names,
    rather than after the last epoch."""

    def __init__(self, spec: str | list | Mapping | ListConfig | DictConfig) -> None:
        self.spec = spec
        self.checked = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.checked or trainer.sanity_checking:
            return
        self.checked = True
        objective({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}, self.spec)

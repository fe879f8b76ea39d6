"""Lightning's TensorBoardLogger, fitted to these models and to what the Time Series page opens on.

- No `epoch` scalar: Lightning adds one to every logged dict; the val points already mark the epochs, and the card
  would sort first in Time Series (which opens its first two groups).
- `log_graph=True` draws the model in the GRAPHS tab from the module's `example_input_array` (bg, fg_bg), traced
  non-strictly since the models return a dict (`{"mask", "depth"}`), which the strict trace refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only, rank_zero_warn
from torch import Tensor

from mdeas.config_values import flag


class TensorBoardLogger(LightningTensorBoardLogger):
    """Same arguments as Lightning's (`save_dir`, `name`, `version`, `log_graph`, `default_hp_metric`, ...);
    `log_graph` must be true or false (`maybe` is text, which Python takes for true)."""

    def __init__(self, *args: Any, log_graph: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, log_graph=flag(log_graph, "logger.log_graph"), **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    @rank_zero_only
    def log_graph(self, model: pl.LightningModule, input_array: Tensor | tuple | None = None) -> None:
        if not self._log_graph:
            return
        inputs = model.example_input_array if input_array is None else input_array
        if not isinstance(inputs, tuple):
            rank_zero_warn("no graph logged: set the module's example_input_array to a (bg, fg_bg) tuple")
            return
        inputs = model._apply_batch_transfer_handler(model._on_before_batch_transfer(inputs))
        with pl.core.module._jit_is_scripting():
            self.experiment.add_graph(model, inputs, use_strict_trace=False)

"""Each validation epoch, the mask head's precision-recall curve on the val split, beside the |fg_bg − bg| baseline's.

TensorBoard's PR CURVES tab shows `val/mask/pr` (the model's probability, sigmoid of its logits) and
`val/mask/pr_baseline` (the mean absolute RGB difference of `mdeas.baseline.difference`, in [0, 1]), both over
every val pixel, counted at `num_thresholds` thresholds evenly spaced over [0, 1] (`mdeas.metrics.pr_curve`).
The baseline does not learn: its curve is logged once, at the first validation of the fit.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn

from mdeas.baseline import difference
from mdeas.callbacks.steps import val_log_step
from mdeas.metrics.pr_curve import precision_recall, threshold_counts


class MaskPRCurves(pl.Callback):
    """Logs `val/mask/pr` every validation epoch of a fit and `val/mask/pr_baseline` at the first one; counts
    are summed over batches and processes, from the outputs `validation_step` returns."""

    def __init__(self, num_thresholds: int = 201) -> None:
        self.num_thresholds = num_thresholds
        self._counts: dict[str, torch.Tensor] = {}
        self._baseline_logged = False

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._counts = {}

    def _add(self, name: str, scores: torch.Tensor, labels: torch.Tensor) -> None:
        counts = torch.stack(threshold_counts(scores, labels, self.num_thresholds))
        self._counts[name] = self._counts[name] + counts if name in self._counts else counts

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or not isinstance(outputs, dict):
            return
        labels = batch["mask"] > 0.5
        self._add("pr", torch.sigmoid(outputs["mask"].float()), labels)
        if not self._baseline_logged:
            denormalise = trainer.val_dataloaders.dataset.denormalise
            self._add("pr_baseline", difference(denormalise(batch["bg"]), denormalise(batch["fg_bg"])), labels)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer) or not self._counts:
            return
        counts = {name: trainer.strategy.reduce(c, reduce_op="sum") for name, c in self._counts.items()}
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.is_global_zero:
            for name, (tp, fp) in counts.items():
                self._log(loggers, f"val/mask/{name}", tp.cpu(), fp.cpu(), val_log_step(trainer.global_step))
        self._baseline_logged = self._baseline_logged or "pr_baseline" in counts

    def _log(self, loggers: list[TensorBoardLogger], tag: str, tp: torch.Tensor, fp: torch.Tensor, step: int) -> None:
        precision, recall = precision_recall(tp, fp)
        positives, negatives = tp[0], fp[0]
        for logger in loggers:
            logger.experiment.add_pr_curve_raw(
                tag,
                true_positive_counts=tp.numpy(),
                false_positive_counts=fp.numpy(),
                true_negative_counts=(negatives - fp).numpy(),
                false_negative_counts=(positives - tp).numpy(),
                precision=precision.numpy(),
                recall=recall.numpy(),
                global_step=step,
                num_thresholds=self.num_thresholds,
            )

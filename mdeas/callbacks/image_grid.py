"""Prediction panels: each validation epoch of a fit, two labelled image panels (`mdeas.callbacks.panels`) in
TensorBoard:

- `val_images/samples`: the same `num_samples` evenly spaced val samples every epoch (one extra forward pass);
- `val_images/worst`: the `worst` val samples of lowest mask IoU that epoch, kept while validating from the
  outputs `validation_step` returns (at most `worst` rows are copied per batch; under DDP, rank 0's share).

The tags sort after `val` so that Time Series opens on the `train` and `val` curves; the IMAGES tab shows both.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.data import default_collate

from mdeas.callbacks.panels import prediction_panel
from mdeas.callbacks.steps import val_log_step
from mdeas.data.dataset import MaskDepthDataset
from mdeas.metrics.per_image import iou_per_image

KEYS = ("bg", "fg_bg", "mask", "depth", "valid")


def evenly_spaced(dataset: MaskDepthDataset, count: int) -> dict | None:
    """`count` evenly spaced samples of `dataset` (all of them when it holds fewer), collated into one batch; a
    sample left out (None, under `data.on_error=skip`) gives way to the next readable one. None if none is."""
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).long().tolist()
    samples, tried = [], set()
    for start in picks:
        for i in range(start, len(dataset)):
            if i not in tried:
                tried.add(i)
                sample = dataset[i]
                if sample is not None:
                    samples.append(sample)
                    break
    return default_collate(samples) if samples else None


def image_summary(tag: str, image: np.ndarray) -> Summary:
    """An image summary of uint8 RGB [H, W, 3], PNG at the fastest compression (~8x faster than the default level
    `SummaryWriter.add_image` uses, for ~10 % more bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    png = Summary.Image(
        height=image.shape[0], width=image.shape[1], colorspace=3, encoded_image_string=buffer.getvalue()
    )
    return Summary(value=[Summary.Value(tag=tag, image=png)])


class ImageGrid(pl.Callback):
    """Logs `val_images/samples` and `val_images/worst` (uint8 HWC panels, tiles of at least `tile` px)."""

    def __init__(self, num_samples: int | None = 6, worst: int | None = 6, tile: int = 128) -> None:
        self.num_samples = num_samples or 0  # null: none
        self.worst = worst or 0
        self.tile = tile
        self._fixed: tuple[Any, dict] | None = None  # (val dataset, its fixed samples collated)
        self._worst: list[dict] = []  # this epoch's lowest-IoU samples so far, one dict each, lowest first

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and trainer.is_global_zero

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._worst = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.worst < 1 or not self._active(trainer) or not isinstance(outputs, dict):
            return
        iou = iou_per_image(outputs["mask"] > 0, batch["mask"] > 0.5).tolist()
        for i in sorted(range(len(iou)), key=iou.__getitem__)[: self.worst]:
            row = {k: batch[k][i].cpu() for k in KEYS} | {"id": batch["id"][i], "iou": iou[i]}
            row |= {"mask_logits": outputs["mask"][i].float().cpu(), "depth_pred": outputs["depth"][i].float().cpu()}
            self._worst.append(row)
        self._worst = sorted(self._worst, key=lambda row: row["iou"])[: self.worst]

    @torch.no_grad()
    def _predict_fixed(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, dataset: MaskDepthDataset
    ) -> dict | None:
        """The fixed samples (read and collated once per dataset) with the module's current predictions, in the
        precision validation ran in (bf16 under bf16-mixed), so that their IoU is the one validation measured."""
        if self._fixed is None or self._fixed[0] is not dataset:
            self._fixed = dataset, evenly_spaced(dataset, self.num_samples)
        batch = self._fixed[1]
        if batch is None:
            return None
        with trainer.precision_plugin.forward_context():
            out = pl_module(batch["bg"].to(pl_module.device), batch["fg_bg"].to(pl_module.device))
        return {**batch, "mask_logits": out["mask"].float().cpu(), "depth_pred": out["depth"].float().cpu()}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not self._active(trainer) or not loggers:
            return
        dataset = trainer.val_dataloaders.dataset
        panels = {}
        fixed = self._predict_fixed(trainer, pl_module, dataset) if self.num_samples > 0 else None
        if fixed is not None:
            panels["val_images/samples"] = fixed
        if self._worst:
            panels["val_images/worst"] = default_collate(self._worst)
        scale = (
            None if getattr(pl_module, "depth_relative", False) else float(pl_module.hparams.get("depth_max_m", 1.0))
        )
        step = val_log_step(trainer.global_step)
        for tag, rows in panels.items():
            image = prediction_panel(
                dataset.denormalise(rows["bg"]),
                dataset.denormalise(rows["fg_bg"]),
                rows["mask"],
                rows["mask_logits"],
                rows["depth"],
                rows["depth_pred"],
                rows["valid"],
                depth_scale_m=scale,
                ids=list(rows["id"]),
                tile=self.tile,
                with_depth=getattr(pl_module, "learns_depth", True),
            )
            summary = image_summary(tag, image)
            for logger in loggers:
                logger.experiment._get_file_writer().add_summary(summary, step)

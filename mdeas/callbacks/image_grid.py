"""Each validation epoch, log a grid of fixed validation samples: fg_bg | mask GT | mask pred | depth GT | pred."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import default_collate


def make_grid(
    fg_bg: torch.Tensor,
    mask: torch.Tensor,
    mask_prob: torch.Tensor,
    depth: torch.Tensor,
    depth_pred: torch.Tensor,
) -> torch.Tensor:
    """Rows of samples, five columns: RGB [N,3,H,W] in [0,1] and four [N,1,H,W] maps in [0,1] → [3, N·H, 5·W]."""
    grey = [t.clamp(0, 1).expand(-1, 3, -1, -1) for t in (mask, mask_prob, depth, depth_pred)]
    rows = torch.cat([fg_bg.clamp(0, 1), *grey], dim=3)  # [N, 3, H, 5W]
    return torch.cat(list(rows), dim=1)


@torch.no_grad()
def sample_grid(module: torch.nn.Module, dataset, count: int) -> torch.Tensor:
    """`make_grid` of the model's predictions on `count` evenly spaced samples of `dataset` (a MaskDepthDataset)."""
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).long().tolist()
    batch = default_collate([dataset[i] for i in picks])
    device = next(module.parameters()).device
    out = module(batch["bg"].to(device), batch["fg_bg"].to(device))
    return make_grid(
        dataset.denormalise(batch["fg_bg"]),
        batch["mask"],
        torch.sigmoid(out["mask"].float()).cpu(),
        batch["depth"],
        out["depth"].float().cpu(),
    )


class ImageGrid(pl.Callback):
    """Logs `val/images` to TensorBoard: the same `num_samples` validation samples every epoch."""

    def __init__(self, num_samples: int = 6) -> None:
        self.num_samples = num_samples

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not loggers or not trainer.is_global_zero:
            return
        grid = sample_grid(pl_module, trainer.val_dataloaders.dataset, self.num_samples)
        for logger in loggers:
            logger.experiment.add_image("val/images", grid, trainer.global_step, dataformats="CHW")

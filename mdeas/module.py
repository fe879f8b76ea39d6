"""The LightningModule: one model, one loss group, mask and depth metrics, optimiser and schedule from config."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from mdeas.metrics.classes import DepthMetrics, MaskMetrics
from mdeas.models.refiner import RefinedNet
from mdeas.plain import plain
from mdeas.schedules import lr_scheduler_config

log = logging.getLogger(__name__)


def depth_alignment(unit: str = "mm", inverted: bool = False) -> str:
    """The space in which DepthMetrics fits its per-image scale and shift, from the dataset's depth encoding.

    Metric units: ``"depth"``. Relative depth is known up to an affine map of its inverse (disparity): stored as
    depth (not `inverted`) it is fitted in ``"inverse"`` space; stored inverse-like (`inverted`, the seeds' DenseDepth
    grey, near = bright) normalised depth ``1 - value / max`` is already affine in the stored value, so the fit in
    ``"depth"`` space is that disparity fit.
    """
    return "inverse" if unit == "relative" and not inverted else "depth"


NO_DEPTH_LEARNT = "no depth loss term of weight > 0, or data without depth"  # why `learns_depth` is false


class NonFiniteLossError(FloatingPointError):
    """A training loss that is NaN or infinite; the message names the step, the terms and the batch's samples."""


def selection_score(values: dict[str, torch.Tensor], relative: bool = False) -> torch.Tensor:
    """The one number that ranks sweep jobs (and picks `best.ckpt` with `callbacks.model_checkpoint.monitor=val/score`;
    by default it is the last epoch): (mask IoU + depth δ1) / 2, or mask IoU alone
    when no pixel had known depth (`values` as computed: `mask/iou`, `depth/delta1`, `depth/delta1_ssi`,
    `depth/count`). For `relative` depth (known up to scale and shift, so a plain δ1 means nothing) δ1 after the
    per-image scale-and-shift fit, `depth/delta1_ssi`."""
    iou = values["mask/iou"]
    if float(values.get("depth/count", 0)) == 0:
        return iou
    delta1 = values["depth/delta1_ssi" if relative else "depth/delta1"]
    return (iou + torch.as_tensor(delta1).to(iou.dtype)) / 2


class MaskDepthModule(pl.LightningModule):
    """Trains `model(bg, fg_bg) -> {"mask", "depth"}` on `loss(outputs, batch)`.

    `model`, `loss`, `optim` and `sched` are Hydra configs (stored in the checkpoint, so the module can be rebuilt
    from it alone); `depth_max_m` is the depth (metres) that normalised depth 1.0 stands for, used by metrics (1.0 for
    relative depth, where the unit is the encoding's range). `learns_depth`: whether the depth head is trained, by a
    depth term of weight > 0 on data with depth (`data["depth_known"]`, taken as true where not recorded); where it is
    not, depth is not scored and `score` is the mask IoU.
    """

    def __init__(
        self,
        model: dict,
        loss: dict,
        optim: dict,
        sched: dict | None = None,
        depth_max_m: float = 20.0,
        data: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "model": plain(model),
                "loss": plain(loss),
                "optim": plain(optim),
                "sched": plain(sched),
                "depth_max_m": depth_max_m,
                "data": plain(data),
            }
        )
        self.model = instantiate(self.hparams.model)
        self.loss = instantiate(self.hparams.loss)
        coarse = [t.name for t in self.loss.terms if t.target == "mask_coarse"]
        if coarse and not isinstance(self.model, RefinedNet):
            raise ValueError(
                f"loss.terms.{coarse[0]}: target mask_coarse is the base's mask of a refined model "
                f"(model=resunet_detail, or +model/refiner=patch); model {self.hparams.model.get('name')!r} has none"
            )
        self.learns_depth = self.loss.trains("depth") and bool((self.hparams.data or {}).get("depth_known", True))
        self.mask_metrics = torch.nn.ModuleDict({s: MaskMetrics() for s in ("val", "test")})
        encoding = (self.hparams.data or {}).get("depth") or {}
        self.depth_relative = encoding.get("unit") == "relative"
        align = depth_alignment(encoding.get("unit", "mm"), encoding.get("inverted", False))
        self.depth_metrics = torch.nn.ModuleDict(
            {s: DepthMetrics(scale=depth_max_m, align=align) for s in ("val", "test")}
        )

    channels_last = False

    def set_memory_format(self, channels_last: bool = False, compile: bool = False) -> None:
        """Run the model channels-last (inputs converted in forward) and/or compiled (weights' names unchanged)."""
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile()

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised bg, fg_bg float [B, 3, H, W] → the model's outputs: "mask" logits and "depth" [B, 1, H, W]
        (and a refined model's "mask_coarse")."""
        if self.channels_last:
            bg, fg_bg = (x.contiguous(memory_format=torch.channels_last) for x in (bg, fg_bg))
        return self.model(bg, fg_bg)

    def _loss(self, batch: dict, stage: str) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        outputs = self(batch["bg"], batch["fg_bg"])
        total, terms = self.loss(outputs, batch)
        if stage == "train" and not torch.isfinite(total):
            return self._nonfinite(batch, total, terms), outputs
        size = batch["bg"].shape[0]
        on_step = stage == "train"
        sync = stage != "train"  # val/loss may drive a schedule (sched=plateau) or a sweep: one value on every process
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=size, on_step=on_step, on_epoch=True, sync_dist=sync)
        # each term as `<stage>/loss/<name>`, its epoch mean: one card per term (the total's step curve shows steps)
        per_term = {f"{stage}/loss/{k}": v for k, v in terms.items()}
        self.log_dict(per_term, batch_size=size, on_step=False, on_epoch=True, sync_dist=sync)
        return total, outputs

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        """The loss of the batch; None (Lightning skips the batch) for a non-finite loss with `skip_nonfinite`."""
        return self._loss(batch, "train")[0]

    skip_nonfinite = False  # True: leave out batches whose loss is NaN or infinite (counted, not raised)

    def _nonfinite(self, batch: dict, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Raise NonFiniteLossError naming the step, the non-finite terms, the inputs holding NaN or inf and the
        samples; with `skip_nonfinite`, log that instead and count the batch in `train/skipped_nonfinite`."""
        bad = [f"{name}={value.item():g}" for name, value in terms.items() if not torch.isfinite(value)]
        inputs = [
            k for k, x in batch.items() if torch.is_tensor(x) and x.is_floating_point() and not x.isfinite().all()
        ]
        ids = [str(i) for i in batch.get("id", [])]
        message = f"non-finite loss at step {self.global_step}: {', '.join(bad) or f'total={total.item():g}'}"
        if inputs:
            message += f"; non-finite values in the batch's {', '.join(inputs)}"
        message += f" (batch ids: {', '.join(ids[:8])}{', ...' if len(ids) > 8 else ''})"
        if not self.skip_nonfinite:
            raise NonFiniteLossError(f"{message}; skip such batches with skip_nonfinite=true")
        log.warning("skipped a batch: %s", message)
        self.log("train/skipped_nonfinite", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1)

    def _evaluate(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        _, outputs = self._loss(batch, stage)
        self.mask_metrics[stage].update(outputs["mask"], batch["mask"])
        if self.learns_depth:
            self.depth_metrics[stage].update(outputs["depth"], batch["depth"], batch["valid"])
        return outputs

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """The model's outputs on the batch, for callbacks (image panels, PR curves)."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        """Log `<stage>/mask/*`, `<stage>/depth/*` (none where no pixel had a known depth, or the model learns no
        depth: `learns_depth`) and `<stage>/score` (see `selection_score`), then reset."""
        mask = self.mask_metrics[stage]
        with mask.sync_context():  # every process's counts
            if int(mask.tp.sum() + mask.fp.sum() + mask.fn.sum() + mask.tn.sum()) == 0:
                raise ValueError(f"{stage}: no sample to score; every one was left out (data.on_error=skip)")
        values = {"depth/count": torch.zeros(())}  # what a model that learns no depth leaves it (`learns_depth`)
        for task, metric in (("mask", mask), *([("depth", self.depth_metrics[stage])] if self.learns_depth else [])):
            values |= {f"{task}/{k}": v for k, v in metric.compute().items()}
            metric.reset()
        unscored = ("depth/",) if float(values["depth/count"]) == 0 else ("depth/count", "depth/images")
        logged = {f"{stage}/{k}": v.float() for k, v in values.items() if not k.startswith(unscored)}
        logged[f"{stage}/score"] = selection_score(values, self.depth_relative).float()
        self.log_dict(logged, prog_bar=False, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self) -> Any:
        """The optimiser of ``optim`` and, with a ``sched``, its scheduler (``auto`` arguments from the trainer)."""
        try:
            optimizer = instantiate(self.hparams.optim, _convert_="all")(params=self.parameters())
        except TypeError as e:  # a misspelt option added with +optim.<key>=...
            raise ValueError(f"optim: {e}") from None
        if not self.hparams.sched:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": lr_scheduler_config(self.hparams.sched, optimizer, self.trainer),
        }

"""torchmetrics ``Metric`` classes for masks and depth, synced across DDP processes by summing their states.

``MaskMetrics`` is torchmetrics' ``BinaryStatScores`` (int64 pixel counts); ``DepthMetrics`` accumulates float64
sums. Both finish with the functional formulas, so ``compute()`` after several ``update`` calls equals the
functional form on the concatenated data. Averaging is per pixel (micro) over the whole epoch, not a mean of
per-batch values; ``DepthMetrics``' aligned metrics and SILog alone are per image, then averaged over images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryStatScores

from mdeas.metrics.functional import (
    ALIGN_SPACES,
    DEPTH_SUM_KEYS,
    IMAGE_SUM_KEYS,
    MASK_IGNORE,
    SILOG_LAMBDA,
    depth_image_sums,
    depth_sums,
    finalize_depth,
    finalize_depth_images,
    finalize_mask,
    mask_labels,
)


def _zero() -> Tensor:
    return torch.zeros((), dtype=torch.float64)


class MaskMetrics(BinaryStatScores):
    """Thresholded IoU, Dice, accuracy, precision, recall of ``[B,1,H,W]`` mask logits (or probabilities).

    The pixel counts are ``BinaryStatScores``'s global ``tp, fp, tn, fn`` states (int64, summed across
    processes), fed the labels of :func:`mdeas.metrics.functional.mask_labels`. ``compute()`` returns float64
    scalars under keys ``iou, dice, accuracy, precision, recall`` from the counts summed over every update (see
    :func:`mdeas.metrics.functional.finalize_mask` for 0/0 cases).
    """

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(
            threshold=float(threshold),
            multidim_average="global",
            ignore_index=MASK_IGNORE,
            validate_args=False,
            **kwargs,
        )
        self.from_logits = bool(from_logits)

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add the counts of a ``[B,1,H,W]`` prediction against a ``[B,1,H,W]`` {0,1} target over ``valid``."""
        super().update(*mask_labels(pred, target, self.threshold, self.from_logits, valid))

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset."""
        return finalize_mask(*(state.reshape(()) for state in (self.tp, self.fp, self.fn, self.tn)))


class DepthMetrics(Metric):
    """Depth metrics in ``scale`` units over valid pixels: pooled over pixels, and per image then over images.

    ``compute()`` returns float64 scalars. Pooled over every valid pixel seen (keys ``rmse, abs_rel, sq_rel,
    rmse_log, log10, delta1, delta2, delta3, ssim, count``): RMSE = sqrt(total squared error / total count), the
    means are total sums / total count, SSIM is the summed per-pixel SSIM map (each batch's map computed on that
    batch) over the total count. Per image, averaged over the images with valid pixels (keys ``delta1_median,
    abs_rel_median, delta1_ssi, abs_rel_ssi, silog, images``): the prediction scaled by median(gt) / median(pred),
    or fitted by least-squares scale and shift in ``align`` space (``"depth"``; ``"inverse"``: disparity, for
    relative depth known only up to an affine map of its inverse), and SILog with ``silog_lambda``
    (:mod:`mdeas.metrics.functional`). With ``count == 0`` (``images == 0``) those metrics are 0; skip them by it.
    ``pred_scale``: what normalised prediction 1.0 stands for when it differs from the target's ``scale`` (a model
    trained on a set of another depth range than the one it is scored on); default ``scale``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        scale: float = 1.0,
        eps: float = 1e-3,
        align: str = "depth",
        silog_lambda: float = SILOG_LAMBDA,
        pred_scale: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if align not in ALIGN_SPACES:
            raise ValueError(f"align must be one of {ALIGN_SPACES}, got {align!r}")
        self.scale = float(scale)
        self.pred_factor = 1.0 if pred_scale is None else float(pred_scale) / self.scale
        self.eps = float(eps)
        self.align = align
        self.silog_lambda = float(silog_lambda)
        for key in (*DEPTH_SUM_KEYS, *IMAGE_SUM_KEYS):
            self.add_state(f"sum_{key}", default=_zero(), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add the sums of a ``[B,1,H,W]`` normalised prediction against the target over ``valid`` pixels."""
        # in the training set's range first, as predict writes it (a test set with a farther max cannot rescue it)
        pred = pred.clamp(0.0, 1.0) * self.pred_factor if self.pred_factor != 1.0 else pred
        sums = depth_sums(pred, target, valid, self.scale, self.eps)
        sums |= depth_image_sums(pred, target, valid, self.scale, self.eps, self.align, self.silog_lambda)
        for key, value in sums.items():
            name = f"sum_{key}"
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset."""
        pooled = finalize_depth({key: getattr(self, f"sum_{key}") for key in DEPTH_SUM_KEYS})
        return pooled | finalize_depth_images({key: getattr(self, f"sum_{key}") for key in IMAGE_SUM_KEYS})

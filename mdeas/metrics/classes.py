"""torchmetrics ``Metric`` classes for masks and depth, synced across DDP processes by summing their states.

``MaskMetrics`` is torchmetrics' ``BinaryStatScores`` (int64 pixel counts); ``DepthMetrics`` accumulates float64
sums. Both finish with the functional formulas, so ``compute()`` after several ``update`` calls equals the
functional form on the concatenated data. Averaging is per pixel (micro) over the whole epoch, not a mean of
per-image or per-batch values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryStatScores

from mdeas.metrics.functional import (
    DEPTH_SUM_KEYS,
    MASK_IGNORE,
    depth_sums,
    finalize_depth,
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
    """Depth RMSE, AbsRel, SqRel, RMSE-log, log10, delta1-3 and SSIM, in ``scale`` units, over valid pixels.

    ``compute()`` returns float64 scalars under keys ``rmse, abs_rel, sq_rel, rmse_log, log10, delta1,
    delta2, delta3, ssim, count`` over every valid pixel seen: RMSE = sqrt(total squared error / total
    count), the means are total sums / total count, SSIM is the summed per-pixel SSIM map (each batch's map
    computed on that batch) over the total count. With ``count == 0`` every metric is 0; skip it by ``count``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, scale: float = 1.0, eps: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.eps = float(eps)
        for key in DEPTH_SUM_KEYS:
            self.add_state(f"sum_{key}", default=_zero(), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add the sums of a ``[B,1,H,W]`` normalised prediction against the target over ``valid`` pixels."""
        sums = depth_sums(pred, target, valid, self.scale, self.eps)
        for key in DEPTH_SUM_KEYS:
            name = f"sum_{key}"
            setattr(self, name, getattr(self, name) + sums[key])

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset."""
        return finalize_depth({key: getattr(self, f"sum_{key}") for key in DEPTH_SUM_KEYS})

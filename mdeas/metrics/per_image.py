"""Mask scores per image, then averaged over images: IoU and the boundary F-score.

Pooled IoU (``MaskMetrics``) weighs large objects more; the per-image mean weighs every image alike, and the
boundary F-score looks only at the outline, where a mask upsampled from a small model goes wrong first. It follows
Perazzi et al. (DAVIS 2016) with a stricter match: within round(0.0075 × diagonal) px (at least 1) in a square
neighbourhood, where DAVIS's code takes ceil(0.008 × diagonal) px in a disk (2 px against 3 at 224 × 224), so its
values are comparable between mdeas runs, not with DAVIS tables.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from mdeas.metrics.functional import mask_labels
from mdeas.metrics.morphology import dilate, erode

BOUNDARY_TOLERANCE = 0.0075  # share of the image diagonal within which a boundary pixel counts as matched


def boundary_tolerance(height: int, width: int) -> int:
    """The boundary matching distance in pixels for an image of that size: at least 1."""
    return max(1, round(BOUNDARY_TOLERANCE * math.hypot(height, width)))


def boundary(mask: Tensor) -> Tensor:
    """The pixels of bool [B,1,H,W] `mask` with one of their 8 neighbours outside it (beyond the border counts as
    inside)."""
    return mask & (erode(mask.float(), 1) < 1)


def boundary_f_score(pred: Tensor, target: Tensor, tolerance: int | None = None) -> Tensor:
    """Per-image boundary F-score of bool [B,1,H,W] masks → float64 [B] in [0, 1].

    Precision: the share of predicted boundary pixels within `tolerance` px (default `boundary_tolerance`) of a
    true boundary pixel; recall the reverse; F = 2PR / (P + R). One boundary empty scores 0; both empty (each mask
    empty or the whole image) 1 if the masks agree, else 0.
    """
    radius = boundary_tolerance(*pred.shape[-2:]) if tolerance is None else tolerance
    pb, tb = boundary(pred), boundary(target)
    n_pred, n_true = pb.flatten(1).sum(1).double(), tb.flatten(1).sum(1).double()
    precision = (pb & (dilate(tb.float(), radius) > 0)).flatten(1).sum(1).double() / n_pred.clamp(min=1)
    recall = (tb & (dilate(pb.float(), radius) > 0)).flatten(1).sum(1).double() / n_true.clamp(min=1)
    f = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    both_empty = (n_pred == 0) & (n_true == 0)
    agree = (pred == target).flatten(1).all(1).double()
    return torch.where(both_empty, agree, f)


def intersection_union(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel counts per row of bool [N, ...] masks: (intersection, union), float64 [N] each."""
    return (pred & target).flatten(1).sum(1).double(), (pred | target).flatten(1).sum(1).double()


def iou(intersection: Tensor, union: Tensor) -> Tensor:
    """IoU from pixel counts (any shape); an empty union (both masks empty) scores 1."""
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def iou_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image IoU of bool [B,1,H,W] masks → float64 [B]; an empty mask predicted empty scores 1."""
    return iou(*intersection_union(pred, target))


class PerImageMaskMetrics(Metric):
    """Mean over images of IoU (``iou_per_image``) and boundary F-score (``boundary_f``) of thresholded masks.

    ``update(pred, target)``: pred [B,1,H,W] logits (or probabilities with ``from_logits=False``), target
    [B,1,H,W] in {0, 1}; images of different sizes may come in different updates. States are sums and a count,
    summed across DDP processes.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    iou: Tensor
    boundary_f: Tensor
    images: Tensor

    def __init__(self, threshold: float = 0.5, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold, self.from_logits = float(threshold), bool(from_logits)
        for name in ("iou", "boundary_f", "images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the images of a batch: `pred` mask logits (or probabilities) and `target` {0, 1}, [B, 1, H, W]."""
        hard, truth = (labels.bool() for labels in mask_labels(pred, target, self.threshold, self.from_logits))
        self.iou += iou_per_image(hard, truth).sum()
        self.boundary_f += boundary_f_score(hard, truth).sum()
        self.images += hard.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """{"iou_per_image", "boundary_f"}: the means over the images added (0 before any)."""
        count = self.images.clamp(min=1)
        return {"iou_per_image": self.iou / count, "boundary_f": self.boundary_f / count}

"""Precision-recall curves from counts at fixed thresholds, summed over batches (TensorBoard's PR-curve layout).

Threshold ``i`` of ``T`` is ``i / (T - 1)`` over [0, 1]; a score counts as positive at threshold ``i`` when
``floor(score · (T - 1)) >= i``, the bucketing of ``tensorboard.plugins.pr_curve``. Counts add across batches (and
across processes), so a curve over a whole split costs O(pixels) and ``2·T`` integers of state.
"""

from __future__ import annotations

import torch
from torch import Tensor


def threshold_counts(scores: Tensor, labels: Tensor, num_thresholds: int) -> tuple[Tensor, Tensor]:
    """True and false positive counts at each threshold: `scores` in [0, 1] (NaN counts as 0) and `labels` (true =
    positive) of one shape → (tp, fp), int64 [num_thresholds] each, on the scores' device."""
    buckets = (scores.detach().float().nan_to_num(0.0).clamp(0, 1) * (num_thresholds - 1)).long().flatten()
    positive = labels.flatten().bool()
    tp = torch.bincount(buckets[positive], minlength=num_thresholds)
    fp = torch.bincount(buckets[~positive], minlength=num_thresholds)
    return tp.flip(0).cumsum(0).flip(0), fp.flip(0).cumsum(0).flip(0)


def precision_recall(tp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    """Precision and recall (float64 [T]) of the counts of `threshold_counts` summed over a split; precision is 1
    where nothing is predicted positive, recall 0 where there is no positive pixel."""
    tp, fp = tp.double(), fp.double()
    predicted = tp + fp
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.ones_like(tp))
    recall = tp / tp[0].clamp(min=1)
    return precision, recall

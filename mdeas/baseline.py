"""Baselines beside every model.

Mask: foreground = pixels where |fg_bg − bg| (mean over RGB, in [0, 1]) exceeds a threshold. Depth: predictors that
see no image, fitted on training data: one constant (the median valid depth) and one map (the per-pixel mean).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mdeas.metrics.classes import DepthMetrics, MaskMetrics
from mdeas.metrics.functional import known_depth
from mdeas.metrics.per_image import intersection_union, iou

THRESHOLDS = torch.linspace(0.01, 0.5, 50)


def difference(bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1], [B, 3, H, W] → mean absolute difference [B, 1, H, W] in [0, 1]."""
    return (fg_bg - bg).abs().mean(dim=1, keepdim=True)


def _differences(
    batches: Iterable[dict], denormalise: Callable[[torch.Tensor], torch.Tensor]
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for batch in batches:
        yield difference(denormalise(batch["bg"]), denormalise(batch["fg_bg"])), batch["mask"]


def fit_threshold(batches: Iterable[dict], denormalise: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """The threshold of THRESHOLDS with the best IoU over `batches` (validation data)."""
    inter = torch.zeros(len(THRESHOLDS), dtype=torch.float64)
    union = torch.zeros(len(THRESHOLDS), dtype=torch.float64)
    for diff, mask in _differences(batches, denormalise):
        counts = intersection_union(diff[None] > THRESHOLDS.view(-1, 1, 1, 1, 1), mask[None] > 0.5)
        inter += counts[0]
        union += counts[1]
    return float(THRESHOLDS[int(iou(inter, union).argmax())])


def score(
    batches: Iterable[dict], denormalise: Callable[[torch.Tensor], torch.Tensor], threshold: float
) -> dict[str, float]:
    """Mask metrics of the thresholded difference over `batches`."""
    metric = MaskMetrics(threshold=0.5, from_logits=False)
    for diff, mask in _differences(batches, denormalise):
        metric.update((diff > threshold).float(), mask)
    return {k: float(v) for k, v in metric.compute().items()}


MEDIAN_BINS = 1 << 16
"""Histogram bins over normalised depth [0, 1] used to find the median without keeping every pixel."""


@dataclass(frozen=True)
class DepthBaselines:
    """Depth predictors fitted on one split: `constant` its median valid depth (normalised, one number) and
    `mean_map` its per-pixel mean valid depth, float32 [1, 1, S, S] (normalised; the median where no image had a
    valid pixel)."""

    constant: float
    mean_map: torch.Tensor

    def predict(self, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each predictor's [B, 1, S, S] prediction for a batch whose depth is `depth` [B, 1, S, S]."""
        return {"constant": torch.full_like(depth, self.constant), "mean_map": self.mean_map.expand_as(depth)}


def fit_depth_baselines(maps: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> DepthBaselines | None:
    """Fit both predictors on `maps`: (depth, valid) pairs of one size, normalised depth [S, S] in [0, 1] and bool
    [S, S]; pixels count where valid and depth > 0. None when no pixel counts.

    The median is found from a histogram of MEDIAN_BINS bins over [0, 1] that keeps each bin's count and sum: the
    lower and upper middle values are the means of the bins they fall in. That is exact when no two different values
    share a bin (the levels of a stored 16-bit or 8-bit map are at least 1/65535 apart), and within 2^-16 otherwise.
    """
    counts = torch.zeros(MEDIAN_BINS, dtype=torch.float64)
    sums = torch.zeros(MEDIAN_BINS, dtype=torch.float64)
    total: torch.Tensor | None = None
    seen: torch.Tensor | None = None
    for depth, valid in maps:
        d = depth.to(torch.float64).reshape(depth.shape[-2:])
        known = known_depth(d, valid.reshape(d.shape))
        values = d[known]
        bins = (values * MEDIAN_BINS).long().clamp(0, MEDIAN_BINS - 1)
        counts += torch.bincount(bins, minlength=MEDIAN_BINS).to(torch.float64)
        sums += torch.bincount(bins, weights=values, minlength=MEDIAN_BINS)
        if total is None or seen is None:
            total, seen = torch.zeros_like(d), torch.zeros_like(d)
        total += torch.where(known, d, 0.0)
        seen += known
    n = int(counts.sum())
    if total is None or seen is None or n == 0:
        return None
    cumulative = counts.cumsum(0)

    def ranked(rank: int) -> torch.Tensor:  # the value of 0-based rank `rank`, from the mean of its bin
        b = torch.searchsorted(cumulative, torch.tensor([float(rank)], dtype=torch.float64), right=True)[0]
        return sums[b] / counts[b]

    median = float((ranked((n - 1) // 2) + ranked(n // 2)) / 2)
    mean_map = torch.where(seen > 0, total / seen.clamp_min(1), median)
    return DepthBaselines(median, mean_map.to(torch.float32)[None, None])


def score_depth(
    batches: Iterable[dict], baselines: DepthBaselines, scale: float, align: str
) -> dict[str, dict[str, float]]:
    """Depth metrics of each predictor of `baselines` over `batches` (batch dicts), scored as the model is: by
    DepthMetrics(scale, align=align). Returns {"constant": {"depth/<key>": value}, "mean_map": {...}}."""
    metrics = {name: DepthMetrics(scale=scale, align=align) for name in ("constant", "mean_map")}
    for batch in batches:
        for name, pred in baselines.predict(batch["depth"]).items():
            metrics[name].update(pred, batch["depth"], batch["valid"])
    return {
        name: {f"depth/{k}": float(v) for k, v in metric.compute().items() if k not in ("count", "images")}
        for name, metric in metrics.items()
    }

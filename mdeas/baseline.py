"""The classical baseline: foreground = pixels where |fg_bg − bg| (mean over RGB, in [0, 1]) exceeds a threshold."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from mdeas.metrics.classes import MaskMetrics

THRESHOLDS = torch.linspace(0.01, 0.5, 50)


def difference(bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1], [B, 3, H, W] → mean absolute difference [B, 1, H, W] in [0, 1]."""
    return (fg_bg - bg).abs().mean(dim=1, keepdim=True)


def _differences(batches: Iterable[dict], denormalise: Callable) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for batch in batches:
        yield difference(denormalise(batch["bg"]), denormalise(batch["fg_bg"])), batch["mask"]


def fit_threshold(batches: Iterable[dict], denormalise: Callable) -> float:
    """The threshold of THRESHOLDS with the best IoU over `batches` (validation data)."""
    inter = torch.zeros(len(THRESHOLDS), dtype=torch.float64)
    union = torch.zeros(len(THRESHOLDS), dtype=torch.float64)
    for diff, mask in _differences(batches, denormalise):
        pred = diff[None] > THRESHOLDS.view(-1, 1, 1, 1, 1)
        target = mask[None] > 0.5
        inter += (pred & target).flatten(1).sum(1).double()
        union += (pred | target).flatten(1).sum(1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return float(THRESHOLDS[int(iou.argmax())])


def score(batches: Iterable[dict], denormalise: Callable, threshold: float) -> dict[str, float]:
    """Mask metrics of the thresholded difference over `batches`."""
    metric = MaskMetrics(threshold=0.5, from_logits=False)
    for diff, mask in _differences(batches, denormalise):
        metric.update((diff > threshold).float(), mask)
    return {k: float(v) for k, v in metric.compute().items()}

"""Mask and depth metrics: pure functions (:mod:`.functional`) and DDP-synced torchmetrics classes."""

from mdeas.metrics.classes import DepthMetrics, MaskMetrics
from mdeas.metrics.functional import (
    depth_metrics,
    depth_sums,
    finalize_depth,
    finalize_mask,
    mask_confusion,
    mask_labels,
    mask_metrics,
    ssim_map,
)

__all__ = [
    "DepthMetrics",
    "MaskMetrics",
    "depth_metrics",
    "depth_sums",
    "finalize_depth",
    "finalize_mask",
    "mask_confusion",
    "mask_labels",
    "mask_metrics",
    "ssim_map",
]

"""Mask and depth metrics: pure functions (:mod:`.functional`) and DDP-synced torchmetrics classes."""

from mdeas.metrics.classes import DepthMetrics, MaskMetrics
from mdeas.metrics.functional import (
    depth_image_metrics,
    depth_image_sums,
    depth_metrics,
    depth_per_image,
    depth_sums,
    finalize_depth,
    finalize_depth_images,
    finalize_mask,
    mask_confusion,
    mask_labels,
    mask_metrics,
    median_align,
    scale_shift_align,
    silog_per_image,
    ssim_map,
)

__all__ = [
    "DepthMetrics",
    "MaskMetrics",
    "depth_image_metrics",
    "depth_image_sums",
    "depth_metrics",
    "depth_per_image",
    "depth_sums",
    "finalize_depth",
    "finalize_depth_images",
    "finalize_mask",
    "mask_confusion",
    "mask_labels",
    "mask_metrics",
    "median_align",
    "scale_shift_align",
    "silog_per_image",
    "ssim_map",
]

"""Binary morphology of masks by max-pooling over a (2·px + 1)² square; beyond the image border is ignored (a
dilation grows nothing in from outside, an erosion eats nothing in from outside)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """float [B, C, H, W] in {0, 1} → its dilation, float of the same shape: each pixel's square's maximum."""
    return F.max_pool2d(mask, 2 * px + 1, stride=1, padding=px)


def erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    """float [B, C, H, W] in {0, 1} → its erosion, float of the same shape: each pixel's square's minimum."""
    return -F.max_pool2d(-mask, 2 * px + 1, stride=1, padding=px)


def outline_band(mask: torch.Tensor, px: int) -> torch.Tensor:
    """float [B, C, H, W] in {0, 1} → bool of the same shape: the pixels within `px` of the outline, whose
    (2·px + 1)² square holds both values."""
    return dilate(mask, px) > erode(mask, px)

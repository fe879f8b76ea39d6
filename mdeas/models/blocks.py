"""Shared convolution blocks. All blocks keep [B, C, H, W] layout; shapes are given per block."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv k×k (no bias) → BatchNorm → ReLU: [B, in, H, W] → [B, out, H/stride, W/stride]."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class PointwiseReLUBN(nn.Sequential):
    """1×1 conv (with bias) → ReLU → BatchNorm: [B, in, H, W] → [B, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch))


class SeparableConv(nn.Sequential):
    """Depthwise 3×3 (dilated) → pointwise 1×1 → ReLU → BatchNorm, both convs with bias.

    [B, in, H, W] → [B, out, H, W]; padding equals the dilation so the size is kept.
    """

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch),
            nn.Conv2d(in_ch, out_ch, 1),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_ch),
        )


class DenseBlock(nn.Module):
    """Three separable convs with additive dense links, then a 1×1 projection.

    x1 = f1(x), x2 = f2(x + x1), x3 = f3(x + x1 + x2), out = proj(x + x1 + x2 + x3).
    [B, in, H, W] → [B, out, H, W].
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(in_ch, in_ch) for _ in range(3))
        self.proj = PointwiseReLUBN(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        for conv in self.convs:
            total = total + conv(total)
        return self.proj(total)


class DilatedContext(nn.Module):
    """Parallel dilated separable convs on a reduced input, concatenated.

    [B, in, H, W] → 1×1 to `width` → one separable conv per dilation → concat [B, width·len(dilations), H, W].
    """

    def __init__(self, in_ch: int, width: int, dilations: tuple[int, ...] = (1, 3, 6, 9)) -> None:
        super().__init__()
        self.reduce = PointwiseReLUBN(in_ch, width)
        self.branches = nn.ModuleList(SeparableConv(width, width, d) for d in dilations)
        self.out_channels = width * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def upsample(kind: str, channels: int) -> tuple[nn.Module, int]:
    """×2 upsampling layer by name and its output channels: "nearest", "bilinear" or "pixel_shuffle" (C → C/4)."""
    if kind == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest"), channels
    if kind == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), channels
    if kind == "pixel_shuffle":
        if channels % 4:
            raise ValueError(f"pixel_shuffle needs channels divisible by 4, got {channels}")
        return nn.PixelShuffle(2), channels // 4
    raise ValueError(f"unknown upsampling {kind!r}; choose nearest, bilinear or pixel_shuffle")

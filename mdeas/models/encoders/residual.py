"""Residual UNet encoder (seed 000): residual double-conv stages with max-pool between, a double-conv bottom."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import DoubleConv, residual_double_conv
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS


@ENCODERS.register("residual")
class ResidualEncoder(StageEncoder):
    """[B, in, H, W] → features [B, widths[i], H/2^i, W/2^i] (pre-pool, for skips), then [B, bottom, H/2^n, W/2^n]."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (32, 64, 128, 256), bottom: int = 512) -> None:
        chans = (in_channels, *widths)
        stages = [
            residual_double_conv(a, b) if i == 0 else nn.Sequential(nn.MaxPool2d(2), residual_double_conv(a, b))
            for i, (a, b) in enumerate(zip(chans, chans[1:], strict=False))
        ]
        stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[-1], bottom)))
        super().__init__(stages, [*widths, bottom], [2**i for i in range(len(widths) + 1)])

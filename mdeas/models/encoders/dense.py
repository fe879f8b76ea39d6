"""Encoder of dense blocks, each followed by a 2×2 max-pool (seed 002)."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import DenseBlock
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS


@ENCODERS.register("dense")
class DenseEncoder(StageEncoder):
    """[B, in, H, W] → one feature per stage: [B, channels[i], H/2^(i+1), W/2^(i+1)]."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (128, 256, 256)) -> None:
        widths = (in_channels, *channels)
        super().__init__(
            [nn.Sequential(DenseBlock(a, b), nn.MaxPool2d(2)) for a, b in zip(widths, widths[1:], strict=False)],
            channels,
            [2 ** (i + 1) for i in range(len(channels))],
        )

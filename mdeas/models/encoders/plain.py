"""Plain encoder (seed 004's depth net): a double-conv stem, then stages of two conv-ReLU, optionally pooled."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import DoubleConv, conv_relu_pair
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS


@ENCODERS.register("plain")
class PlainEncoder(StageEncoder):
    """[B, in, H, W] → [B, stem, H, W], then [B, widths[i], H/f_i, W/f_i] with f_i = 2^(i+1) if `pool` else 1."""

    def __init__(
        self,
        in_channels: int,
        stem_channels: int = 16,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        pool: bool = True,
    ) -> None:
        chans = (stem_channels, *widths)
        stages = [DoubleConv(in_channels, stem_channels)]
        stages += [
            nn.Sequential(nn.MaxPool2d(2), conv_relu_pair(a, b)) if pool else conv_relu_pair(a, b)
            for a, b in zip(chans, chans[1:], strict=False)
        ]
        super().__init__(stages, chans, [2**i if pool else 1 for i in range(len(chans))])

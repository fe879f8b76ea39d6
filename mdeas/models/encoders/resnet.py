"""ResNet encoder: stages of basic blocks, the first block of a stage carrying its stride."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import basic_block
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS


@ENCODERS.register("resnet")
class ResNetEncoder(StageEncoder):
    """[B, in, H, W] → one feature per stage: [B, widths[i], H/s_i, W/s_i], s_i the product of strides[:i+1]."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        depths: tuple[int, ...] = (1, 2, 2, 2),
        strides: tuple[int, ...] = (1, 2, 2, 2),
    ) -> None:
        stages, total, totals, ch = [], 1, [], in_channels
        for width, depth, stride in zip(widths, depths, strides, strict=True):
            blocks = [basic_block(ch if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            ch, total = width, total * stride
            totals.append(total)
        super().__init__(stages, widths, totals)

"""Necks: turn the deepest feature into the mask decoder's and the depth decoder's inputs.

A neck is built from the deepest feature's channels and declares `mask_channels` and `depth_channels`.
"""

from __future__ import annotations

import torch
from torch import nn

from mdeas.models.blocks import DilatedContext, PointwiseReLUBN
from mdeas.models.registry import NECKS


@NECKS.register("shared")
class SharedNeck(nn.Module):
    """No neck: both decoders read the deepest feature as it is. [B, C, h, w] → ([B, C, h, w], [B, C, h, w])."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.mask_channels = self.depth_channels = in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


@NECKS.register("dilated")
class DilatedBottleneck(nn.Module):
    """Dilated context (seed 002) split into a mask branch and a depth branch, each a 1×1 conv.

    [B, in, h, w] → ([B, mask_channels, h, w], [B, depth_channels, h, w]).
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 128,
        dilations: tuple[int, ...] = (1, 3, 6, 9),
        mask_channels: int = 128,
        depth_channels: int = 256,
    ) -> None:
        super().__init__()
        self.context = DilatedContext(in_channels, width, tuple(dilations))
        self.mask = PointwiseReLUBN(self.context.out_channels, mask_channels)
        self.depth = PointwiseReLUBN(self.context.out_channels, depth_channels)
        self.mask_channels, self.depth_channels = mask_channels, depth_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context(x)
        return self.mask(context), self.depth(context)

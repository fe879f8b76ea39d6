"""Necks: turn the deepest feature into the mask decoder's and the depth decoder's inputs."""

from __future__ import annotations

import torch
from torch import nn

from mdeas.models.blocks import DilatedContext, PointwiseReLUBN


class SharedNeck(nn.Module):
    """No neck: both decoders read the deepest feature as it is."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


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
        self.context = DilatedContext(in_channels, width, dilations)
        self.mask = PointwiseReLUBN(self.context.out_channels, mask_channels)
        self.depth = PointwiseReLUBN(self.context.out_channels, depth_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context(x)
        return self.mask(context), self.depth(context)

"""Decoder of dense blocks with ×2 upsampling and additive skips (seed 002)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mdeas.models.blocks import DenseBlock, upsampling_layer


class DenseDecoder(nn.Module):
    """Stages of DenseBlock → ×2 upsample → optional additive skip, then a 1×1 head to one channel.

    `stages` lists `(out_channels, upsampling, skip)` where `skip` indexes the fusion's feature list (or None);
    the skip must have the stage's output channels and resolution. x: [B, in, h, w] → [B, 1, h·2^n, w·2^n].
    """

    def __init__(self, in_channels: int, stages: Sequence[tuple[int, str, int | None]]) -> None:
        super().__init__()
        blocks, ch = [], in_channels
        for out_ch, kind, _ in stages:
            up, up_ch = upsampling_layer(kind, out_ch)
            blocks.append(nn.Sequential(DenseBlock(ch, out_ch), up))
            ch = up_ch
        self.blocks = nn.ModuleList(blocks)
        self.skips = [skip for _, _, skip in stages]
        self.head = nn.Conv2d(ch, 1, 1)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, self.skips, strict=True):
            x = block(x)
            if skip is not None:
                x = x + features[skip]
        return self.head(x)

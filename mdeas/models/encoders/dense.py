"""Encoder of dense blocks, each followed by a 2×2 max-pool (seed 002)."""

from __future__ import annotations

import torch
from torch import nn

from mdeas.models.blocks import DenseBlock


class DenseEncoder(nn.Module):
    """[B, in, H, W] → one feature per stage: [B, channels[i], H/2^(i+1), W/2^(i+1)]."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (128, 256, 256)) -> None:
        super().__init__()
        widths = (in_channels, *channels)
        self.stages = nn.ModuleList(
            nn.Sequential(DenseBlock(a, b), nn.MaxPool2d(2)) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.channels = list(channels)
        self.strides = [2 ** (i + 1) for i in range(len(channels))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

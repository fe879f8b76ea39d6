"""The encoder contract: stages run in order, each stage's output is one feature."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class StageEncoder(nn.Module):
    """[B, in, H, W] → [features[i]: [B, channels[i], H/strides[i], W/strides[i]]], one per stage, finest first."""

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if not len(stages) == len(channels) == len(strides):
            raise ValueError(f"{len(stages)} stages need as many channels and strides, got {channels} and {strides}")
        self.stages = nn.ModuleList(stages)
        self.channels = list(channels)
        self.strides = list(strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

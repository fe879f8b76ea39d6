"""Fusions: how bg and fg_bg meet. A fusion owns the encoder and returns the feature pyramid.

Every fusion exposes `channels` and `strides` (one entry per returned feature, finest first) so decoders can
be sized from them. Encoders are passed as factories `encoder(in_channels) -> nn.Module` whose modules expose
`channels` and `strides` relative to their own input and return a list of features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mdeas.models.blocks import ConvBNReLU

EncoderFactory = Callable[[int], nn.Module]


class EarlyConcat(nn.Module):
    """Concatenate (fg_bg, bg) into 6 channels and run one encoder on it."""

    def __init__(self, encoder: EncoderFactory) -> None:
        super().__init__()
        self.encoder = encoder(6)
        self.channels = list(self.encoder.channels)
        self.strides = list(self.encoder.strides)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(torch.cat([fg_bg, bg], dim=1))


class DualStem(nn.Module):
    """Each input through its own stem (conv3×3 → conv3×3 stride 2), concatenated, then the encoder.

    Features: [fg_bg stem (c, /2), concatenated stems (2c, /2), *encoder features (strides ×2)].
    """

    def __init__(self, encoder: EncoderFactory, stem_channels: int = 32) -> None:
        super().__init__()
        c = stem_channels
        self.bg_stem = nn.Sequential(ConvBNReLU(3, c), ConvBNReLU(c, c, stride=2))
        self.fg_bg_stem = nn.Sequential(ConvBNReLU(3, c), ConvBNReLU(c, c, stride=2))
        self.encoder = encoder(2 * c)
        self.channels = [c, 2 * c, *self.encoder.channels]
        self.strides = [2, 2, *(2 * s for s in self.encoder.strides)]

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> list[torch.Tensor]:
        fg_bg_feat = self.fg_bg_stem(fg_bg)
        stem = torch.cat([self.bg_stem(bg), fg_bg_feat], dim=1)
        return [fg_bg_feat, stem, *self.encoder(stem)]

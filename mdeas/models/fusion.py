"""Fusions: how bg and fg_bg meet. A fusion owns the encoder and returns the feature pyramid.

Every fusion exposes `channels` and `strides` (one entry per returned feature, finest first) so decoders can
be sized from them. Encoders are passed as factories `encoder(in_channels) -> nn.Module` whose modules expose
`channels` and `strides` relative to their own input and return a list of features.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from mdeas.config_values import flag
from mdeas.models.blocks import Stem, conv_stem
from mdeas.models.registry import FUSIONS

EncoderFactory = Callable[[int], nn.Module]
StemFactory = Callable[[int], Stem]


@FUSIONS.register("early_concat")
class EarlyConcat(nn.Module):
    """Concatenate (fg_bg, bg) into 6 channels and run one encoder on it; with `difference`, |fg_bg − bg| as three
    more channels (9 in all): the evidence of the object, per pixel, at the input's full detail."""

    def __init__(self, encoder: EncoderFactory, difference: bool = False) -> None:
        super().__init__()
        self.difference = flag(difference, "model.difference")  # `maybe` is text, which Python takes for true
        self.encoder = encoder(9 if difference else 6)
        self.channels = list(self.encoder.channels)
        self.strides = list(self.encoder.strides)

    def forward(
        self, bg: torch.Tensor, fg_bg: torch.Tensor, difference: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """`difference` [B, 3, H, W]: the |fg_bg − bg| channels to use instead of the inputs' own (e.g. measured at
        a finer resolution, then shrunk); only with `self.difference`."""
        if not self.difference:
            return self.encoder(torch.cat([fg_bg, bg], dim=1))
        difference = (fg_bg - bg).abs() if difference is None else difference
        return self.encoder(torch.cat([fg_bg, bg, difference], dim=1))


class DualStem(nn.Module):
    """Each input through its own stem (same structure, separate weights), concatenated, then the encoder.

    Features: [fg_bg stem (c, /s), concatenated stems (2c, /s), *encoder features (strides ×s)], where c and s are
    the stem's channels and stride; without an encoder only the two stem features.
    """

    def __init__(self, encoder: EncoderFactory | None, stem: StemFactory = conv_stem) -> None:
        super().__init__()
        self.bg_stem = stem(3)
        self.fg_bg_stem = stem(3)
        c, s = self.fg_bg_stem.channels, self.fg_bg_stem.stride
        self.encoder = encoder(2 * c) if encoder is not None else None
        deeper = ([], []) if self.encoder is None else (self.encoder.channels, self.encoder.strides)
        self.channels = [c, 2 * c, *deeper[0]]
        self.strides = [s, s, *(s * t for t in deeper[1])]

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> list[torch.Tensor]:
        fg_bg_feat = self.fg_bg_stem(fg_bg)
        stem = torch.cat([self.bg_stem(bg), fg_bg_feat], dim=1)
        return [fg_bg_feat, stem, *(self.encoder(stem) if self.encoder is not None else [])]


@FUSIONS.register("dual_stem")
def dual_stem(encoder: EncoderFactory, stem_channels: int = 32) -> DualStem:
    """DualStem with the conv stem (conv3×3, conv3×3 stride 2) of `stem_channels` per input."""
    return DualStem(encoder, partial(conv_stem, channels=stem_channels))


@FUSIONS.register("siamese_diff")
class SiameseDiff(nn.Module):
    """One shared encoder on bg and on fg_bg; each feature is concat(|f(fg_bg) − f(bg)|, f(fg_bg)) (FC-Siam-diff).

    Both images go through the encoder as one batch of 2B, so BatchNorm sees both. Features have twice the
    encoder's channels at the encoder's strides.
    """

    def __init__(self, encoder: EncoderFactory) -> None:
        super().__init__()
        self.encoder = encoder(3)
        self.channels = [2 * c for c in self.encoder.channels]
        self.strides = list(self.encoder.strides)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for both in self.encoder(torch.cat([bg, fg_bg], dim=0)):
            f_bg, f_fg_bg = both.chunk(2, dim=0)
            features.append(torch.cat([(f_fg_bg - f_bg).abs(), f_fg_bg], dim=1))
        return features

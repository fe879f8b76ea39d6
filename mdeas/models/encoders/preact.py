"""Pre-activation residual encoder (seed 003): stride-2 convs between pre-activation blocks."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import preact_block
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS


@ENCODERS.register("preact")
class PreActEncoder(StageEncoder):
    """Stem conv3×3 + block at full size, then per width a stride-2 conv3×3 + block (convs bias-free).

    [B, in, H, W] → [B, stem, H, W], then [B, widths[i], H/2^(i+1), W/2^(i+1)].
    """

    def __init__(
        self, in_channels: int, stem_channels: int = 64, widths: tuple[int, ...] = (128, 128, 256, 256)
    ) -> None:
        chans = (stem_channels, *widths)
        stem = nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False)
        stages = [nn.Sequential(stem, preact_block(stem_channels, stem_channels))]
        stages += [
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), preact_block(b, b))
            for a, b in zip(chans, chans[1:], strict=False)
        ]
        super().__init__(stages, chans, [2**i for i in range(len(chans))])

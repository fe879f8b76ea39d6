"""UNet decoder: per stage an upsampling layer, a concatenated skip and a block, then a one-channel head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mdeas.models.blocks import BlockFactory, DoubleConv, separable_bn_relu, upsampling_layer
from mdeas.models.registry import DECODERS

UpFactory = Callable[[int, int], tuple[nn.Module, int]]
"""`up(in_channels, stage_width) -> (layer, out_channels)`: the layer before a stage's concat."""
HeadFactory = Callable[[int], nn.Module]
"""`head(in_channels)` → a module mapping [B, in, H, W] → [B, 1, H, W]."""


def up_layer(kind: str, to_width: bool = False, bias: bool = True) -> UpFactory:
    """×2 upsampling by `blocks.upsampling_layer` kind; a "transpose" maps to the stage width when `to_width`."""
    return lambda ch, width: upsampling_layer(kind, ch, width if to_width else None, bias)


def conv_head(kernel: int = 1, bias: bool = True) -> HeadFactory:
    """A k×k conv to one channel."""
    return lambda ch: nn.Conv2d(ch, 1, kernel, padding=kernel // 2, bias=bias)


class UNetDecoder(nn.Module):
    """[entry 1×1 conv] → per stage: up → concat skip → block → … → head.

    `stages` lists `(width, skip)`; `skip` indexes the fusion's features (their channels in `feature_channels`)
    or is None. Skips must match the stage's resolution after `up`. `up` and `block` are needed only with stages.
    x: [B, in, h, w] → [B, 1, h·f, w·f], f the total upsampling of the stages.
    """

    def __init__(
        self,
        in_channels: int,
        stages: Sequence[tuple[int, int | None]],
        feature_channels: Sequence[int],
        head: HeadFactory,
        up: UpFactory | None = None,
        block: BlockFactory | None = None,
        entry: int | None = None,
    ) -> None:
        super().__init__()
        if stages and (up is None or block is None):
            raise ValueError("a UNetDecoder with stages needs `up` and `block`")
        self.entry = nn.Conv2d(in_channels, entry, 1) if entry else nn.Identity()
        ch = entry or in_channels
        ups, blocks = [], []
        for width, skip in stages:
            layer, ch = up(ch, width)
            ups.append(layer)
            blocks.append(block(ch + (feature_channels[skip] if skip is not None else 0), width))
            ch = width
        self.ups = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)
        self.skips = [skip for _, skip in stages]
        self.head = head(ch)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.entry(x)
        for up, block, skip in zip(self.ups, self.blocks, self.skips, strict=True):
            x = up(x)
            x = block(torch.cat([x, features[skip]], dim=1) if skip is not None else x)
        return self.head(x)


def unet_stages(
    in_channels: int, strides: Sequence[int], widths: Sequence[int] | None = None
) -> list[tuple[int, int | None]]:
    """Stages `(width, skip)` from the deepest feature (stride 2^n, last in `strides`) up to stride 1.

    Each stage skips from the last feature at its stride (None if there is none); widths default to
    `in_channels` halved per stage, at least 16.
    """
    deepest = strides[-1]
    n = deepest.bit_length() - 1
    if deepest != 2**n:
        raise ValueError(f"the deepest feature's stride must be a power of 2, got {deepest}")
    if widths is not None and len(widths) != n:
        raise ValueError(f"stride {deepest} needs {n} decoder widths, got {len(widths)}: {list(widths)}")
    stages = []
    for i in range(n):
        target = deepest >> (i + 1)
        skip = max((j for j, s in enumerate(strides[:-1]) if s == target), default=None)
        stages.append((widths[i] if widths is not None else max(16, in_channels >> (i + 1)), skip))
    return stages


def _auto_unet(
    block: BlockFactory,
    in_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    widths: Sequence[int] | None,
    upsampling: str,
) -> UNetDecoder:
    stages = unet_stages(in_channels, strides, widths)
    return UNetDecoder(in_channels, stages, channels, conv_head(), up_layer(upsampling), block)


@DECODERS.register("unet")
def unet_decoder(
    in_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    widths: Sequence[int] | None = None,
    upsampling: str = "bilinear",
) -> UNetDecoder:
    """Classic UNet decoder sized from the fusion's features: ×2 upsample, concat skip, double conv; 1×1 head."""
    return _auto_unet(DoubleConv, in_channels, channels, strides, widths, upsampling)


@DECODERS.register("light")
def light_decoder(
    in_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    widths: Sequence[int] | None = None,
    upsampling: str = "bilinear",
) -> UNetDecoder:
    """Light UNet decoder: ×2 upsample, concat skip, depthwise-separable conv-BN-ReLU; 1×1 head."""
    return _auto_unet(separable_bn_relu, in_channels, channels, strides, widths, upsampling)

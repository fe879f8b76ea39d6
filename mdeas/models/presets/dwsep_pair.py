"""Seed 004: two separate full-resolution networks in one module — 492,947 (depth) + 197,558 (mask) = 690,505.

Depth net, on the 6-channel concat: double conv 6→16, then stride-1 pairs of conv3×3-ReLU to 16/32/64/128; three
stages of (transpose conv3×3 stride 1-ReLU to 64/32/16, concat skip, transpose conv3×3-ReLU), then a double conv
to 3 channels. Mask net: bg and fg_bg each through their own depthwise-separable branch (sep 3→64, sep 64→128,
residual 128, sep 128→64, sep 64→32, residual 32; ReLU after each plain separable conv), concatenated to 64, then
a bias-free conv3×3 to 3 channels. The per-layer tables fix every count.

Open details, read to keep the tables' counts: the seed predicted 3-channel (grey) images, so each net ends with
the parameter-free mean over its 3 channels; the depth decoder's skips are the 64- and 32-channel stage outputs
and the first 16-channel stage (not the stem); a residual block is sep-BN-ReLU-sep-BN plus a shortcut of two
separable convs (listed after the body in the table), ReLU after the sum.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from mdeas.models.blocks import ChannelMean, ConvReLU, DoubleConv, SeparableConv, Stem, separable_residual
from mdeas.models.decoders.unet import UNetDecoder
from mdeas.models.encoders.plain import PlainEncoder
from mdeas.models.fusion import DualStem, EarlyConcat
from mdeas.models.net import SeparateNets, TaskNet
from mdeas.models.registry import register_model

# Feature indices of EarlyConcat(PlainEncoder): 0 stem 16, 1 stage 16, 2 stage 32, 3 stage 64, 4 stage 128.
DEPTH_STAGES = [(64, 3), (32, 2), (16, 1)]


def separable_branch(in_ch: int = 3) -> Stem:
    """The mask net's per-input branch: [B, in, H, W] → [B, 32, H, W]."""

    def sep_relu(a: int, b: int) -> list[nn.Module]:
        return [SeparableConv(a, b, depthwise_bias=False, plain=True), nn.ReLU(inplace=True)]

    return Stem(
        *sep_relu(in_ch, 64),
        *sep_relu(64, 128),
        separable_residual(128),
        *sep_relu(128, 64),
        *sep_relu(64, 32),
        separable_residual(32),
        channels=32,
    )


def _transpose_relu(ch: int, width: int) -> tuple[nn.Module, int]:
    return ConvReLU(ch, width, transpose=True), width


@register_model
def dwsep_pair() -> SeparateNets:
    """Seed 004's two networks (module docstring): bg, fg_bg [B, 3, H, W] → mask logits and depth, [B, 1, H, W]."""
    depth_fusion = EarlyConcat(partial(PlainEncoder, stem_channels=16, widths=(16, 32, 64, 128), pool=False))
    depth = UNetDecoder(
        depth_fusion.channels[-1],
        DEPTH_STAGES,
        depth_fusion.channels,
        head=lambda ch: nn.Sequential(DoubleConv(ch, 3), ChannelMean()),
        up=_transpose_relu,
        block=partial(ConvReLU, transpose=True),
    )
    mask_fusion = DualStem(None, separable_branch)
    mask = UNetDecoder(
        mask_fusion.channels[-1],
        [],
        mask_fusion.channels,
        head=lambda ch: nn.Sequential(nn.Conv2d(ch, 3, 3, padding=1, bias=False), ChannelMean()),
    )
    return SeparateNets(TaskNet(mask_fusion, mask), TaskNet(depth_fusion, depth))

"""Seed 003: pre-activation residual UNet on the 6-channel concat, two transpose-conv decoders — 11,234,066 params.

Encoder: conv3×3 6→64 and a block at full size, then per width 128/128/256/256 a stride-2 conv3×3 and a block
(to /16). Block = BN-ReLU-conv3×3, BN-ReLU-conv3×3 plus a 1×1 conv shortcut. Each decoder: 4 × (transpose conv
k2 s2 to the skip's width, concat skip, block from twice the width) to 256/128/128/64, then the head.

The write-up gives only the total, so these open details are read to reproduce it exactly: no convolution has a
bias (each is preceded or followed by BatchNorm), every block's shortcut is a 1×1 projection (also when the width
is kept), and the head is BN-ReLU-conv3×3 (64→1) followed by a 3×3 conv on that single channel.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from mdeas.models.blocks import BNReLUConv, preact_block
from mdeas.models.decoders.unet import UNetDecoder, up_layer
from mdeas.models.encoders.preact import PreActEncoder
from mdeas.models.fusion import EarlyConcat
from mdeas.models.necks import SharedNeck
from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import register_model


def preact_head(channels: int) -> nn.Sequential:
    """BN-ReLU-conv3×3 to one channel, then a bias-free 3×3 conv: [B, C, H, W] → [B, 1, H, W]."""
    return nn.Sequential(BNReLUConv(channels, 1), nn.Conv2d(1, 1, 3, padding=1, bias=False))


@register_model
def resnet_unet(stem_channels: int = 64, widths: tuple[int, ...] = (128, 128, 256, 256)) -> MaskDepthNet:
    """Seed 003's model (module docstring): bg, fg_bg [B, 3, H, W] → mask logits and depth, [B, 1, H, W] each."""
    fusion = EarlyConcat(partial(PreActEncoder, stem_channels=stem_channels, widths=tuple(widths)))
    chans = fusion.channels
    stages = [(width, i) for i, width in reversed(list(enumerate(chans[:-1])))]
    up = up_layer("transpose", to_width=True, bias=False)

    def decoder() -> UNetDecoder:
        return UNetDecoder(chans[-1], stages, chans, preact_head, up, preact_block)

    return MaskDepthNet(fusion, SharedNeck(chans[-1]), decoder(), decoder())

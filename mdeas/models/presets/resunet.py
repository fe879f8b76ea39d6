"""Seed 000: residual UNet on the 6-channel concat, two bilinear UNet decoders — 11,033,922 params.

Encoder: residual double-conv stages 32/64/128/256 (double conv with biased convs + 1×1-conv-BN shortcut, ReLU,
max-pool between stages), a double conv to 512 at /16. Each decoder: 4 × (bilinear ×2, concat skip, double conv)
to 256/128/64/32, then a 1×1 conv to logits/depth. The published per-layer table fixes every detail; the skip of
each stage is the encoder output before its pooling.
"""

from __future__ import annotations

from functools import partial

from mdeas.models.blocks import DoubleConv
from mdeas.models.decoders.unet import UNetDecoder, conv_head, up_layer
from mdeas.models.encoders.residual import ResidualEncoder
from mdeas.models.fusion import EarlyConcat
from mdeas.models.necks import SharedNeck
from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import register_model


@register_model
def resunet(widths: tuple[int, ...] = (32, 64, 128, 256), bottom: int = 512, difference: bool = False) -> MaskDepthNet:
    """Residual U-Net on the early-concatenated pair: bg, fg_bg [B, 3, H, W] → mask logits and depth, [B, 1, H, W]
    each. `difference`: |fg_bg − bg| as three more input channels (EarlyConcat)."""
    fusion = EarlyConcat(partial(ResidualEncoder, widths=tuple(widths), bottom=bottom), difference)
    stages = [(width, i) for i, width in reversed(list(enumerate(widths)))]

    def decoder() -> UNetDecoder:
        return UNetDecoder(bottom, stages, fusion.channels, conv_head(1), up_layer("bilinear"), DoubleConv)

    return MaskDepthNet(fusion, SharedNeck(bottom), decoder(), decoder())

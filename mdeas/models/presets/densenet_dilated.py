"""Seed 002: dual stems, dense-block encoder, dilated bottleneck, two dense decoders — 1,521,026 params.

Open details, read so that the published per-layer table is reproduced exactly:
- skips are additive and added right after each decoder stage's upsampling;
- depth decoder skips: encoder stage 2 (/8), stage 1 (/4), the fg_bg stem (/2);
- mask decoder skips: encoder stage 1 (/4) and the concatenated stems (/2); at /8 no encoder feature has the
  mask branch's 128 channels, so that stage has no skip;
- the mask head outputs logits (the seed applied a sigmoid inside the model; losses apply it here).
"""

from __future__ import annotations

from functools import partial

from mdeas.models.blocks import conv_stem
from mdeas.models.decoders.dense import DenseDecoder
from mdeas.models.encoders.dense import DenseEncoder
from mdeas.models.fusion import DualStem
from mdeas.models.necks import DilatedBottleneck
from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import register_model

# Feature indices of DualStem(DenseEncoder): 0 fg_bg stem /2, 1 both stems /2, 2 /4, 3 /8, 4 /16.
FG_BG_STEM, STEMS, ENC4, ENC8 = 0, 1, 2, 3


@register_model
def densenet_dilated(stem_channels: int = 32, encoder_channels: tuple[int, ...] = (128, 256, 256)) -> MaskDepthNet:
    """Seed 002's model (module docstring): bg, fg_bg [B, 3, H, W] → mask logits and depth, [B, 1, H, W] each."""
    fusion = DualStem(
        partial(DenseEncoder, channels=tuple(encoder_channels)), partial(conv_stem, channels=stem_channels)
    )
    neck = DilatedBottleneck(fusion.channels[-1], width=128, mask_channels=128, depth_channels=256)
    mask = DenseDecoder(
        128,
        [(128, "nearest", None), (128, "nearest", ENC4), (64, "nearest", STEMS), (64, "pixel_shuffle", None)],
    )
    depth = DenseDecoder(
        256,
        [
            (256, "nearest", ENC8),
            (128, "nearest", ENC4),
            (128, "pixel_shuffle", FG_BG_STEM),
            (64, "pixel_shuffle", None),
        ],
    )
    return MaskDepthNet(fusion, neck, mask, depth)

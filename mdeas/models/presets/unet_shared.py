"""Seed 001: per-input ResNet stems, shared ResNet layers, two transpose-conv UNet decoders — 3,165,170 params.

bg and fg_bg each go through their own stem (conv3×3 3→32-BN-ReLU + 2 basic blocks), concatenated to 64 channels
at full size; two stages of 2 basic blocks to 128 (/2) and 256 (/4). Each decoder: 1×1 conv 256→f, then
2 × (transpose conv k2 s2 f→f, concat skip, 2 × conv3×3-ReLU) to f/2 and f/4, then conv3×3 → 1; f = 64 for the
mask and 128 for the depth. Convs in the stems and layers are bias-free with BatchNorm; decoder convs have biases
and no BatchNorm. Skips: the /2 stage, then the concatenated stems.
"""

from __future__ import annotations

from functools import partial

from mdeas.models.blocks import conv_relu_pair, resnet_stem
from mdeas.models.decoders.unet import UNetDecoder, conv_head, up_layer
from mdeas.models.encoders.resnet import ResNetEncoder
from mdeas.models.fusion import DualStem
from mdeas.models.necks import SharedNeck
from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import register_model

# Feature indices of DualStem(ResNetEncoder): 0 fg_bg stem /1, 1 both stems /1, 2 /2, 3 /4.
STEMS, HALF = 1, 2


@register_model
def unet_shared(stem_channels: int = 32, mask_width: int = 64, depth_width: int = 128) -> MaskDepthNet:
    """Seed 001's model (module docstring): bg, fg_bg [B, 3, H, W] → mask logits and depth, [B, 1, H, W] each."""
    encoder = partial(ResNetEncoder, widths=(128, 256), depths=(2, 2), strides=(2, 2))
    fusion = DualStem(encoder, partial(resnet_stem, channels=stem_channels))
    deepest = fusion.channels[-1]

    def decoder(width: int) -> UNetDecoder:
        stages = [(width // 2, HALF), (width // 4, STEMS)]
        return UNetDecoder(
            deepest, stages, fusion.channels, conv_head(3), up_layer("transpose"), conv_relu_pair, entry=width
        )

    return MaskDepthNet(fusion, SharedNeck(deepest), decoder(mask_width), decoder(depth_width))

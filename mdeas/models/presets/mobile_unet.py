"""Efficient design: MobileNetV3-style encoder on the 6-channel concat, two light UNet decoders (no pretraining).

Encoder: stride-2 conv stem, inverted residual blocks (expansion, depthwise 3×3/5×5, squeeze-excite, hard-swish in
the deeper stages) to 16/24/40/112/160 channels at /2…/32. Each decoder: 5 × (bilinear ×2, concat skip,
depthwise 3×3-BN-ReLU + pointwise 1×1-BN-ReLU) to 96/48/32/24/16 channels, then a 1×1 conv. Inputs must be
divisible by 32 (64, 128, 224 are). 1,634,690 params, 0.57 forward GFLOPs per 224×224 pair (about 1/8 of
densenet_dilated's 4.30); experiments/bench_models.py measures them with the CPU time.
"""

from __future__ import annotations

from mdeas.models.decoders.unet import light_decoder
from mdeas.models.encoders.mobile import MobileEncoder
from mdeas.models.fusion import EarlyConcat
from mdeas.models.necks import SharedNeck
from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import register_model


@register_model
def mobile_unet(decoder_widths: tuple[int, ...] = (96, 48, 32, 24, 16)) -> MaskDepthNet:
    """The efficient preset (module docstring): bg, fg_bg [B, 3, H, W], H and W multiples of 32 → mask logits and
    depth, [B, 1, H, W] each."""
    fusion = EarlyConcat(MobileEncoder)
    deepest = fusion.channels[-1]

    def decoder():
        return light_decoder(deepest, fusion.channels, fusion.strides, tuple(decoder_widths))

    return MaskDepthNet(fusion, SharedNeck(deepest), decoder(), decoder())

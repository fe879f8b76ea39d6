"""A model composed from registered parts by name: encoder, fusion, neck and decoder (both decoders alike).

`create_model("composed", encoder="mobile", fusion="siamese_diff", decoder="light")`; `*_kwargs` go to each part's
builder (`encoder="plain", encoder_kwargs={"widths": [32, 64, 128]}`; each encoder takes its own arguments).
Names: `mdeas.models.registry.{ENCODERS, FUSIONS, NECKS, DECODERS}.names()`. Decoders are sized from the fusion's
features and upsample to the input size.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from mdeas.models.net import MaskDepthNet
from mdeas.models.registry import DECODERS, ENCODERS, FUSIONS, NECKS, register_model


@register_model
def composed(
    encoder: str = "resnet",
    fusion: str = "early_concat",
    neck: str = "shared",
    decoder: str = "unet",
    encoder_kwargs: Mapping[str, Any] | None = None,
    fusion_kwargs: Mapping[str, Any] | None = None,
    neck_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
) -> MaskDepthNet:
    """A MaskDepthNet from registered parts by name (ENCODERS, FUSIONS, NECKS, DECODERS), each with its keyword
    arguments; the decoders are sized from the fusion's feature channels and strides."""
    encoder_factory = partial(ENCODERS.get(encoder), **(encoder_kwargs or {}))
    fused = FUSIONS.get(fusion)(encoder_factory, **(fusion_kwargs or {}))
    bottleneck = NECKS.get(neck)(fused.channels[-1], **(neck_kwargs or {}))
    build = partial(DECODERS.get(decoder), channels=fused.channels, strides=fused.strides, **(decoder_kwargs or {}))
    return MaskDepthNet(fused, bottleneck, build(bottleneck.mask_channels), build(bottleneck.depth_channels))

"""Decoders: `decoder(x, features) -> [B, 1, H, W]` at the input resolution.

Importing this package registers the decoders a composed model can name in `mdeas.models.registry.DECODERS`.
"""

from mdeas.models.decoders import dense, unet  # noqa: F401

"""Decoders: `decoder(x, features) -> [B, 1, H, W]` at the input resolution."""

"""Models: registered presets composed from encoders, fusions, necks and decoders."""

from mdeas.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]

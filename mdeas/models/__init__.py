"""Models: registered presets composed from encoders, fusions, necks and decoders.

`create_model(name, **overrides)` builds a preset, `list_models(pattern)` lists them; the part registries
(`ENCODERS`, `FUSIONS`, `NECKS`, `DECODERS`) name what `create_model("composed", ...)` can combine.
"""

from mdeas.models.registry import DECODERS, ENCODERS, FUSIONS, NECKS, create_model, list_models, register_model

__all__ = ["DECODERS", "ENCODERS", "FUSIONS", "NECKS", "create_model", "list_models", "register_model"]

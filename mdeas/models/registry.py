"""Registries by name: presets (`create_model(name, **overrides)`) and the parts a composed model is built from.

A registry maps a name to a builder. Presets register under their function name with `@register_model`; parts
register with `@ENCODERS.register("name")` (likewise FUSIONS, NECKS, DECODERS) next to their definition. Each
registry imports its package on first lookup, so every registered name is known without importing parts by hand.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from mdeas.registry import Registry

MODELS = Registry("model", "mdeas.models.presets")
ENCODERS = Registry("encoder", "mdeas.models.encoders")
FUSIONS = Registry("fusion", "mdeas.models.fusion")
NECKS = Registry("neck", "mdeas.models.necks")
DECODERS = Registry("decoder", "mdeas.models.decoders")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a preset builder under its function name."""
    return MODELS.register(fn.__name__)(fn)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered presets matching the shell-style `pattern` (e.g. "*unet*"), sorted."""
    return fnmatch.filter(MODELS.names(), pattern)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the preset `name`; keyword overrides go to its builder."""
    return MODELS.get(name)(**overrides)

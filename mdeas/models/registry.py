"""Registries by name: presets (`create_model(name, **overrides)`) and the parts a composed model is built from.

A registry maps a name to a builder. Presets register under their function name with `@register_model`; parts
register with `@ENCODERS.register("name")` (likewise FUSIONS, NECKS, DECODERS) next to their definition. Each
registry imports its package on first lookup, so every registered name is known without importing parts by hand.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
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


CHANNEL_OPTIONS = ("width", "widths", "channels", "bottom")  # how the names of options that count channels end


def check_channels(options: Mapping[str, Any], where: str = "model") -> None:
    """ValueError naming `<where>.<key>` for an option counting channels (its name ends as in `CHANNEL_OPTIONS`, in
    `options` or a mapping inside it) that is not a whole number >= 1 or a non-empty list of them: PyTorch builds
    a layer of 0 channels and fails only at its first forward pass."""
    for key, value in options.items():
        if isinstance(value, Mapping):
            check_channels(value, f"{where}.{key}")
        elif str(key).endswith(CHANNEL_OPTIONS) and value is not None:
            counts = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
            if not counts or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
                raise ValueError(f"{where}.{key} must be a number of channels >= 1 or a list of them, got {value!r}")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the preset `name`; keyword overrides go to its builder (channel counts checked: `check_channels`)."""
    check_channels(overrides)
    return MODELS.get(name)(**overrides)

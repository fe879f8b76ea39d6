"""Registries by name: presets (`create_model(name, **overrides)`) and the parts a composed model is built from.

A registry maps a name to a builder. Presets register under their function name with `@register_model`; parts
register with `@ENCODERS.register("name")` (likewise FUSIONS, NECKS, DECODERS) next to their definition. Each
registry imports its package on first lookup, so every registered name is known without importing parts by hand.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from typing import Any

from torch import nn


class UnknownName(KeyError):
    """A KeyError whose text is its message as given (KeyError's own quotes it, as it would a missing key)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """Named builders of one kind of part; `get` names the known entries when a name is unknown."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a builder (class or function) under `name`."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        importlib.import_module(self.package)
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as `name`; UnknownName (a KeyError) listing the known names otherwise."""
        known = self.names()
        if name not in self._builders:
            raise UnknownName(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(known)}")
        return self._builders[name]


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

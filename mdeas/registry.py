"""A registry: builders (classes or functions) by name, for the parts configs name (models, their parts, loss
terms). Each registry imports its package on first lookup, so every name is known without importing parts by hand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


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

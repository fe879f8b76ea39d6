"""Model registry: presets register a builder by name; `create_model(name, **overrides)` builds one."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a preset builder under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered presets, sorted."""
    import mdeas.models.presets  # noqa: F401  (registers the presets)

    return sorted(_MODELS)


def create_model(name: str, **overrides) -> nn.Module:
    """Build the preset `name`; keyword overrides go to its builder."""
    known = list_models()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(known)}")
    return _MODELS[name](**overrides)

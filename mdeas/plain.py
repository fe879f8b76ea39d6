"""Config values as plain Python: OmegaConf containers become dicts and lists."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def plain(value: Any) -> Any:
    """`value` with a DictConfig or ListConfig turned into dicts and lists (interpolations resolved); any other
    value as given."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value

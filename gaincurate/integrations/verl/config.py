"""Reading verl's configs (OmegaConf sections, mappings or plain objects) the same way in every verl module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_value(config: Any, key: str) -> Any:
    """`config[key]` of a verl config (OmegaConf, a mapping or an object), None when it is unset."""
    if config is None:
        return None
    if isinstance(config, Mapping) or hasattr(config, "get"):
        return config.get(key)
    return getattr(config, key, None)


def config_keys(config: Any) -> list[str]:
    """The keys a verl config section sets (none for a section that is not a mapping)."""
    return list(config.keys()) if hasattr(config, "keys") else []

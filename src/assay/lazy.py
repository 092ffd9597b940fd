"""Package doors whose heavier names load on first use (PEP 562 ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``homes`` (name → module) when it
    is first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(name)
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__

"""Attributes a wrapper forwards to the optimizer it wraps (reads and writes)."""

from __future__ import annotations

from typing import Any


def forwarded(name: str, doc: str) -> property:
    """A property reading and writing ``self.optimizer.<name>``."""

    def get(self: Any) -> Any:
        return getattr(self.optimizer, name)

    def set_(self: Any, value: Any) -> None:
        setattr(self.optimizer, name, value)

    return property(get, set_, doc=doc)

"""Walking a module tree without recursion (the per-call paths' alternative to ``modules()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferroptim.nn.module import Module


def subtree(module: Module) -> tuple[list[Module], bool]:
    """``module`` and its descendants, each instance once (any order), and whether some
    instance is reachable twice: a flat loop, cheaper than the recursive ``modules()``
    generator on the per-call path, and safe against cycles."""
    found = [module]
    seen = {id(module)}
    repeated = False
    for node in found:  # the list grows while it is walked
        for child in node._modules.values():
            if id(child) in seen:
                repeated = True
            else:
                seen.add(id(child))
                found.append(child)
    return found, repeated

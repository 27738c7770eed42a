"""Random generators for initialization: an explicit ``rng=`` argument, or a seedable default."""

from __future__ import annotations

from typing import Any

import numpy as np

_default = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the default generator that layers draw their initial weights from when they are
    not given ``rng=`` (as ``torch.manual_seed`` does for torch's layers)."""
    global _default
    _default = np.random.default_rng(seed)


def resolve_rng(rng: Any = None) -> np.random.Generator:
    """``rng`` as a Generator: ``None`` is the default generator, an int seeds a new one."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")

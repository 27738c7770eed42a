"""Random generators for initialization: an explicit ``rng=`` argument, or the seedable default
(see :mod:`ferroptim._seed`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._seed import initial_generator, manual_seed

__all__ = ["manual_seed", "resolve_rng"]


def resolve_rng(rng: Any = None) -> np.random.Generator:
    """``rng`` as a Generator: ``None`` is the default generator, an int seeds a new one."""
    if rng is None:
        return initial_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")

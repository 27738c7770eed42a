"""Owned random generators for the data utilities, and their state as plain JSON-compatible data.

Every shuffling or augmenting object owns one :class:`numpy.random.Generator`. Its
``bit_generator.state`` is a dict of strings and Python ints, so it can be stored in a JSON
checkpoint and restored for an exact resume.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from ferroptim._checks import invalid
from ferroptim._seed import new_generator


def as_generator(seed: Any, name: str = "seed", owner: Any = None) -> np.random.Generator:
    """A generator from ``seed``: ``None`` (a new stream that follows ``ferroptim.manual_seed``;
    with ``owner``, which keeps it as ``owner.rng``, later ``manual_seed`` calls reseed it), an
    int, or a Generator (used as is).

    Raises
    ------
    TypeError
        For anything else (bools included), naming ``name``.
    """
    if seed is None:
        return new_generator(owner)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise invalid(name, seed, "an int >= 0")
        return np.random.default_rng(int(seed))
    raise TypeError(f"{name} must be None, an int or a numpy Generator, got {seed!r}")


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A deep copy of ``rng``'s bit-generator state (strings and ints only)."""
    return copy.deepcopy(dict(rng.bit_generator.state))


def set_generator_state(rng: np.random.Generator, state: Any, name: str = "rng") -> None:
    """Restore ``rng`` from :func:`generator_state` output; ``rng`` is unchanged on error.

    Raises
    ------
    TypeError
        ``state`` is not a mapping.
    ValueError
        ``state`` belongs to another bit generator or is malformed.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"{name} state must be a dict, got {type(state).__name__}")
    expected = type(rng.bit_generator).__name__
    if state.get("bit_generator") != expected:
        raise ValueError(
            f"{name} state is for bit generator {state.get('bit_generator')!r}, expected "
            f"{expected!r}"
        )
    trial = type(rng.bit_generator)()
    try:
        trial.state = copy.deepcopy(dict(state))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{name} state is malformed: {exc}") from exc
    rng.bit_generator.state = trial.state

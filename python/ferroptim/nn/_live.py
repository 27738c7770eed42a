"""A weak registry of the parameter arrays of live modules: which module owns an array.

``Module.register_parameter`` (and assigning a new array to a parameter attribute, and
unpickling or copying a module) records ``id(array) -> [(module, name), ...]``. Nothing is kept
alive by the registry: entries hold weak references to the array and its owners, and an entry
vanishes with its array. It lets the clipping functions refuse parameters passed where
gradients are expected, and lets an optimizer find the gradients of its parameters
(``opt.step()``, ``opt.zero_grad()``). An array registered in several modules (tied weights)
has several owners.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ferroptim.nn.module import Module

#: reentrant: a garbage collection triggered while the lock is held (any allocation in
#: ``register``) runs the weakref callbacks of arrays that died, which take the lock again in the
#: same thread; a plain Lock deadlocked there
_lock = threading.RLock()
#: id(array) -> (weak ref to the array, [(weak ref to owner module, parameter name), ...])
_owners: dict[int, tuple[weakref.ref, list[tuple[weakref.ref, str]]]] = {}


def _forget(key: int, ref: weakref.ref) -> None:
    with _lock:
        entry = _owners.get(key)
        if entry is not None and entry[0] is ref:
            del _owners[key]


def register(module: Module, name: str, array: np.ndarray) -> None:
    """Record that ``module`` holds ``array`` as its parameter ``name``."""
    key = id(array)
    with _lock:
        entry = _owners.get(key)
        if entry is None or entry[0]() is not array:

            def forget(ref: weakref.ref, key: int = key) -> None:
                _forget(key, ref)

            ref = weakref.ref(array, forget)
            entry = (ref, [])
            _owners[key] = entry
        owners = entry[1]
        owners[:] = [(m, n) for m, n in owners if m() is not None]
        if not any(m() is module and n == name for m, n in owners):
            owners.append((weakref.ref(module), name))


def owners(array: Any) -> list[tuple[Module, str]]:
    """The live ``(module, name)`` pairs that hold ``array`` as a parameter now (empty for any
    other object)."""
    if not isinstance(array, np.ndarray):
        return []
    with _lock:
        entry = _owners.get(id(array))
        if entry is None or entry[0]() is not array:
            return []
        candidates = [(m(), n) for m, n in entry[1]]
    return [
        (module, name)
        for module, name in candidates
        if module is not None and module._parameters.get(name) is array
    ]


def is_parameter(array: Any) -> bool:
    """Whether ``array`` is a registered parameter of a live module."""
    return bool(owners(array))

"""When a forward keeps what backward needs, and which forward a gradient belongs to.

A module's forward caches its inputs (or what backward needs) only when it may be followed by a
backward: in training mode, outside ``with no_grad():``. A forward in eval mode or under
``no_grad`` runs without touching the previous training forward's cache, so a validation
forward between ``loss_fn(out, y)`` and ``model.backward(...)`` cannot make backward use the
wrong activations. ``with enable_grad():`` caches in eval mode too (fine-tuning with frozen
batch-norm statistics, gradient checks in eval mode).

Provenance: every outermost forward is numbered and records (keyed weakly by its output
array) which module produced it and whether it kept a cache; a ferroptim loss looks its input
up when called and marks the gradient its ``backward`` returns with that origin. A
container's ``backward(dy)`` then raises when ``dy`` is the gradient of one of its own outputs
other than the last training forward's, naming both shapes.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ferroptim.nn.module import Module

#: module attributes that hold a forward cache (restored after a forward that keeps none)
CACHE_ATTRIBUTES = ("_cache", "_shape", "_output")


class _State(threading.local):
    def __init__(self) -> None:
        self.mode: bool | None = None  # None: cache in training mode; False: never; True: always
        self.depth = 0  # forward calls in progress on this thread


_state = _State()


@contextlib.contextmanager
def _set_mode(mode: bool) -> Iterator[None]:
    previous = _state.mode
    _state.mode = mode
    try:
        yield
    finally:
        _state.mode = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """``with no_grad():`` forwards keep no cache (as ``torch.no_grad``): the previous training
    forward stays the one ``backward`` uses. Batch-norm running statistics still update in
    training mode, as in torch."""
    return _set_mode(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """``with enable_grad():`` forwards keep their cache even in eval mode (for a backward
    through an eval-mode model, e.g. with frozen batch-norm statistics)."""
    return _set_mode(True)


def is_grad_enabled() -> bool:
    """False inside ``no_grad()``."""
    return _state.mode is not False


def _keeps_cache(training: bool) -> bool:
    mode = _state.mode
    return training if mode is None else mode


# --- provenance ---------------------------------------------------------------------------
#: id(output) -> (ref(output), ref(module), forward number, kept a cache, output shape)
_outputs: dict[int, tuple[Any, ...]] = {}
#: id(gradient) -> (ref(gradient), the same origin tuple as the loss input's output entry)
_gradients: dict[int, tuple[Any, ...]] = {}
_lock = threading.Lock()
_forwards = itertools.count()


def _track(table: dict[int, Any], key_array: np.ndarray, value: tuple[Any, ...]) -> None:
    key = id(key_array)

    def forget(ref: weakref.ref, key: int = key) -> None:
        with _lock:
            entry = table.get(key)
            if entry is not None and entry[0] is ref:
                del table[key]

    with _lock:
        table[key] = (weakref.ref(key_array, forget), *value)


def _lookup(table: dict[int, Any], array: Any) -> tuple[Any, ...] | None:
    with _lock:
        entry = table.get(id(array))
    if entry is None or entry[0]() is not array:
        return None
    return entry[1:]


def run_forward(module: Module, forward: Callable[..., Any], *args: Any) -> Any:
    """``forward(*args)`` for ``module``: with a kept cache in training mode (outside
    ``no_grad``), otherwise with the module's cache attributes restored afterwards. The
    outermost call numbers the forward and records which module produced the output."""
    keep = _keeps_cache(module.training)
    attributes = module.__dict__
    saved = None if keep else [(k, attributes[k]) for k in CACHE_ATTRIBUTES if k in attributes]
    outermost = _state.depth == 0
    _state.depth += 1
    try:
        output = forward(*args)
    finally:
        _state.depth -= 1
        if saved is not None:
            attributes.update(saved)
    if outermost and isinstance(output, np.ndarray):
        number = next(_forwards)
        if keep:
            attributes["_trained_forward"] = (number, output.shape)
        _track(_outputs, output, (weakref.ref(module), number, keep, output.shape))
    return output


def remember_loss_input(loss: Any, value: Any) -> None:
    """Called by a loss on its input (while it is alive): which forward produced it."""
    loss.__dict__["_input_origin"] = _lookup(_outputs, value)


def mark_gradient(loss: Any, gradient: np.ndarray) -> np.ndarray:
    """Record that ``gradient`` (returned by ``loss.backward``) is the gradient of the output
    of the forward that produced the loss's last input; returns it."""
    origin = loss.__dict__.get("_input_origin")
    if origin is not None:
        _track(_gradients, gradient, origin)
    return gradient


def check_gradient_origin(module: Module, dy: Any) -> None:
    """Raise ``RuntimeError`` when ``dy`` came from a ferroptim loss called on an output of
    ``module`` other than its last training forward's (e.g. a validation forward's)."""
    origin = _lookup(_gradients, dy)
    if origin is None or origin[0]() is not module:
        return
    _, number, kept, shape = origin
    trained = module.__dict__.get("_trained_forward")
    if trained is not None and trained[0] == number:
        return
    kind = "an earlier training forward" if kept else "an eval-mode or no_grad forward"
    last = "none kept" if trained is None else f"output shape {trained[1]}"
    raise RuntimeError(
        f"{type(module).__name__}.backward: dy (shape {np.shape(dy)}) is the gradient of the "
        f"output of {kind} (output shape {shape}), not of the last training forward "
        f"({last}); call loss_fn on the training output right before backward"
    )

"""Sequential: modules applied in order; backward runs them in reverse; a failed call is undone."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim.nn._checks import require_cache
from ferroptim.nn._grad_mode import check_gradient_origin
from ferroptim.nn._tree import subtree
from ferroptim.nn.module import Module

_DEPTH = threading.local()  # .value: Sequential calls in progress on this thread


class _Snapshot:
    """What a Sequential call may change in its subtree, saved so a failed call can be undone.

    For a forward: a copy of every buffer (running statistics, counters), every ``module.rng``
    state and each module's ``dtype`` (input-following layers adopt their input's). The forward
    caches are not kept: holding the previous step's activations during the next forward would
    double the memory a step touches (measured: +20% on the demo's forward); a failed forward
    leaves no usable cache, and ``backward`` then raises as before any forward. For a backward:
    each module's attribute dict (a shallow copy: its cache, ``h_n``, ...) and a copy of every
    gradient array. Arrays are put back in place (``np.copyto``), so optimizers holding them
    keep working.
    """

    __slots__ = ("arrays", "attributes", "rngs")

    def __init__(self, modules: list[Module], *, backward: bool) -> None:
        self.attributes = []
        self.arrays = []
        self.rngs = []
        store = "_gradients" if backward else "_buffers"
        for module in modules:
            attributes = module.__dict__
            kept = attributes.copy() if backward else {"dtype": attributes["dtype"]}
            self.attributes.append((module, kept))
            for array in attributes[store].values():
                self.arrays.append((array, array.copy()))
            rng = None if backward else attributes.get("rng")
            if isinstance(rng, np.random.Generator):
                self.rngs.append((rng.bit_generator, rng.bit_generator.state))

    def restore(self, *, backward: bool) -> None:
        for module, attributes in self.attributes:
            current = module.__dict__
            if backward:
                current.clear()
            current.update(attributes)
        for array, saved in self.arrays:
            np.copyto(array, saved)
        for bit_generator, state in self.rngs:
            bit_generator.state = state


def atomic_call(root: Module, run: Any, value: Any, *, backward: bool) -> Any:
    """``run(value)`` for a container ``root`` (Sequential, Residual), all-or-nothing.

    As the outermost such call on this thread: check that no module instance appears twice in
    the subtree (``ValueError``), snapshot it (see :class:`_Snapshot`; gradients when
    ``backward``, buffers and generator states otherwise), run, and on any exception restore
    the snapshot and re-raise. Nested calls just run: the outermost snapshot covers them.
    """
    if getattr(_DEPTH, "value", 0):
        return run(value)
    modules, repeated = subtree(root)
    if repeated:
        raise ValueError(
            f"{type(root).__name__}: the same module instance appears twice in this model; "
            "each instance may appear once (forward caches are per instance)"
        )
    snapshot = _Snapshot(modules, backward=backward)
    _DEPTH.value = 1
    try:
        return run(value)
    except BaseException:
        snapshot.restore(backward=backward)
        if not backward:  # layers before the failure cached this call: no backward from them
            for module in modules:
                if isinstance(module, Sequential):
                    module._output = None
        raise
    finally:
        _DEPTH.value = 0


class Sequential(Module):
    """``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(name=module))``.

    ``forward`` feeds each module's output to the next; ``backward(dy)`` walks them in reverse
    and returns d loss / d input. Children are named ``"0"``, ``"1"``, ... as in torch, so
    parameter names read ``"0.weight"``.

    Notes
    -----
    Calls are all-or-nothing. When any module raises inside ``forward``, every buffer (running
    statistics, ``num_batches_tracked``), every generator state (dropout masks) and every
    module's attributes (forward caches) of the subtree are put back as they were before the
    call, then the exception propagates. ``backward`` first checks ``dy`` against the shape of
    the last output (before any module runs); when a module raises midway, every gradient
    array and attribute of the subtree is restored. Only the outermost Sequential of a call
    takes the snapshot (a per-thread depth counter), so nesting costs nothing extra. The
    snapshot copies buffers (forward) or gradients (backward): O(parameters), small next to
    the layers' own work.

    A module instance may appear only once in a Sequential's subtree (``ValueError`` at
    construction, ``append`` or assignment, and at ``forward``): each module caches its own
    forward for its backward, so a shared instance would see its cache overwritten. Unlike
    torch, share weights by other means (e.g. tie arrays with ``load_state_dict``).
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: item {name!r} must be a Module, got {type(module).__name__}"
                )
            setattr(self, name, module)
        dtypes = {m.dtype for m in self._modules.values() if m._parameters}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else self.dtype
        self._output: tuple[tuple[int, ...], np.dtype] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Module):
            self._check_unshared(name, value)
        super().__setattr__(name, value)

    def _check_unshared(self, name: str, module: Module) -> None:
        """``ValueError`` unless ``module``'s subtree is disjoint from the rest of this one (the
        child being replaced under ``name`` excluded) and has no repeated instance itself."""
        incoming, repeated = subtree(module)
        if repeated:
            raise ValueError(
                f"Sequential: module {name!r} ({type(module).__name__}) contains the same module "
                "instance twice; each instance may appear once (forward caches are per instance)"
            )
        present = {id(self)}
        for child_name, child in self._modules.items():
            if child_name != name:
                present.update(id(m) for m in subtree(child)[0])
        shared = present.intersection(id(m) for m in incoming)
        if shared:
            raise ValueError(
                f"Sequential: module {name!r} ({type(module).__name__}) is already in this "
                "Sequential (or contains a module that is); each instance may appear once "
                "because forward caches are per instance (weight sharing is not supported)"
            )

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    # --- forward / backward ----------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the modules in order; on an error nothing in the subtree has changed."""
        return atomic_call(self, self._forward_chain, x, backward=False)

    def _forward_chain(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        array = x if isinstance(x, np.ndarray) else np.asarray(x)
        self._output = (array.shape, array.dtype)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Walk the modules in reverse; ``dy`` must have the last output's shape and a numeric
        dtype (checked before any module runs). On an error no gradient has changed.

        ``RuntimeError`` when ``dy`` is the gradient a ferroptim loss returned for another
        output of this model than the last training forward's (e.g. a validation forward)."""
        check_gradient_origin(self, dy)
        shape, _ = require_cache(self._output, "Sequential")
        if isinstance(dy, (str, bytes)) or dy is None:
            raise TypeError(f"Sequential: dy must be a numeric array, got {type(dy).__name__}")
        array = dy if isinstance(dy, np.ndarray) else np.asarray(dy)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Sequential: dy must be numeric, got dtype {array.dtype}")
        if array.shape != shape:
            raise ValueError(
                f"Sequential: dy must have the output shape {shape}, got {array.shape}"
            )
        return atomic_call(self, self._backward_chain, dy, backward=True)

    def _backward_chain(self, dy: Any) -> Any:
        for module in reversed(self._modules.values()):
            dy = module.backward(dy)
        self._output = None
        return dy

"""Contiguous storage for a module tree's parameters and gradients (``Module.flatten_parameters``).

Flattening moves every parameter of a tree into one buffer per dtype and every gradient into
another, as C-contiguous views in ``named_parameters()`` order, each starting on an
``ALIGN_BYTES`` boundary (the gaps are zeros; :mod:`ferroptim._flat_layout`), so a norm, a clip
or an optimizer step over them reads one allocation instead of many separately allocated arrays
(which read about 10% slower, whatever the kernel).

The module flattened keeps a record of its gradient buffers (:data:`RECORD`): while its tree's
gradients are still exactly the views of those buffers, ``zero_grad`` clears each buffer with one
fill, not one per array (measured under load on the transformer workload's 55 MB: 2.05 ms
against 2.18 ms for one fill per view and 2.50 ms for separately allocated arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ferroptim._flat_layout import ALIGN_BYTES, aligned_offsets, flat_views
from ferroptim.nn import _live
from ferroptim.nn._tree import subtree

if TYPE_CHECKING:
    from ferroptim.nn.module import Module

__all__ = [
    "RECORD",
    "flatten_parameters",
    "is_flat",
    "zero_flat_gradients",
]

#: the attribute of the flattened module holding ``(gradient buffers, number of gradients)``
RECORD = "_flat_gradients"

#: a parameter's uses: ``[(module, name), ...]`` (several for tied weights), first use first
Uses = list[tuple["Module", str]]


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _laid_out(arrays: Sequence[np.ndarray]) -> bool:
    """Whether ``arrays`` are writeable C-contiguous views of one allocation at the offsets of
    :func:`aligned_offsets` from an ``ALIGN_BYTES``-aligned origin (an empty array has no bytes:
    only its allocation counts)."""
    base = arrays[0].base
    offsets, _ = aligned_offsets([a.shape for a in arrays], arrays[0].itemsize)
    placed = [(a, start) for a, start in zip(arrays, offsets, strict=True) if a.size]
    origin = _address(placed[0][0]) - placed[0][1] * arrays[0].itemsize if placed else 0
    return (
        base is not None
        and origin % ALIGN_BYTES == 0
        and all(a.base is base and a.flags.c_contiguous and a.flags.writeable for a in arrays)
        and all(_address(a) - origin == start * a.itemsize for a, start in placed)
    )


def _groups(model: Module) -> dict[np.dtype, list[Uses]]:
    """The tree's parameters by dtype, each as its list of uses, in ``named_parameters``
    order. ``_unique_parameters`` also links the gradient of every tied use to the first's."""
    uses: dict[int, Uses] = {}
    for _, module, name in model._named("_parameters"):
        uses.setdefault(id(module._parameters[name]), []).append((module, name))
    groups: dict[np.dtype, list[Uses]] = {}
    for _, module, name in model._unique_parameters():
        array = module._parameters[name]
        groups.setdefault(array.dtype, []).append(uses[id(array)])
    return groups


def _params(group: list[Uses]) -> list[np.ndarray]:
    return [module._parameters[name] for (module, name), *_ in group]


def _grads(group: list[Uses]) -> list[np.ndarray]:
    return [module._gradients[name] for (module, name), *_ in group]


def _bases(groups: dict[np.dtype, list[Uses]]) -> list[object]:
    return [arrays(g)[0].base for g in groups.values() for arrays in (_params, _grads)]


def is_flat(model: Module) -> bool:
    """Whether every parameter of ``model``'s tree, and every gradient, already sits in one
    buffer per dtype as :func:`flatten_parameters` lays them out (one buffer per dtype for the
    parameters, another for the gradients)."""
    groups = _groups(model)
    if not all(_laid_out(_params(g)) and _laid_out(_grads(g)) for g in groups.values()):
        return False
    bases = _bases(groups)
    return len({id(b) for b in bases}) == len(bases)


def _check_no_outside_owner(model: Module, groups: dict[np.dtype, list[Uses]]) -> None:
    """``ValueError`` when a parameter array is also a parameter of a module outside ``model``'s
    tree (flattening would untie it)."""
    inside = {id(m) for m in model.modules()}
    names = {id(m._parameters[n]): full for full, m, n in model._unique_parameters()}
    for group in groups.values():
        for array in _params(group):
            for owner, name in _live.owners(array):
                if id(owner) not in inside:
                    raise ValueError(
                        f"flatten_parameters: parameter {names[id(array)]!r} is also parameter "
                        f"{name!r} of a {type(owner).__name__} outside this module tree (weights "
                        "shared with another model, or a replaced module still referenced); "
                        "flatten a module that contains both, or drop the other reference"
                    )


def _move(uses: Uses, param: np.ndarray, grad: np.ndarray) -> None:
    """Point every use of a parameter at its new array and gradient (one gradient array for
    all uses, as ``_unique_parameters`` keeps tied weights)."""
    for module, name in uses:
        module._parameters[name] = param
        module._gradients[name] = grad
        object.__setattr__(module, name, param)
        _live.register(module, name, param)


def flatten_parameters(model: Module) -> None:
    """Move ``model``'s parameters and gradients into one buffer per dtype each (see the module
    docstring); the old arrays are made read-only. A no-op when :func:`is_flat`.

    Raises
    ------
    ValueError
        A parameter is shared with a module outside the tree (nothing is changed).
    """
    if is_flat(model):
        return
    groups = _groups(model)
    _check_no_outside_owner(model, groups)
    # Every buffer is allocated before anything moves: a MemoryError changes nothing.
    layouts = []
    for dtype, group in groups.items():
        shapes = [p.shape for p in _params(group)]
        _, new_params = flat_views(shapes, dtype)
        layouts.append((group, new_params, flat_views(shapes, dtype)))
    old: list[np.ndarray] = []
    buffers = []
    for group, new_params, (grad_buffer, new_grads) in layouts:
        params, grads = _params(group), _grads(group)
        for uses, param, grad, new_param, new_grad in zip(
            group, params, grads, new_params, new_grads, strict=True
        ):
            np.copyto(new_param, param)
            np.copyto(new_grad, grad)
            _move(uses, new_param, new_grad)
        old += params + grads
        buffers.append(grad_buffer)
    for array in old:
        array.setflags(write=False)
    for module in model.modules():  # records of flattened parts: their buffers are gone
        module.__dict__.pop(RECORD, None)
    count = sum(len(group) for group in groups.values())
    object.__setattr__(model, RECORD, (tuple(buffers), count))


def zero_flat_gradients(model: Module) -> bool:
    """Zero ``model``'s gradients with one fill per gradient buffer when ``model`` was
    flattened and its tree's gradients are still exactly the views of those buffers (none
    added, replaced or removed since); returns whether it did (otherwise nothing is written)."""
    record = model.__dict__.get(RECORD)
    if record is None:
        return False
    buffers, count = record
    owners = {id(buffer) for buffer in buffers}
    seen = set()
    for module in subtree(model)[0]:
        for grad in module._gradients.values():
            if id(grad.base) not in owners:
                return False
            seen.add(id(grad))
    if len(seen) != count:
        return False
    for buffer in buffers:
        buffer.fill(0)
    return True

"""Gradients matched to an optimizer's parameters by identity, never by position.

``opt.step(model)`` and ``opt.step()`` use these: whatever the order of ``param_groups`` (decay /
no-decay groups, a subset of layers), each parameter array gets the gradient the model holds
for that very array. A parameter registered in several places (tied weights) gets the sum of
its gradients; a frozen one gets ``None`` (the step skips it).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim.nn import _live
from ferroptim.nn.module import Gradients, Module

Gradient = np.ndarray | None


def _summed(grads: list[np.ndarray]) -> Gradient:
    """One gradient for one array: itself, the sum over tied places, or None (frozen). Places
    that share one gradient array (``Module`` links tied uses to one array, see
    ``Module._unique_parameters``) count once."""
    grads = list({id(g): g for g in grads}.values())
    if not grads:
        return None
    if len(grads) == 1:
        return grads[0]
    total = grads[0].copy()
    for g in grads[1:]:
        total += g
    return total


def _flat_params(optimizer: Any) -> Iterator[tuple[int, int, np.ndarray]]:
    for gi, group in enumerate(optimizer.param_groups):
        for pi, param in enumerate(group["params"]):
            yield gi, pi, param


def _held_gradients(model: Module) -> dict[int, Gradient]:
    """The gradient ``model`` holds for each of its parameter arrays, keyed by the array's id:
    the one of its single use, or the sum over tied uses (see :func:`_summed`). Modules are
    visited as ``model.modules()`` lists them (depth first, torch's order), without building
    their names."""
    found: dict[int, Gradient] = {}
    tied: dict[int, list[np.ndarray]] = {}
    stack = [model]
    while stack:
        module = stack.pop()
        children = module._modules
        if children:
            stack.extend(reversed(children.values()))
        params = module._parameters
        if not params:
            continue
        frozen = module._frozen
        gradients = module._gradients
        for name, param in params.items():
            key = id(param)
            grad = None if name in frozen else gradients[name]
            if key not in found:
                found[key] = grad
                continue
            if key not in tied:
                first = found[key]
                tied[key] = [] if first is None else [first]
            if grad is not None:
                tied[key].append(grad)
    for key, grads in tied.items():
        found[key] = _summed(grads)
    return found


def _in_group_order(
    optimizer: Any, found: dict[int, Gradient], complaint: str, prefix: str = ""
) -> list[Gradient]:
    """``found[id(param)]`` for every parameter in ``param_groups`` order; ``ValueError``
    naming the first parameter missing from ``found`` (its group, index and shape) followed
    by ``complaint``."""
    try:
        return [found[id(p)] for group in optimizer.param_groups for p in group["params"]]
    except KeyError:
        pass
    for gi, pi, param in _flat_params(optimizer):
        if id(param) not in found:
            raise ValueError(
                f"{prefix}param_groups[{gi}]['params'][{pi}] (shape {param.shape}) {complaint}"
            )
    # Another thread changed the groups meanwhile: look again.
    return _in_group_order(optimizer, found, complaint, prefix)


def model_gradients(optimizer: Any, model: Module) -> list[Gradient]:
    """The gradients ``model`` holds for the optimizer's parameters, in ``param_groups`` order.

    Raises
    ------
    ValueError
        An optimizer parameter is not a parameter array of ``model`` (naming its group, index
        and shape).
    """
    return _in_group_order(
        optimizer,
        _held_gradients(model),
        f"is not a parameter of the {type(model).__name__} given to step(); build the optimizer "
        "from model.parameters() (or fo.optim.param_groups(model))",
        prefix="optimizer ",
    )


def listed_gradients(optimizer: Any, grads: Gradients) -> list[Gradient]:
    """``opt.step(model.gradients())``: the list's gradients in ``param_groups`` order, each
    taken for the parameter array it was listed with (so decay / no-decay groups, or an
    optimizer over part of the model, get the right ones).

    Raises
    ------
    ValueError
        An optimizer parameter has no gradient in the list (naming its group, index and shape).
    """
    if len(grads) != len(grads.params):  # entries added or removed since: a plain list
        return list(grads)
    groups = optimizer.param_groups
    if len(groups) == 1 and _same_arrays(grads.params, groups[0]["params"]):
        return grads  # listed for the very parameters, in their order: nothing to match
    listed = {id(param): grad for param, grad in zip(grads.params, grads, strict=True)}
    return _in_group_order(
        optimizer,
        listed,
        "is not one of the parameters these model.gradients() belong to; pass the model that "
        "holds it: opt.step(model)",
        prefix="grads: ",
    )


def _same_arrays(a: Any, b: Any) -> bool:
    """Whether two sequences hold the very same arrays in the same order."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


def resolve_gradients(optimizer: Any, grads: Any) -> Any:
    """What a step was given, as gradients in ``param_groups`` order where that can be known:
    None (the live modules), a model, or ``model.gradients()`` are matched by identity; any
    other value is returned as it is (a plain sequence is taken position by position)."""
    if grads is None:
        return live_gradients(optimizer)
    if isinstance(grads, Module):
        return model_gradients(optimizer, grads)
    if isinstance(grads, Gradients):
        return listed_gradients(optimizer, grads)
    return grads


def _live_owners(optimizer: Any, call: str, fix: str) -> list[list[tuple[Module, str]]]:
    owners = []
    for gi, pi, param in _flat_params(optimizer):
        found = _live.owners(param)
        if not found:
            raise ValueError(
                f"{call}: param_groups[{gi}]['params'][{pi}] (shape {param.shape}) is not a "
                f"parameter of any live ferroptim Module, so its gradient is unknown; {fix}"
            )
        owners.append(found)
    return owners


def live_gradients(optimizer: Any) -> list[Gradient]:
    """``opt.step()`` with no argument: each parameter's gradient from the live module(s) that
    hold it (``ValueError`` saying what to pass when a parameter belongs to none)."""
    owners = _live_owners(
        optimizer, "step()", "pass the gradients: opt.step(model) or opt.step(model.gradients())"
    )
    return [_summed([m._gradients[n] for m, n in found if n not in m._frozen]) for found in owners]


def zero_live_gradients(optimizer: Any) -> None:
    """``opt.zero_grad()``: zero, in place, the gradient arrays of every parameter (all checked
    first: ``ValueError`` pointing at ``model.zero_grad()`` when one has no live module)."""
    owners = _live_owners(optimizer, "zero_grad()", "call model.zero_grad() instead")
    for found in owners:
        for module, name in found:
            module._gradients[name].fill(0)

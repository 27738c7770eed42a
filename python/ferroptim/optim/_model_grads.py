"""Gradients matched to an optimizer's parameters by identity, never by position.

``opt.step(model)`` and ``opt.step()`` use these: whatever the order of ``param_groups`` (decay /
no-decay groups, a subset of layers), each parameter array gets the gradient the model holds
for that very array. A parameter registered in several places (tied weights) gets the sum of
its gradients; a frozen one gets ``None`` (the step skips it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim.nn import _live
from ferroptim.nn.module import Module

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


def model_gradients(optimizer: Any, model: Module) -> list[Gradient]:
    """The gradients ``model`` holds for the optimizer's parameters, in ``param_groups`` order.

    Raises
    ------
    ValueError
        An optimizer parameter is not a parameter array of ``model`` (naming its group, index
        and shape).
    """
    found = _held_gradients(model)
    try:
        return [found[id(p)] for group in optimizer.param_groups for p in group["params"]]
    except KeyError:
        pass
    for gi, pi, param in _flat_params(optimizer):
        if id(param) not in found:
            raise ValueError(
                f"optimizer param_groups[{gi}]['params'][{pi}] (shape {param.shape}) is not a "
                f"parameter of the {type(model).__name__} given to step(); build the optimizer "
                "from model.parameters() (or fo.optim.param_groups(model))"
            )
    # Another thread changed the groups meanwhile: look again.
    return model_gradients(optimizer, model)


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

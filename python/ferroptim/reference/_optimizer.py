"""The loop around every reference element update, built from the optimizer's registry entry.

:func:`make_kernel` gives ``<kernel>_step(params, grads, <state lists>, <scalar arrays>, steps, *,
<hyperparameters>, grad_scale=1.0, clip_value=None)``, the twin of ``ferroptim._native``'s: it
converts the keyword arguments as the native binding does (TypeError), checks their ranges and
combinations (ValueError), checks the arrays (``gather``), then for each stepped tensor applies the
common gradient steps (:class:`GradPrep`) and the optimizer's ``update(h, tensor, p, g)``, which
writes the tensor's state arrays and returns the new parameter values.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from ferroptim._checks import kernel_flag, kernel_real
from ferroptim._registry import OptimizerSpec
from ferroptim.reference._checks import StateArg, Tensor, check_range, clip_args, gather
from ferroptim.reference._common import GradPrep, ieee

__all__ = ["Update", "make_kernel"]

#: ``update(h, tensor, p, g) -> new p``: ``h`` holds the kernel's hyperparameters as attributes,
#: ``p`` and ``g`` come after the common gradient steps; it writes ``tensor.states`` in place.
Update = Callable[[SimpleNamespace, Tensor, np.ndarray, np.ndarray], np.ndarray]


def _parse(spec: OptimizerSpec, name: str, hypers: dict[str, Any]) -> SimpleNamespace:
    """The keyword arguments converted (in order, as natively), then range-checked."""
    expected = spec.kernel_hypers
    missing = [n for n in expected if n not in hypers]
    if missing:
        raise TypeError(f"{name}() missing required keyword arguments: {missing}")
    unknown = sorted(set(hypers) - set(expected))
    if unknown:
        raise TypeError(f"{name}() got an unexpected keyword argument {unknown[0]!r}")
    rules = [(n, h) for h in spec.hypers for n in h.kernel_names]
    values = {
        n: kernel_flag(n, hypers[n]) if h.kind == "flag" else kernel_real(n, hypers[n])
        for n, h in rules
    }
    return SimpleNamespace(**values)


def make_kernel(spec: OptimizerSpec, update: Update | None = None) -> Callable[..., None]:
    """The reference kernel of ``spec`` around its element update (by default the ``update`` of
    module ``ferroptim.reference.<kernel>``)."""
    if update is None:
        update = importlib.import_module(f"ferroptim.reference.{spec.kernel}").update
    name = spec.kernel_name
    positional = (
        "params",
        "grads",
        *(s.kernel_arg for s in spec.states),
        *(s.kernel_arg for s in spec.scalars),
        "steps",
    )
    ranges = [(n, h.allowed) for h in spec.hypers for n in h.kernel_names if h.kind != "flag"]

    def kernel(params: Any, grads: Any, *lists: Any, **hypers: Any) -> None:
        if len(lists) + 2 != len(positional):
            raise TypeError(
                f"{name}() takes {len(positional)} positional arguments "
                f"({', '.join(positional)}) but {len(lists) + 2} were given"
            )
        grad_scale = hypers.pop("grad_scale", 1.0)
        clip_value = hypers.pop("clip_value", None)
        h = _parse(spec, name, hypers)
        scale, bound = clip_args(grad_scale, clip_value)
        for arg, allowed in ranges:
            check_range(arg, getattr(h, arg), allowed)
        if spec.combination is not None:
            why = spec.combination(vars(h))
            if why is not None:
                raise ValueError(why)
        states = [
            StateArg(s.kernel_arg, value, optional=s.optional, needed=s.used(vars(h)))
            for s, value in zip(spec.states, lists, strict=False)
        ]
        scalars = [(s.kernel_arg, lists[len(spec.states) + k]) for k, s in enumerate(spec.scalars)]
        batch = gather(params, grads, states, lists[-1], scalars[0] if scalars else None)
        decoupled = {"l2": False, "decoupled": True}.get(spec.decay)
        if decoupled is None:
            decoupled = h.decoupled_weight_decay
        prep = GradPrep.make(h.maximize, h.weight_decay, decoupled, h.lr, scale, bound)
        with ieee():
            for tensor in batch.tensors:
                p, g = prep.apply(tensor.param, tensor.grad)
                tensor.param[...] = update(h, tensor, p, g)
        batch.count_steps()

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__module__ = "ferroptim.reference"
    kernel.__doc__ = (
        f"One {spec.name} step on every tensor, in place (twin of ``ferroptim._native.{name}``)."
        f"\n\nPositional: {', '.join(positional)}; keyword: {', '.join(spec.kernel_hypers)}, "
        "grad_scale, clip_value.\n\n" + (update.__doc__ or "")
    )
    return kernel

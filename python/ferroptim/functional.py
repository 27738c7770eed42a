"""Stateless optimizer steps for users who keep their own state arrays.

Each function updates ``params`` and the given state arrays in place with one fused kernel call,
using torch.optim's defaults and formulas (see the optimizer classes in :mod:`ferroptim.optim`).
``step`` is the step number ``t`` of this update (1 for the first), one int for all tensors or one
per tensor. ``backend="reference"`` runs the pure-NumPy twin, which gives identical results.

There is one ``<kernel>_step`` per entry of ``ferroptim._registry.SPECS``, built by
:func:`functional_step`: positional ``params, grads``, the state lists (an optional one defaults
to None; when a flag turns it on, such as Adam's ``amsgrad``, the flag is inferred from whether
the list is given), the per-tensor scalar arrays, then keyword-only ``step`` (for optimizers that
use the step count), the hyperparameters with the class's defaults, and ``backend``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim._backends import kernel
from ferroptim._registry import SPECS, OptimizerSpec

Arrays = Sequence[np.ndarray]
Grads = Sequence[np.ndarray | None]

_P = inspect.Parameter


def _count(params: Arrays) -> int:
    """The number of tensors: ``params`` must be a list or tuple (a generator has no length)."""
    try:
        return len(params)
    except TypeError:
        raise TypeError(
            f"params must be a list of numpy arrays, got {type(params).__name__}"
        ) from None


def _steps_before(step: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """The kernels take per-tensor counts *before* this step; ``step`` is the count after it."""
    t = np.asarray(step)
    if t.dtype.kind not in "iu" or t.ndim > 1 or (t.ndim == 1 and t.shape[0] != n):
        raise ValueError(f"step must be an int or {n} ints, got {step!r}")
    if np.any(t < 1):
        raise ValueError(f"step must be at least 1, got {step!r}")
    if np.any(t > np.iinfo(np.int64).max):  # uint64 beyond int64 would wrap to negative counts
        raise ValueError(f"step must be below 2**63, got {step!r}")
    return np.broadcast_to(t.astype(np.int64) - 1, (n,)).copy()


def _signature(spec: OptimizerSpec) -> inspect.Signature:
    inferred = {s.flag for s in spec.states if s.flag}
    parameters = [_P("params", _P.POSITIONAL_OR_KEYWORD), _P("grads", _P.POSITIONAL_OR_KEYWORD)]
    for s in spec.states:
        default = None if s.optional else _P.empty
        parameters.append(_P(s.kernel_arg, _P.POSITIONAL_OR_KEYWORD, default=default))
    parameters += [_P(s.kernel_arg, _P.POSITIONAL_OR_KEYWORD) for s in spec.scalars]
    if spec.steps != "none":
        parameters.append(
            _P("step", _P.KEYWORD_ONLY, default=1 if spec.steps == "first" else _P.empty)
        )
    parameters += [
        _P(h.name, _P.KEYWORD_ONLY, default=h.default)
        for h in spec.hypers
        if h.kernel and h.name not in inferred
    ]
    parameters.append(_P("backend", _P.KEYWORD_ONLY, default="native"))
    return inspect.Signature(parameters)


def _docstring(spec: OptimizerSpec) -> str:
    lines = [f"{spec.summary} {spec.formula}"]
    for s in spec.states:
        if s.flag:
            lines.append(f"Passing ``{s.kernel_arg}`` turns on ``{s.condition}``.")
        elif s.optional:
            lines.append(f"``{s.kernel_arg}`` is required exactly when ``{s.condition}``.")
    for scalar in spec.scalars:
        lines.append(
            f"``{scalar.kernel_arg}`` is a float32 array with one running {scalar.name} per tensor "
            f"(start it at {scalar.initial:g}); it is updated in place."
        )
    return "\n\n".join(lines)


def functional_step(spec: OptimizerSpec) -> Callable[..., None]:
    """The stateless step of ``spec``: hyperparameters checked as the class checks them (an
    error names the argument), then one kernel call."""
    signature = _signature(spec)
    inferred = {s.flag: s.kernel_arg for s in spec.states if s.flag}

    def step_fn(*args: Any, **kwargs: Any) -> None:
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        a = given.arguments
        group: dict[str, Any] = {}
        for h in spec.hypers:
            if h.name in inferred:
                group[h.name] = a[inferred[h.name]] is not None
            else:
                group[h.name] = a.get(h.name, h.default)
        spec.check_group(group)
        steps = _steps_before(a.get("step", 1), _count(a["params"]))
        lists = [a[s.kernel_arg] for s in spec.states] + [a[s.kernel_arg] for s in spec.scalars]
        run = kernel(a["backend"], spec.kernel_name)
        run(a["params"], a["grads"], *lists, steps, **spec.kernel_kwargs(group))

    step_fn.__name__ = step_fn.__qualname__ = spec.kernel_name
    step_fn.__module__ = __name__
    step_fn.__doc__ = _docstring(spec)
    step_fn.__signature__ = signature  # type: ignore[attr-defined]
    return step_fn


#: every stateless step by name
FUNCTIONS: dict[str, Callable[..., None]] = {s.kernel_name: functional_step(s) for s in SPECS}
globals().update(FUNCTIONS)

__all__ = sorted(FUNCTIONS)


def __getattr__(name: str) -> Any:
    """Only reached for names that do not exist (the steps are module globals); typed ``Any`` so
    that type checkers accept the registry-built functions."""
    raise AttributeError(f"module 'ferroptim.functional' has no attribute {name!r}")

"""Argument checks of the reference kernels, the same rules as ``ferroptim._native``.

Every check runs before any array is written, so a refused call changes nothing. The order is the
native one: hyperparameter conversion (TypeError), hyperparameter ranges (ValueError), each
optional state list given exactly when the options use it (even with nothing to step), the lists,
then tensor by tensor its parameter, gradient and state arrays, then ``steps`` and other per-tensor
scalar arrays, then memory overlap, then step counts. Messages name the argument and, for
arrays, the list index (``grads[3] has shape (4,) but params[3] ...``).

Tensors whose gradient is ``None`` are skipped entirely: their arrays are neither checked nor
written, and their step count is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferroptim._array_checks import ArrayChecker
from ferroptim._checks import NON_NEGATIVE, Range, invalid, kernel_real

__all__ = ["Batch", "StateArg", "Tensor", "check_range", "clip_args", "gather"]

_STEP_LIMIT = np.iinfo(np.int64).max  # steps[i] + 1 must fit in an int64


def check_range(name: str, value: float, allowed: Range) -> None:
    """``value`` must lie in ``allowed`` (and be finite), as the native ``validate``."""
    if not allowed.contains(value):
        raise invalid(name, value, allowed.describe(name))


def clip_args(grad_scale: object, clip_value: object) -> tuple[float, float | None]:
    """The in-step clipping arguments: ``grad_scale`` any real number (NaN included, as a
    non-finite norm gives), ``clip_value`` None or finite and ``>= 0``."""
    scale = kernel_real("grad_scale", grad_scale)
    if clip_value is None:
        return scale, None
    bound = kernel_real("clip_value", clip_value)
    check_range("clip_value", bound, NON_NEGATIVE)
    return scale, bound


# ----------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class StateArg:
    """One state-list argument of a kernel.

    ``optional`` lists may be ``None`` (absent); ``needed`` says whether the chosen options use the
    list, which must then be given (and must be ``None`` otherwise).
    """

    name: str
    value: object
    optional: bool = False
    needed: bool = True


@dataclass
class Tensor:
    """One stepped tensor: its list index, arrays (plain ndarray views) and step ``t`` to use."""

    index: int
    param: np.ndarray
    grad: np.ndarray
    states: list[np.ndarray]
    step: int
    #: the call's per-tensor float32 scalars (NAdam's mu_products), or None
    scalars: np.ndarray | None = None


@dataclass
class Batch:
    """Every checked tensor of one call, plus the per-tensor scalar arrays."""

    tensors: list[Tensor]
    steps: np.ndarray | None
    scalars: np.ndarray | None

    def count_steps(self) -> None:
        """Increment ``steps[i]`` of every stepped tensor (after a successful update)."""
        if self.steps is not None:
            for tensor in self.tensors:
                self.steps[tensor.index] += 1


def _items(arg: str, obj: object) -> list:
    """A list argument as a Python list (list, tuple or other non-array sequence)."""
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, np.ndarray):
        return list(obj)
    raise TypeError(f"{arg} must be a list of numpy arrays, got {type(obj).__name__}")


def _check_slots(states: Sequence[StateArg]) -> None:
    """An optional list is given exactly when the options use it (checked first, before the
    lists, and whether or not any tensor is stepped, as natively)."""
    for state in states:
        if not state.optional:
            continue
        given = state.value is not None
        if state.needed and not given:
            raise ValueError(f"{state.name} is required by these options but is None")
        if given and not state.needed:
            raise ValueError(f"{state.name} must be None with these options")


def gather(
    params: object,
    grads: object,
    states: Sequence[StateArg],
    steps: object | None,
    scalars: tuple[str, object] | None = None,
    *,
    uses_steps: bool = True,
    bf16_state: bool = False,
) -> Batch:
    """Check every argument of one call and return the tensors to step.

    ``steps`` is the int64 step-count array (``uses_steps=False`` for kernels without one);
    ``scalars`` is ``(name, array)`` of a float32 per-tensor scalar array (NAdam's mu_products);
    ``bf16_state``: the state arrays are bfloat16 bits (uint16) of float32 parameters.
    """
    _check_slots(states)
    param_list = _items("params", params)
    grad_list = _items("grads", grads)
    n = len(param_list)
    if len(grad_list) != n:
        raise ValueError(
            f"grads: got {len(grad_list)} grads for {n} params; pass one gradient (or None) per "
            "parameter"
        )
    lists: list[tuple[str, list]] = []
    for state in states:
        if state.optional and state.value is None:
            continue
        items = _items(state.name, state.value)
        if len(items) != n:
            raise ValueError(f"{state.name} has {len(items)} arrays for {n} params")
        lists.append((state.name, items))

    checker = ArrayChecker()
    stepped: list[tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]] = []
    for i in range(n):
        if grad_list[i] is None:
            continue
        param = checker.array(param_list[i], "params", i, True)
        if bf16_state and param.dtype != np.float32:
            raise TypeError(
                f"params[{i}] has dtype {param.dtype}; bfloat16 state needs float32 parameters"
            )
        grad = checker.array(grad_list[i], "grads", i, False, like=param)
        state_array = checker.bf16_array if bf16_state else checker.array_like
        arrays = [state_array(items[i], name, i, param) for name, items in lists]
        stepped.append((i, param, grad, arrays))

    step_array = checker.scalars(steps, "steps", n, np.int64) if uses_steps else None
    scalar_array = None
    if scalars is not None:
        scalar_array = checker.scalars(scalars[1], scalars[0], n, np.float32)
    checker.check_overlaps()

    tensors = []
    for i, param, grad, arrays in stepped:
        step = 0
        if step_array is not None:
            step = int(step_array[i])
            if not 0 <= step < _STEP_LIMIT:
                raise ValueError(f"steps[{i}] is {step}; step counts must be non-negative")
        tensors.append(Tensor(i, param, grad, arrays, step + 1, scalar_array))

    return Batch(tensors, step_array, scalar_array)

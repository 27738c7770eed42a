"""Gradient clipping with torch.nn.utils semantics, one native call per list of gradients.

Every function takes the gradients (``model.gradients()``) or the model itself: torch's
spelling ``clip_grad_norm_(model.parameters(), 1.0)`` clips the gradients stored on the
parameters, so here passing a :class:`~ferroptim.nn.Module` clips its gradients, and the
in-place functions raise ``TypeError`` for arrays that are parameters of a live module
(clipping them would rescale the weights). The read-only norms measure whatever they get.

Norms accumulate in float64 whatever the dtype, in a fixed order: the result has the same bits for
any number of threads and at every SIMD level. ``None`` entries are skipped (as torch skips
parameters without a gradient). Each function has a pure-NumPy twin (``backend="reference"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ferroptim._backends import CLIPPING, backend_module
from ferroptim.nn import _live
from ferroptim.nn.module import Module

Grads = Sequence[np.ndarray | None] | Module


def _read_only(grads: Any) -> Any:
    """A Module's ``gradients()``; anything else as given (the read-only norms may measure
    parameters too)."""
    return grads.gradients() if isinstance(grads, Module) else grads


def _gradients(grads: Any, function: str) -> Any:
    """The gradient arrays an in-place function may write: a Module's ``gradients()``, or the
    sequence itself after checking that none of its arrays is a parameter of a live module."""
    if isinstance(grads, Module):
        return grads.gradients()
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
        return grads  # the kernels raise their usual, argument-naming errors
    for i, g in enumerate(grads):
        owners = _live.owners(g)
        if owners:
            module, name = owners[0]
            raise TypeError(
                f"{function}: grads[{i}] (shape {g.shape}) is the parameter {name!r} of a "
                f"{type(module).__name__}, not a gradient; pass the model "
                f"({function}(model, ...)) or model.gradients()"
            )
    return grads


def _backend(backend: str) -> ModuleType:
    return backend_module(backend, CLIPPING)


def global_norm(
    grads: Grads,
    norm_type: float = 2.0,
    clip_value: float | None = None,
    *,
    backend: str = "native",
) -> float:
    """The norm of all elements of ``grads`` together (read only).

    ``(sum |g|**p) ** (1/p)`` over every element of every array (``max |g|`` for ``inf``); with
    ``clip_value``, of the values clamped into ``[-clip_value, clip_value]``.

    Parameters
    ----------
    grads : sequence of numpy.ndarray or None
    norm_type : float, default 2.0
        ``p > 0`` or ``float("inf")``.
    clip_value : float, optional
    backend : {"native", "reference"}

    Returns
    -------
    float
    """
    return _backend(backend).global_norm(_read_only(grads), norm_type, clip_value)


def tensor_norms(grads: Grads, norm_type: float = 2.0, *, backend: str = "native") -> list[float]:
    """The norm of each array of ``grads`` on its own (read only); ``None`` entries are skipped."""
    return _backend(backend).tensor_norms(_read_only(grads), norm_type)


def clip_grad_norm_(
    grads: Grads,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    *,
    backend: str = "native",
) -> float:
    """Scale ``grads`` in place so that their total norm is at most ``max_norm`` (torch's
    ``clip_grad_norm_``).

    ``coef = min(max_norm / (total + 1e-6), 1)``; every array is multiplied by ``coef``.

    Parameters
    ----------
    grads : sequence of numpy.ndarray or None, or Module
        The gradients, or a model whose ``gradients()`` are clipped (torch's
        ``clip_grad_norm_(model.parameters(), ...)`` spelling is refused, see the module notes).

    Returns
    -------
    float
        The total norm before clipping.

    Raises
    ------
    RuntimeError
        With ``error_if_nonfinite``, when the total norm is nan or inf (nothing is modified).
    ValueError, TypeError
        On an empty list, ``max_norm <= 0``, ``norm_type <= 0`` or a bad array.
    """
    return _backend(backend).clip_grad_norm_(
        _gradients(grads, "clip_grad_norm_"), max_norm, norm_type, error_if_nonfinite
    )


def clip_grad_norm_per_tensor_(
    grads: Grads, max_norm: float, norm_type: float = 2.0, *, backend: str = "native"
) -> list[float]:
    """Scale each array in place so that its own norm is at most ``max_norm`` (Keras'
    ``clipnorm``): ``g *= min(max_norm / (norm(g) + 1e-6), 1)``. Returns each array's norm."""
    return _backend(backend).clip_grad_norm_per_tensor_(
        _gradients(grads, "clip_grad_norm_per_tensor_"), max_norm, norm_type
    )


def clip_grad_value_(grads: Grads, clip_value: float, *, backend: str = "native") -> None:
    """Clamp every element of ``grads`` into ``[-clip_value, clip_value]`` in place (torch's
    ``clip_grad_value_``; NaN stays NaN)."""
    _backend(backend).clip_grad_value_(_gradients(grads, "clip_grad_value_"), clip_value)


__all__ = [
    "clip_grad_norm_",
    "clip_grad_norm_per_tensor_",
    "clip_grad_value_",
    "global_norm",
    "tensor_norms",
]

"""The plumbing every loss shares: reduction, input checks, the upstream gradient.

See :mod:`ferroptim.nn.loss` for the calling convention.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from ferroptim.nn._checks import as_numeric
from ferroptim.nn._grad_mode import mark_gradient, remember_loss_input

_REDUCTIONS = ("mean", "sum", "none")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class LossValue(np.float64):
    """A reduced loss value: a ``numpy.float64`` (so a Python ``float``: arithmetic,
    ``float(loss)`` and ``loss.item()`` work as in torch) whose ``backward()`` explains how
    ferroptim backpropagates instead of failing with an ``AttributeError``."""

    __slots__ = ()

    def backward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            "a ferroptim loss value is a number, not a graph node (there is no autograd): "
            "backpropagate with model.backward(loss_fn.backward())"
        )


class Loss:
    """Base of the losses: validates ``reduction`` and holds the forward cache.

    Subclasses implement ``__call__(input, target)`` (store what ``backward`` needs in
    ``self._cache`` only after every check passed, and call ``self._remember(input)``) and
    ``backward(grad_output=None)`` (returning ``self._marked(gradient)``).

    Reduced losses return a :class:`LossValue`, a ``numpy.float64``: a Python ``float``
    subclass, so arithmetic and ``float(loss)`` work as before, ``loss.item()`` works as in
    torch, and ``loss.backward()`` says what to call instead.
    """

    def __init__(self, reduction: str = "mean") -> None:
        name = type(self).__name__
        if not isinstance(reduction, str):
            raise TypeError(f"{name}: reduction must be a str, got {reduction!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
            )
        self.reduction = reduction
        self._cache: Any = None

    def _float_input(self, value: Any) -> np.ndarray:
        name = type(self).__name__
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name}: input must be a float array, got {type(value).__name__}")
        array = np.asarray(value)
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name}: input must be float32 or float64, got dtype {array.dtype}")
        return array

    def _numeric(self, value: Any, what: str) -> np.ndarray:
        return as_numeric(value, what, type(self).__name__)

    def _upstream(self, grad_output: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """``grad_output`` checked against the loss output: a scalar multiplier for the
        reduced losses, an array of ``shape`` for ``reduction="none"``."""
        name = type(self).__name__
        if self.reduction != "none":
            if grad_output is None:
                return 1.0
            scale = self._numeric(grad_output, "grad_output")
            if scale.ndim != 0:
                raise ValueError(
                    f"{name}: grad_output must be a scalar for reduction={self.reduction!r}, "
                    f"got shape {scale.shape}"
                )
            return float(scale)
        if grad_output is None:
            return np.ones(shape, dtype)
        upstream = self._numeric(grad_output, "grad_output")
        if upstream.shape != shape:
            raise ValueError(
                f"{name}: grad_output has shape {upstream.shape}, expected the loss's {shape}"
            )
        return upstream.astype(dtype, copy=False)

    def _reduce(self, elementwise: np.ndarray) -> np.float64 | np.ndarray:
        if self.reduction == "none":
            return elementwise
        total = float(elementwise.sum())
        if self.reduction == "sum":
            return LossValue(total)
        return LossValue(total / elementwise.size if elementwise.size else math.nan)

    def _remember(self, input: Any) -> None:
        """Remember (weakly) the array this forward was called on, for :meth:`_marked`."""
        remember_loss_input(self, input)

    def _marked(self, gradient: np.ndarray) -> np.ndarray:
        """``gradient``, recorded as the gradient of the remembered input: a model's
        ``backward`` refuses it when that input is not its last training output."""
        return mark_gradient(self, gradient)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


def optional_array(value: Any, name: str, layer: str) -> np.ndarray | None:
    """``None``, or a private float64 copy of a finite numeric array (``weight`` arguments)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{layer}: {name} must be a numeric array, got {type(value).__name__}")
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{layer}: {name} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{layer}: {name} must be finite")
    return np.array(array, dtype=np.float64)  # private copy: later edits by the caller don't leak

"""Loss functions with torch's names, defaults and reductions, and their input gradients.

A loss is called as ``loss(input, target)`` and returns a ``numpy.float64`` (a Python float
subclass, with torch's ``.item()``) for ``reduction="mean"`` or ``"sum"``; with
``reduction="none"`` it returns the per-element losses as an array (torch returns a tensor in
every case). ``loss.backward(grad_output=None)`` then returns d loss / d input, shaped and
typed like ``input`` (float32 or float64):

* ``"mean"`` / ``"sum"``: ``grad_output`` is an optional scalar multiplier (default 1);
* ``"none"``: ``grad_output`` is the upstream gradient shaped like the returned array
  (default ones, i.e. the gradient of ``loss(...).sum()``).

``backward`` frees the cached forward state; calling it before a forward (or twice) raises
``RuntimeError``. Shape mismatches raise ``ValueError`` naming both shapes; non-float inputs
raise ``TypeError``. A call that fails leaves the previous forward state untouched.

:class:`CrossEntropyLoss` lives in :mod:`ferroptim.nn.cross_entropy` and is re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim.nn import functional as F
from ferroptim.nn._checks import require_cache
from ferroptim.nn._loss_base import Loss, optional_array
from ferroptim.nn.cross_entropy import CrossEntropyLoss

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss"]


class _ElementwiseLoss(Loss):
    """A loss ``l(x, y)`` applied elementwise to same-shaped input and target, then reduced;
    subclasses give the elementwise value and its derivative in ``x``."""

    def __call__(self, input: Any, target: Any) -> np.float64 | np.ndarray:
        x = self._float_input(input)
        y = self._numeric(target, "target")
        if y.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__}: target shape {y.shape} does not match input shape "
                f"{x.shape}"
            )
        y = y.astype(x.dtype, copy=False)
        values, state = self._elementwise(x, y)
        self._cache = (state, x.shape, x.dtype)
        self._remember(input)
        return self._reduce(values)

    def backward(self, grad_output: Any = None) -> np.ndarray:
        state, shape, dtype = require_cache(self._cache, type(self).__name__)
        upstream = self._upstream(grad_output, shape, dtype)
        self._cache = None
        grad = self._derivative(state)
        if self.reduction == "mean":
            upstream = upstream / max(math.prod(shape), 1)
        return self._marked((grad * upstream).astype(dtype, copy=False))

    def _elementwise(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _derivative(self, state: Any) -> np.ndarray:
        raise NotImplementedError


class MSELoss(_ElementwiseLoss):
    """:math:`\\ell = (x - y)^2`, :math:`\\partial\\ell/\\partial x = 2(x - y)`; reduced by
    ``reduction`` (``"mean"`` divides by the number of elements)."""

    def _elementwise(self, x, y):
        diff = x - y
        return diff * diff, diff

    def _derivative(self, diff):
        return 2.0 * diff


class L1Loss(_ElementwiseLoss):
    """:math:`\\ell = |x - y|`, :math:`\\partial\\ell/\\partial x = \\mathrm{sign}(x - y)` with
    torch's subgradient 0 where :math:`x = y`."""

    def _elementwise(self, x, y):
        diff = x - y
        return np.abs(diff), diff

    def _derivative(self, diff):
        return np.sign(diff)


class HuberLoss(_ElementwiseLoss):
    """:math:`\\ell = \\tfrac12 d^2` if :math:`|d| < \\delta`, else
    :math:`\\delta(|d| - \\tfrac12\\delta)` with :math:`d = x - y`;
    :math:`\\partial\\ell/\\partial x = \\mathrm{clip}(d, -\\delta, \\delta)`.

    ``delta`` must be a positive float (torch's default 1.0).
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.number)):
            raise TypeError(f"HuberLoss: delta must be a float, got {delta!r}")
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"HuberLoss: delta must be a positive finite float, got {delta}")
        self.delta = float(delta)

    def _elementwise(self, x, y):
        diff = x - y
        size = np.abs(diff)
        quadratic = size < self.delta
        values = np.where(quadratic, 0.5 * diff * diff, self.delta * (size - 0.5 * self.delta))
        return values, diff

    def _derivative(self, diff):
        return np.clip(diff, -self.delta, self.delta)

    def __repr__(self) -> str:
        return f"HuberLoss(reduction={self.reduction!r}, delta={self.delta})"


class BCEWithLogitsLoss(_ElementwiseLoss):
    """Binary cross entropy on logits :math:`x` with targets :math:`y \\in [0, 1]`:

    .. math::  \\ell = -w\\,[\\,p\\,y\\log\\sigma(x) + (1-y)\\log(1-\\sigma(x))\\,]
               = w\\,[(1-y)\\,x + (1 + (p-1)y)\\,\\mathrm{softplus}(-x)]

    evaluated in the second (overflow-free) form, with
    :math:`\\partial\\ell/\\partial x = w\\,[(1-y) - (1 + (p-1)y)\\,\\sigma(-x)]`
    (:math:`= w(\\sigma(x) - y)` without ``pos_weight``).

    Parameters
    ----------
    weight : array_like, optional
        :math:`w`, broadcast against the input (e.g. per-element or per-class weights).
    reduction : "mean" | "sum" | "none"
        ``"mean"`` divides by the number of elements (``weight`` does not normalize).
    pos_weight : array_like, optional
        :math:`p`, the weight of positive examples, broadcast against the input (usually one
        value per class, on the last axis).
    """

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight = optional_array(weight, "weight", "BCEWithLogitsLoss")
        self.pos_weight = optional_array(pos_weight, "pos_weight", "BCEWithLogitsLoss")

    def _broadcast(self, array: np.ndarray | None, name: str, x: np.ndarray) -> Any:
        if array is None:
            return None
        try:
            shape = np.broadcast_shapes(array.shape, x.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ValueError(
                f"BCEWithLogitsLoss: {name} of shape {array.shape} does not broadcast to the "
                f"input shape {x.shape}"
            )
        return array.astype(x.dtype, copy=False)

    def _elementwise(self, x, y):
        weight = self._broadcast(self.weight, "weight", x)
        pos_weight = self._broadcast(self.pos_weight, "pos_weight", x)
        log_weight = None if pos_weight is None else 1.0 + (pos_weight - 1.0) * y
        softplus_neg = F.softplus(-x)
        values = (1.0 - y) * x + (softplus_neg if log_weight is None else log_weight * softplus_neg)
        if weight is not None:
            values = values * weight
        return values, (x, y, weight, log_weight)

    def _derivative(self, state):
        x, y, weight, log_weight = state
        if log_weight is None:
            grad = F.sigmoid(x) - y
        else:
            grad = (1.0 - y) - log_weight * F.sigmoid(-x)
        return grad if weight is None else grad * weight

    def __repr__(self) -> str:
        return (
            f"BCEWithLogitsLoss(reduction={self.reduction!r}, weight={self.weight is not None}, "
            f"pos_weight={self.pos_weight is not None})"
        )

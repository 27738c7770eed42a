"""Loss functions with torch's names, defaults and reductions, and their input gradients.

A loss is called as ``loss(input, target)`` and returns a Python float for
``reduction="mean"`` or ``"sum"``; with ``reduction="none"`` it returns the per-element losses
as an array (torch returns a tensor in every case). ``loss.backward(grad_output=None)`` then
returns d loss / d input, shaped and typed like ``input`` (float32 or float64):

* ``"mean"`` / ``"sum"``: ``grad_output`` is an optional scalar multiplier (default 1);
* ``"none"``: ``grad_output`` is the upstream gradient shaped like the returned array
  (default ones, i.e. the gradient of ``loss(...).sum()``).

``backward`` frees the cached forward state; calling it before a forward (or twice) raises
``RuntimeError``. Shape mismatches raise ``ValueError`` naming both shapes; non-float inputs
raise ``TypeError``. Nothing is cached when a call fails.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim.nn import functional as F
from ferroptim.nn._checks import require_cache

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _Loss:
    """Shared plumbing: reduction, input conversion, the cache, the upstream gradient."""

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
        name = type(self).__name__
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name}: {what} must be a numeric array, got {type(value).__name__}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name}: {what} must be numeric, got dtype {array.dtype}")
        return array

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

    def _reduce(self, elementwise: np.ndarray) -> float | np.ndarray:
        if self.reduction == "none":
            return elementwise
        total = elementwise.sum()
        if self.reduction == "sum":
            return float(total)
        return float(total) / elementwise.size if elementwise.size else math.nan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class _ElementwiseLoss(_Loss):
    """A loss ``l(x, y)`` applied elementwise to same-shaped input and target, then reduced;
    subclasses give the elementwise value and its derivative in ``x``."""

    def __call__(self, input: Any, target: Any) -> float | np.ndarray:
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
        return self._reduce(values)

    def backward(self, grad_output: Any = None) -> np.ndarray:
        state, shape, dtype = require_cache(self._cache, type(self).__name__)
        upstream = self._upstream(grad_output, shape, dtype)
        self._cache = None
        grad = self._derivative(state)
        if self.reduction == "mean":
            upstream = upstream / max(math.prod(shape), 1)
        return (grad * upstream).astype(dtype, copy=False)

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


def _optional_array(value: Any, name: str, layer: str) -> np.ndarray | None:
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
        self.weight = _optional_array(weight, "weight", "BCEWithLogitsLoss")
        self.pos_weight = _optional_array(pos_weight, "pos_weight", "BCEWithLogitsLoss")

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


class CrossEntropyLoss(_Loss):
    """Softmax cross entropy on logits with integer class targets (torch semantics).

    For logits :math:`x` of shape ``(N, C)`` (or ``(N, C, d1, ...)``, classes on axis 1, or an
    unbatched ``(C,)``) and targets :math:`t` of shape ``(N,)`` (``(N, d1, ...)``, ``()``), with
    :math:`\\log p = \\mathrm{log\\_softmax}(x)` over the classes (fused, max-shifted), class
    weights :math:`w` (ones by default) and smoothing :math:`\\varepsilon`:

    .. math::  \\ell_i = (1-\\varepsilon)\\,w_{t_i}(-\\log p_{i t_i})
               + \\frac{\\varepsilon}{C} \\sum_c w_c(-\\log p_{ic})

    and :math:`\\ell_i = 0` where :math:`t_i` = ``ignore_index``. ``"sum"`` adds the
    :math:`\\ell_i`; ``"mean"`` divides that sum by :math:`\\sum_i w_{t_i}` over the
    non-ignored targets (the count when unweighted; NaN if every target is ignored, as in torch);
    ``"none"`` returns the :math:`\\ell_i` shaped like the target. The gradient is

    .. math::  \\frac{\\partial\\ell_i}{\\partial x_{ic}} = (1-\\varepsilon)w_{t_i}(p_{ic} -
               [c = t_i]) + \\frac{\\varepsilon}{C}\\Big(p_{ic}\\sum_k w_k - w_c\\Big).

    Parameters
    ----------
    weight : array_like of shape (C,), optional
        Per-class weights.
    ignore_index : int
        Target value that contributes neither loss nor gradient (default -100).
    reduction : "mean" | "sum" | "none"
    label_smoothing : float in [0, 1]

    Raises
    ------
    TypeError
        Non-float input, or targets that are not integers (class probabilities are not
        supported).
    ValueError
        Target shape not matching the input, ``weight`` not of shape ``(C,)``, or a target
        outside ``[0, C)`` that is not ``ignore_index`` (the message names the value).
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        layer = "CrossEntropyLoss"
        weight = _optional_array(weight, "weight", layer)
        if weight is not None and weight.ndim != 1:
            raise ValueError(
                f"{layer}: weight must be 1-D (one per class), got shape {weight.shape}"
            )
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"{layer}: ignore_index must be an int, got {ignore_index!r}")
        if isinstance(label_smoothing, bool) or not isinstance(
            label_smoothing, (int, float, np.number)
        ):
            raise TypeError(f"{layer}: label_smoothing must be a float, got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"{layer}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.weight = weight
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self._weight_as: dict[np.dtype, np.ndarray] = {}

    def _class_weight(self, dtype: np.dtype, classes: int) -> np.ndarray | None:
        if self.weight is None:
            return None
        if self.weight.shape != (classes,):
            raise ValueError(
                f"CrossEntropyLoss: weight has shape {self.weight.shape} but the input has "
                f"{classes} classes"
            )
        if dtype not in self._weight_as:
            self._weight_as[dtype] = self.weight.astype(dtype)
        return self._weight_as[dtype]

    def _targets(self, target: Any, x: np.ndarray) -> np.ndarray:
        """The targets as a flat int64 array, after the dtype, shape and range checks."""
        layer = "CrossEntropyLoss"
        if isinstance(target, (str, bytes)) or target is None:
            raise TypeError(
                f"{layer}: target must be an integer array, got {type(target).__name__}"
            )
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            raise TypeError(f"{layer}: target must hold integer class indices, got dtype {t.dtype}")
        if x.ndim == 0:
            raise ValueError(f"{layer}: input must have a class axis, got shape {x.shape}")
        expected = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
        if t.shape != expected:
            raise ValueError(
                f"{layer}: target shape {t.shape} does not match input shape {x.shape} "
                f"(expected target shape {expected})"
            )
        flat = t.reshape(-1).astype(np.int64, copy=False)
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        if flat.size and (flat.min() < 0 or flat.max() >= classes):
            bad = (flat != self.ignore_index) & ((flat < 0) | (flat >= classes))
            if bad.any():
                raise ValueError(
                    f"{layer}: target value {int(flat[bad][0])} is out of range for {classes} "
                    f"classes (expected 0..{classes - 1} or ignore_index={self.ignore_index})"
                )
        return flat

    def __call__(self, input: Any, target: Any) -> float | np.ndarray:
        x = self._float_input(input)
        flat_target = self._targets(target, x)
        classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        weight = self._class_weight(x.dtype, classes)
        if x.ndim == 1:
            logits = x.reshape(1, classes)
        elif x.ndim == 2:
            logits = x
        else:
            logits = np.moveaxis(x, 1, -1).reshape(-1, classes)
        rows = np.arange(logits.shape[0])

        valid = flat_target != self.ignore_index
        all_valid = bool(valid.all())
        safe_target = flat_target if all_valid else np.where(valid, flat_target, 0)
        # Fused log-softmax: log p = shifted - log(sum exp(shifted)); p is rebuilt in backward.
        shifted = logits - logits.max(axis=1, keepdims=True)
        exps = np.exp(shifted)
        sums = exps.sum(axis=1)
        log_sums = np.log(sums)
        nll = log_sums - shifted[rows, safe_target]
        if weight is None:
            sample_weight = None if all_valid else valid.astype(x.dtype)
        else:
            sample_weight = weight[safe_target] if all_valid else weight[safe_target] * valid
        losses = nll if sample_weight is None else nll * sample_weight
        eps = self.label_smoothing
        if eps > 0:
            if weight is None:
                smooth = classes * log_sums - shifted.sum(axis=1)
            else:
                smooth = weight.sum() * log_sums - shifted @ weight
            if not all_valid:
                smooth = smooth * valid
            losses = (1.0 - eps) * losses + (eps / classes) * smooth

        if self.reduction == "mean":
            total = len(rows) if sample_weight is None else float(sample_weight.sum())
            result: float | np.ndarray = float(losses.sum()) / total if total else math.nan
            scale = 1.0 / total if total else 0.0
        elif self.reduction == "sum":
            result, scale = float(losses.sum()), 1.0
        else:
            shape = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
            result, scale = losses.reshape(shape).astype(x.dtype, copy=False), 1.0
        self._cache = (
            exps,
            sums,
            rows,
            safe_target,
            valid,
            all_valid,
            sample_weight,
            weight,
            scale,
            x.shape,
            x.dtype,
        )
        return result

    def backward(self, grad_output: Any = None) -> np.ndarray:
        (exps, sums, rows, target, valid, all_valid, sample_weight, weight, scale, shape, dtype) = (
            require_cache(self._cache, "CrossEntropyLoss")
        )
        loss_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
        upstream = self._upstream(grad_output, loss_shape, dtype)
        self._cache = None
        classes = exps.shape[1]
        # Per-row coefficient: reduction scale (or the upstream value) times the row's weight.
        row_scale = upstream.reshape(-1) if self.reduction == "none" else scale * upstream
        nll_coef = row_scale if sample_weight is None else row_scale * sample_weight
        eps = self.label_smoothing
        if eps > 0:
            nll_coef = (1.0 - eps) * nll_coef
            smooth_coef = (eps / classes) * (row_scale if all_valid else row_scale * valid)
            weight_sum = classes if weight is None else weight.sum()
            prob_coef = nll_coef + smooth_coef * weight_sum
        else:
            prob_coef = nll_coef
        grad = exps * (np.broadcast_to(prob_coef, sums.shape) / sums)[:, None]
        grad[rows, target] -= nll_coef
        if eps > 0:
            smooth_column = np.broadcast_to(smooth_coef, sums.shape)[:, None]
            grad -= smooth_column if weight is None else smooth_column * weight
        grad = grad.astype(dtype, copy=False)
        if len(shape) == 1:
            return grad.reshape(shape)
        if len(shape) == 2:
            return grad
        moved = grad.reshape(shape[0], *shape[2:], classes)
        return np.ascontiguousarray(np.moveaxis(moved, -1, 1))

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(weight={self.weight is not None}, ignore_index={self.ignore_index},"
            f" reduction={self.reduction!r}, label_smoothing={self.label_smoothing})"
        )

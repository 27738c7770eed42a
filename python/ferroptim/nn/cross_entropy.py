"""Softmax cross entropy with integer class targets (``torch.nn.CrossEntropyLoss``).

Calling convention as for every loss in :mod:`ferroptim.nn.loss`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ferroptim._checks import CLOSED_UNIT, check_int, check_real
from ferroptim.nn._checks import require_cache
from ferroptim.nn._loss_base import Loss, LossValue, optional_array

__all__ = ["CrossEntropyLoss"]


class _Forward(NamedTuple):
    """What ``backward`` needs from a forward pass (rows flattened to ``(M, C)``)."""

    exps: np.ndarray  # exp(logits - row max), (M, C)
    sums: np.ndarray  # their row sums, (M,)
    rows: np.ndarray  # arange(M)
    target: np.ndarray  # targets with ignored entries replaced by 0, (M,)
    valid: np.ndarray  # target != ignore_index, (M,)
    all_valid: bool
    sample_weight: np.ndarray | None  # w[target] * valid (None: all ones)
    weight: np.ndarray | None  # class weights in the input dtype
    scale: float  # 1 / sum of sample weights for "mean", else 1
    shape: tuple[int, ...]  # the input's shape


class CrossEntropyLoss(Loss):
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
        weight = optional_array(weight, "weight", layer)
        if weight is not None and weight.ndim != 1:
            raise ValueError(
                f"{layer}: weight must be 1-D (one per class), got shape {weight.shape}"
            )
        self.ignore_index = check_int(f"{layer}: ignore_index", ignore_index)
        label_smoothing = check_real(f"{layer}: label_smoothing", label_smoothing, CLOSED_UNIT)
        self.weight = weight
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

    def __call__(self, input: Any, target: Any) -> np.float64 | np.ndarray:
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
            mean = float(losses.sum()) / total if total else math.nan
            result: np.float64 | np.ndarray = LossValue(mean)
            scale = 1.0 / total if total else 0.0
        elif self.reduction == "sum":
            result, scale = LossValue(losses.sum()), 1.0
        else:
            shape = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
            result, scale = losses.reshape(shape).astype(x.dtype, copy=False), 1.0
        self._cache = _Forward(
            exps, sums, rows, safe_target, valid, all_valid, sample_weight, weight, scale, x.shape
        )
        self._remember(input)
        return result

    def backward(self, grad_output: Any = None) -> np.ndarray:
        cache = require_cache(self._cache, "CrossEntropyLoss")
        exps, sums, rows, target, valid, all_valid, sample_weight, weight, scale, shape = cache
        dtype = exps.dtype
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
            return self._marked(grad.reshape(shape))
        if len(shape) == 2:
            return self._marked(grad)
        moved = grad.reshape(shape[0], *shape[2:], classes)
        return self._marked(np.ascontiguousarray(np.moveaxis(moved, -1, 1)))

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(weight={self.weight is not None}, ignore_index={self.ignore_index},"
            f" reduction={self.reduction!r}, label_smoothing={self.label_smoothing})"
        )

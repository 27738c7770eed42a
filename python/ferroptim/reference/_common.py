"""The arithmetic building blocks every reference kernel shares.

The reference kernels reproduce the native ones bit for bit, so they follow the same two rules:

* Host scalars (bias corrections, step sizes, ...) are computed in Python float64 exactly as the
  Rust code computes them, then rounded once to the array dtype with ``dtype.type(value)``
  (:func:`cast`).
* Elementwise math runs in the array dtype with NumPy ufuncs, one IEEE operation per native
  operation, in the same order. Only NumPy scalars of the array dtype enter array arithmetic.

Floating-point warnings are silenced (:func:`ieee`): like the native code, the kernels return
inf/NaN where IEEE arithmetic gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GradPrep", "cast", "clamp", "fdiv", "fsqrt", "ieee", "lerp", "maximum", "sign"]


def ieee() -> np.errstate:
    """A context in which NumPy raises no floating-point warnings (IEEE results, as natively)."""
    return np.errstate(all="ignore")


def cast(array: np.ndarray, value: float) -> np.floating:
    """Round the host (float64) scalar ``value`` to ``array``'s dtype, as Rust's ``x as f32``."""
    with ieee():
        return array.dtype.type(value)


def fdiv(a: float, b: float) -> float:
    """IEEE float64 division (``a / b``), giving inf or NaN instead of raising on ``b == 0``."""
    if b == 0.0:
        with ieee():
            return float(np.float64(a) / np.float64(b))
    return a / b


def fsqrt(x: float) -> float:
    """IEEE float64 square root (NaN for negative input), as Rust's ``f64::sqrt``."""
    return math.sqrt(x) if x >= 0.0 else math.nan


def clamp(x: np.ndarray, bound: float) -> np.ndarray:
    """``clamp(x, -c, c)`` in ``x``'s dtype, ``c = dtype(bound)``; NaN stays NaN (torch.clamp)."""
    c = cast(x, bound)
    with ieee():
        return np.where(x < -c, -c, np.where(x > c, c, x))


def lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch's ``start.lerp_(end, weight)`` in the array dtype::

        start + w * (end - start)          if w < 0.5
        end - (1 - w) * (end - start)      otherwise

    computed as ``base + coeff * (end - start)`` with ``coeff = dtype(w)``, or
    ``coeff = -dtype(1 - w)`` (negated after rounding) and ``base = end``.
    """
    diff = end - start
    if weight < 0.5:
        return start + cast(start, weight) * diff
    return end + (-cast(start, 1.0 - weight)) * diff


def maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NaN-propagating maximum, exactly as the native one: ``a`` if ``a`` is NaN or ``a > b``,
    else ``b`` (so ``maximum(+0, -0)`` is ``-0``, as ``np.maximum``)."""
    return np.where(np.isnan(a) | (a > b), a, b)


def sign(x: np.ndarray) -> np.ndarray:
    """Sign as the native kernels compute it: +1 / -1, and zeros (either sign) and NaN returned
    unchanged (``np.sign`` gives +0 for -0)."""
    one = x.dtype.type(1.0)
    return np.where(x > 0, one, np.where(x < 0, -one, x))


@dataclass(frozen=True)
class GradPrep:
    """The steps every optimizer applies first, in torch's order.

    ``g = clamp(g, -clip_value, clip_value)`` (when set), then ``g = g * grad_scale`` (negated when
    maximizing; skipped when the factor is 1); then either L2 decay ``g = g + weight_decay * p``
    or decoupled decay ``p = p * (1 - lr * weight_decay)`` (the factor rounded from float64). No
    decay at all when ``weight_decay == 0``.
    """

    scale: float  # grad_scale, negated when maximizing
    kind: str  # "none", "l2" or "decoupled"
    value: float  # weight_decay (l2) or the factor 1 - lr * weight_decay (decoupled)
    clip_value: float | None = None

    @classmethod
    def make(
        cls,
        maximize: bool,
        weight_decay: float,
        decoupled: bool,
        lr: float,
        grad_scale: float = 1.0,
        clip_value: float | None = None,
    ) -> GradPrep:
        """The preparation torch applies for these options."""
        scale = -grad_scale if maximize else grad_scale
        if weight_decay == 0.0:
            return cls(scale, "none", 0.0, clip_value)
        if decoupled:
            return cls(scale, "decoupled", 1.0 - lr * weight_decay, clip_value)
        return cls(scale, "l2", weight_decay, clip_value)

    def apply(self, p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the prepared ``(p, g)``; the inputs are not modified."""
        if self.clip_value is not None:
            g = clamp(g, self.clip_value)
        if self.scale != 1.0:
            g = g * cast(p, self.scale)
        if self.kind == "l2":
            g = g + cast(p, self.value) * p
        elif self.kind == "decoupled":
            p = p * cast(p, self.value)
        return p, g

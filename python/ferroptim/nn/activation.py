"""Activation modules (torch.nn names and defaults): elementwise nonlinearities and softmax.

Each module computes in its ``dtype`` (inputs are converted; the default ``dtype=None`` keeps
a float32 or float64 input's dtype, so activations follow the model around them), caches what
its backward needs, and frees the cache in ``backward``; ``backward`` without a preceding
``forward`` raises ``RuntimeError``. Only :class:`PReLU` has a parameter (``"weight"``, as in
torch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim._checks import check_int, check_real
from ferroptim.nn import functional as F
from ferroptim.nn._checks import check_input, require_cache
from ferroptim.nn.module import Module

__all__ = [
    "ELU",
    "GELU",
    "LeakyReLU",
    "LogSoftmax",
    "PReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


def _masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``np.where(keep, values, 0)`` for a float array, without branches.

    ``np.where`` with a random mask is slow (a mispredicted branch per element); here ``keep``
    becomes an all-ones / all-zeros bit pattern and is ANDed with the bits of ``values``, so
    the masked-out entries are exactly ``+0.0`` even where ``values`` is NaN or infinite.
    """
    int_type = np.dtype(f"i{values.dtype.itemsize}")
    bits = keep.astype(int_type)
    np.negative(bits, out=bits)  # True -> -1 (all bits set), False -> 0
    return np.bitwise_and(values.view(int_type), bits, out=bits).view(values.dtype)


class _Activation(Module):
    """Shared plumbing: input conversion, the forward cache, the upstream-gradient check."""

    def __init__(self, dtype: Any = None) -> None:
        super().__init__(dtype)
        self._cache: Any = None
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.adopt_input_dtype(x)
        x = check_input(x, self.dtype, layer=type(self).__name__)
        y, self._cache = self._forward(x)
        self._shape = x.shape
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        name = type(self).__name__
        cache = require_cache(self._cache, name)
        dy = check_input(dy, self.dtype, name="dy", layer=name)
        if dy.shape != self._shape:
            raise ValueError(
                f"{name}: dy has shape {dy.shape}, expected the output's {self._shape}"
            )
        self._cache = None
        return self._backward(dy, cache)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _backward(self, dy: np.ndarray, cache: Any) -> np.ndarray:
        raise NotImplementedError


class Sigmoid(_Activation):
    """:math:`y = 1/(1+e^{-x})`, :math:`dy/dx = y(1-y)`; overflow-free (see ``functional``)."""

    def _forward(self, x):
        y = F.sigmoid(x)
        return y, y

    def _backward(self, dy, y):
        return dy * y * (1.0 - y)


class Tanh(_Activation):
    """:math:`y = \\tanh x`, :math:`dy/dx = 1 - y^2`."""

    def _forward(self, x):
        y = np.tanh(x)
        return y, y

    def _backward(self, dy, y):
        return dy * (1.0 - y * y)


class ReLU(_Activation):
    """:math:`y = \\max(x, 0)`; the gradient is 1 where :math:`x > 0` and 0 elsewhere (0 at the
    kink, as in torch)."""

    def _forward(self, x):
        return np.maximum(x, 0.0), x > 0  # maximum propagates NaN

    def _backward(self, dy, positive):
        return _masked(dy, positive)


class LeakyReLU(_Activation):
    """:math:`y = x` for :math:`x > 0`, else :math:`\\alpha x` (``negative_slope``); gradient
    1 or :math:`\\alpha` (:math:`\\alpha` at 0, as in torch)."""

    def __init__(self, negative_slope: float = 0.01, dtype: Any = None) -> None:
        super().__init__(dtype)
        self.negative_slope = check_real("LeakyReLU: negative_slope", negative_slope)

    def _forward(self, x):
        positive = x > 0
        return np.where(positive, x, x * self.negative_slope), positive

    def _backward(self, dy, positive):
        return np.where(positive, dy, dy * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class PReLU(_Activation):
    """:math:`y = x` for :math:`x > 0`, else :math:`a_c x` with a learnable ``weight`` :math:`a`.

    Parameters
    ----------
    num_parameters : int
        1 (one slope shared by every element) or the number of channels, which are on axis 1
        of the input (``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``...).
    init : float
        Initial slope (torch's 0.25).

    Gradients: :math:`\\partial L/\\partial x = dy` where :math:`x > 0` else :math:`a_c\\,dy`;
    :math:`\\partial L/\\partial a_c = \\sum dy \\cdot x` over the elements of channel ``c``
    with :math:`x \\le 0`.
    """

    weight: np.ndarray
    #: torch's attribute name; it hides ``Module.num_parameters()`` on a PReLU instance
    num_parameters: int  # type: ignore[assignment]

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, dtype: Any = np.float32
    ) -> None:
        super().__init__(dtype)
        self.num_parameters = check_int("PReLU: num_parameters", num_parameters, low=1)
        slope = check_real("PReLU: init", init)
        self.register_parameter("weight", np.full(self.num_parameters, slope))

    def _slope(self, x: np.ndarray) -> np.ndarray:
        if self.num_parameters == 1:
            return self.weight.reshape((1,) * x.ndim) if x.ndim else self.weight[0]
        if x.ndim < 2 or x.shape[1] != self.num_parameters:
            raise ValueError(
                f"PReLU: input must have {self.num_parameters} channels on axis 1, "
                f"got shape {x.shape}"
            )
        return self.weight.reshape((1, -1) + (1,) * (x.ndim - 2))

    def _forward(self, x):
        slope = self._slope(x)
        positive = x > 0
        return np.where(positive, x, x * slope), (x, positive)

    def _backward(self, dy, cache):
        x, positive = cache
        slope = self._slope(x)
        negative_part = np.where(positive, 0.0, dy * x)
        if self.num_parameters == 1:
            self.grad("weight")[0] += negative_part.sum()
        else:
            axes = (0, *range(2, x.ndim))
            self.grad("weight")[...] += negative_part.sum(axis=axes)
        return np.where(positive, dy, dy * slope)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class ELU(_Activation):
    """:math:`y = x` for :math:`x > 0`, else :math:`\\alpha(e^x - 1)`; gradient 1 or
    :math:`\\alpha e^x` (``expm1`` keeps small negative inputs accurate)."""

    def __init__(self, alpha: float = 1.0, dtype: Any = None) -> None:
        super().__init__(dtype)
        self.alpha = check_real("ELU: alpha", alpha)

    def _forward(self, x):
        positive = x > 0
        negative_exp = np.exp(np.minimum(x, 0.0))
        y = np.where(positive, x, self.alpha * np.expm1(np.minimum(x, 0.0)))
        return y, (positive, negative_exp)

    def _backward(self, dy, cache):
        positive, negative_exp = cache
        return np.where(positive, dy, dy * (self.alpha * negative_exp))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(_Activation):
    """Gaussian error linear unit :math:`y = x\\,\\Phi(x)`.

    ``approximate="none"``: :math:`\\Phi(x) = \\tfrac12(1 + \\mathrm{erf}(x/\\sqrt2))` (exact, via
    :func:`ferroptim.nn.functional.erf`), :math:`dy/dx = \\Phi(x) + x\\,\\varphi(x)` with
    :math:`\\varphi(x) = e^{-x^2/2}/\\sqrt{2\\pi}`.

    ``approximate="tanh"``: :math:`y = \\tfrac12 x(1 + \\tanh u)`,
    :math:`u = \\sqrt{2/\\pi}(x + 0.044715x^3)`, :math:`dy/dx = \\tfrac12(1+\\tanh u) +
    \\tfrac12 x (1-\\tanh^2 u)\\sqrt{2/\\pi}(1 + 3\\cdot0.044715x^2)`.
    """

    def __init__(self, approximate: str = "none", dtype: Any = None) -> None:
        super().__init__(dtype)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _forward(self, x):
        if self.approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
            return 0.5 * x * (1.0 + t), (x, t)
        cdf = 0.5 * (1.0 + F.erf(x * _SQRT_HALF))
        return x * cdf, (x, cdf)

    def _backward(self, dy, cache):
        x, aux = cache
        if self.approximate == "tanh":
            t = aux
            du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
            return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        density = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return dy * (aux + x * density)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """:math:`y = x\\,\\sigma(x)`, :math:`dy/dx = \\sigma(x)(1 + x(1 - \\sigma(x)))`."""

    def _forward(self, x):
        s = F.sigmoid(x)
        return x * s, (x, s)

    def _backward(self, dy, cache):
        x, s = cache
        return dy * (s * (1.0 + x * (1.0 - s)))


class Softplus(_Activation):
    """:math:`y = \\tfrac1\\beta\\log(1 + e^{\\beta x})`, and :math:`y = x` where
    :math:`\\beta x >` ``threshold`` (torch's linear region); :math:`dy/dx = \\sigma(\\beta x)`
    (1 in the linear region)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, dtype: Any = None):
        super().__init__(dtype)
        self.beta = check_real("Softplus: beta", beta)
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero")
        self.threshold = check_real("Softplus: threshold", threshold)

    def _forward(self, x):
        scaled = x * self.beta
        linear = scaled > self.threshold
        return np.where(linear, x, F.softplus(scaled) / self.beta), (scaled, linear)

    def _backward(self, dy, cache):
        scaled, linear = cache
        return np.where(linear, dy, dy * F.sigmoid(scaled))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class _SoftmaxBase(_Activation):
    def __init__(self, dim: int = -1, dtype: Any = None) -> None:
        super().__init__(dtype)
        self.dim = check_int(f"{type(self).__name__}: dim", dim)

    def _axis(self, x: np.ndarray) -> int | None:
        ndim = max(x.ndim, 1)  # a 0-d input has one (trivial) softmax axis, as in torch
        if not -ndim <= self.dim < ndim:
            raise ValueError(
                f"{type(self).__name__}: dim {self.dim} is out of range for input of shape "
                f"{x.shape}"
            )
        return self.dim if x.ndim else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    #: ``function(x, axis)`` of :mod:`ferroptim.nn.functional` computing the output
    _function: Any

    def _forward(self, x):
        axis = self._axis(x)
        y = type(self)._function(x, axis)
        return y, (y, axis)


class Softmax(_SoftmaxBase):
    """:math:`y_i = e^{x_i} / \\sum_j e^{x_j}` along ``dim`` (max-shifted);
    :math:`dL/dx = y \\odot (dy - \\sum_j dy_j y_j)`.

    ``dim`` defaults to -1 (torch's ``dim=None`` picks an axis implicitly; pass it explicitly).
    """

    _function = staticmethod(F.softmax)

    def _backward(self, dy, cache):
        y, axis = cache
        return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


class LogSoftmax(_SoftmaxBase):
    """:math:`y_i = x_i - \\log\\sum_j e^{x_j}` along ``dim`` (max-shifted);
    :math:`dL/dx = dy - e^{y} \\sum_j dy_j`."""

    _function = staticmethod(F.log_softmax)

    def _backward(self, dy, cache):
        y, axis = cache
        return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)

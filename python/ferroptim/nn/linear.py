"""Linear: the affine layer ``y = x W^T + b`` (``torch.nn.Linear``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import check_flag, check_int
from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn.init import initialize_layer
from ferroptim.nn.module import Module

__all__ = ["Linear"]


class Linear(Module):
    """Affine map of the last axis.

    .. math::  y = x W^\\top + b

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and of the output.
    bias : bool
        Learn the additive bias ``b`` (shape ``(out_features,)``).
    init : None, str or callable, optional
        Weight initialization. ``None`` (default) is torch's: ``W, b ~ U(-k, k)`` with
        ``k = 1/sqrt(in_features)`` (``kaiming_uniform_(W, a=sqrt(5))``). A name
        (``"normal"`` = ``N(0, 0.02^2)``, ``"scaled_normal"``, ``"xavier_uniform"``,
        ``"xavier_normal"``, ``"kaiming_uniform"``, ``"kaiming_normal"``, ``"orthogonal"``,
        ``"zeros"``) or a ``callable(weight, rng)`` filling ``weight`` in place; then ``b = 0``.
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.
    rng : None, int or numpy Generator, optional
        Source of the initial values (default: the generator seeded by ``nn.manual_seed``).

    Notes
    -----
    ``weight`` has torch's layout ``(out_features, in_features)``. The input is
    ``(..., in_features)`` with any number of leading axes (also none); the output is
    ``(..., out_features)``. ``backward(dy)`` adds ``dW = dy^T x`` and ``db = sum(dy)`` (over all
    leading axes) and returns ``dx = dy W``.
    """

    weight: np.ndarray
    bias: np.ndarray | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: Any = None,
        *,
        dtype: Any = np.float32,
        rng: Any = None,
    ) -> None:
        super().__init__(dtype)
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        check_flag("Linear: bias", bias)
        self.register_parameter("weight", np.zeros((self.out_features, self.in_features)))
        if bias:
            self.register_parameter("bias", np.zeros(self.out_features))
        else:
            self.bias = None
        initialize_layer(self.weight, self.bias, init, rng, "Linear")
        self._cache: np.ndarray | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = check_input(x, self.dtype, layer="Linear")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: input must have shape (..., {self.in_features}), got shape {x.shape}"
            )
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        self._cache = x
        return y

    def backward(self, dy: Any) -> np.ndarray:
        x = require_cache(self._cache, "Linear")
        dy = check_upstream(dy, (*x.shape[:-1], self.out_features), self.dtype, "Linear")
        dy2 = dy.reshape(-1, self.out_features)
        self.grad("weight")[...] += dy2.T @ x.reshape(-1, self.in_features)
        if self.bias is not None:
            self.grad("bias")[...] += dy2.sum(axis=0)
        self._cache = None
        return dy @ self.weight

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )

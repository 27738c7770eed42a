"""Residual: the skip connection ``y = x + f(x)`` of a ResNet block."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn._grad_mode import check_gradient_origin
from ferroptim.nn.container import atomic_call
from ferroptim.nn.module import Module

__all__ = ["Residual"]


class Residual(Module):
    """Add a block's output to its input.

    .. math::  y = x + f(x), \\qquad \\frac{\\partial L}{\\partial x} = dy + f'(x)^\\top dy

    Parameters
    ----------
    block : Module
        ``f``; it must map its input to an output of the same shape. It is registered as the
        child ``"block"``, so its parameters are named ``"block.<name>"`` (e.g.
        ``"block.0.weight"`` for a Sequential block), as a torch module with
        ``self.block = f`` would name them.
    dtype : numpy dtype, optional
        Default: the block's dtype.

    Notes
    -----
    Calls are all-or-nothing like :class:`~ferroptim.nn.Sequential`'s: when the block or the
    shape check raises, the block's buffers, generator states and attributes (forward) or
    gradients (backward) are restored before the exception propagates.
    """

    def __init__(self, block: Module, *, dtype: Any = None) -> None:
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be a Module, got {type(block).__name__}")
        super().__init__(block.dtype if dtype is None else dtype)
        self.block = block
        self._cache: tuple[int, ...] | None = None

    def forward(self, x: Any) -> np.ndarray:
        """``x + block(x)``; on an error nothing in the block has changed."""
        return atomic_call(self, self._forward, x, backward=False)

    def backward(self, dy: Any) -> np.ndarray:
        """``dy + block.backward(dy)``; on an error no gradient has changed."""
        check_gradient_origin(self, dy)
        return atomic_call(self, self._backward, dy, backward=True)

    def _forward(self, x: Any) -> np.ndarray:
        x = check_input(x, self.dtype, layer="Residual")
        fx = self.block(x)
        if np.shape(fx) != x.shape:
            raise ValueError(
                f"Residual: the block maps shape {x.shape} to {np.shape(fx)}; "
                "y = x + f(x) needs the same shape"
            )
        self._cache = x.shape
        return (x + fx).astype(self.dtype, copy=False)

    def _backward(self, dy: Any) -> np.ndarray:
        shape = require_cache(self._cache, "Residual")
        dy = check_upstream(dy, shape, self.dtype, "Residual")
        dx = self.block.backward(dy)
        self._cache = None
        return dy + dx

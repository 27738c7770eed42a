"""Shape-only layers: Flatten (``torch.nn.Flatten``) and Identity (``torch.nn.Identity``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim._checks import check_int
from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn.module import Module

__all__ = ["Flatten", "Identity"]


class Flatten(Module):
    """Merge the axes ``start_dim .. end_dim`` (inclusive, negative values count from the end)
    into one: ``(N, C, H, W) -> (N, C*H*W)`` with the defaults.

    Parameters
    ----------
    start_dim, end_dim : int
        First and last axis merged (default ``1`` and ``-1``).
    dtype : numpy dtype, optional
        ``float32`` or ``float64``; ``None`` (default) keeps a float input's dtype.

    Notes
    -----
    ``backward(dy)`` reshapes ``dy`` back to the input's shape. An input with too few axes for
    the requested dims, or dims that end before they start, raises ``ValueError``.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, *, dtype: Any = None) -> None:
        super().__init__(dtype)
        self.start_dim = check_int("Flatten: start_dim", start_dim)
        self.end_dim = check_int("Flatten: end_dim", end_dim)
        self._cache: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def _axes(self, ndim: int, shape: tuple[int, ...]) -> tuple[int, int]:
        start, end = self.start_dim, self.end_dim
        rank = max(ndim, 1)
        for name, dim in (("start_dim", start), ("end_dim", end)):
            if not -rank <= dim < rank:
                raise ValueError(
                    f"Flatten: {name}={dim} is out of range for an input of shape {shape}"
                )
        start, end = start % rank, end % rank
        if start > end:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} "
                f"for an input of shape {shape}"
            )
        return start, end

    def forward(self, x: Any) -> np.ndarray:
        self.adopt_input_dtype(x)
        x = check_input(x, self.dtype, layer="Flatten")
        start, end = self._axes(x.ndim, x.shape)
        if x.ndim == 0:
            out_shape: tuple[int, ...] = (1,)
        else:
            merged = math.prod(x.shape[start : end + 1])
            out_shape = (*x.shape[:start], merged, *x.shape[end + 1 :])
        self._cache = (x.shape, out_shape)
        return x.reshape(out_shape)

    def backward(self, dy: Any) -> np.ndarray:
        in_shape, out_shape = require_cache(self._cache, "Flatten")
        dy = check_upstream(dy, out_shape, self.dtype, "Flatten")
        self._cache = None
        return dy.reshape(in_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """``y = x`` (as an array of the module dtype); ``backward(dy)`` returns ``dy``. A
    placeholder, e.g. for a block that is switched off."""

    def __init__(self, *, dtype: Any = None) -> None:
        super().__init__(dtype)
        self._cache: tuple[int, ...] | None = None

    def forward(self, x: Any) -> np.ndarray:
        self.adopt_input_dtype(x)
        x = check_input(x, self.dtype, layer="Identity")
        self._cache = x.shape
        return x

    def backward(self, dy: Any) -> np.ndarray:
        shape = require_cache(self._cache, "Identity")
        dy = check_upstream(dy, shape, self.dtype, "Identity")
        self._cache = None
        return dy

"""Dropout: inverted dropout with its own seedable generator (``torch.nn.Dropout``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import CLOSED_UNIT, check_real
from ferroptim._seed import new_generator
from ferroptim.nn._batch_share import draw_uniform
from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the kept ones.

    .. math::  y = x \\odot m / (1 - p), \\qquad m_i \\sim \\mathrm{Bernoulli}(1 - p)

    In eval mode (``model.eval()``) ``y = x``. ``p = 1`` zeroes everything, as torch.

    Parameters
    ----------
    p : float
        Drop probability in ``[0, 1]`` (default 0.5).
    seed : int, optional
        Seeds this layer's generator ``self.rng`` (``numpy.random.default_rng(seed)``). Without
        it the generator follows ``ferroptim.manual_seed`` (reseeded by every call). Its
        state is part of ``Module.rng_state()`` so a resumed run draws the same masks.
    dtype : numpy dtype, optional
        ``float32`` or ``float64``; ``None`` (default) keeps a float input's dtype.

    Notes
    -----
    The mask is drawn from float64 uniforms (``keep = u >= p``), so the same seed gives the
    same mask in both dtypes. In data-parallel ``fit`` each rank draws the whole batch's
    uniforms and keeps its rows, so the masks are those of one process (see
    :mod:`ferroptim.nn._batch_share`). ``backward(dy)`` returns ``dy`` times the cached scaled mask.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None, *, dtype: Any = None) -> None:
        super().__init__(dtype)
        self.p = check_real("Dropout: p", p, CLOSED_UNIT)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"Dropout: seed must be None or an int, got {seed!r}")
        self.rng = new_generator(self) if seed is None else np.random.default_rng(seed)
        self._cache: tuple[np.ndarray | None, tuple[int, ...]] | None = None

    def forward(self, x: Any) -> np.ndarray:
        self.adopt_input_dtype(x)
        x = check_input(x, self.dtype, layer="Dropout")
        if not self.training or self.p == 0.0:
            self._cache = (None, x.shape)
            return x
        keep = draw_uniform(self.rng, x.shape) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        mask = (keep * scale).astype(self.dtype)
        self._cache = (mask, x.shape)
        return x * mask

    def backward(self, dy: Any) -> np.ndarray:
        mask, shape = require_cache(self._cache, "Dropout")
        dy = check_upstream(dy, shape, self.dtype, "Dropout")
        self._cache = None
        return dy if mask is None else dy * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"

"""Embedding: a lookup table from integer indices to learned vectors (``torch.nn.Embedding``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import check_int
from ferroptim.nn._checks import check_input, require_cache
from ferroptim.nn._rng import resolve_rng
from ferroptim.nn.init import initialize_layer
from ferroptim.nn.module import Module


def _check_indices(indices: Any, num_embeddings: int) -> np.ndarray:
    """``indices`` as an integer array with every value in ``[0, num_embeddings)``."""
    if isinstance(indices, (str, bytes)) or indices is None:
        raise TypeError(f"Embedding: input must be an integer array, got {type(indices).__name__}")
    array = np.asarray(indices)
    if array.dtype.kind not in "iu":
        raise TypeError(f"Embedding: input must hold integer indices, got dtype {array.dtype}")
    bad = array[(array < 0) | (array >= num_embeddings)]
    if bad.size:
        raise ValueError(
            f"Embedding: index {bad.flat[0]} is out of range [0, {num_embeddings}) "
            f"({bad.size} indices out of range)"
        )
    return array.astype(np.intp, copy=True)


def _resolve_padding_idx(padding_idx: Any, num_embeddings: int) -> int | None:
    """torch's rule: ``None`` or an int in ``[-num_embeddings, num_embeddings)``; negative values
    count from the end."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"padding_idx must be None or an int, got {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"padding_idx must be in [-{num_embeddings}, {num_embeddings}), got {padding_idx}"
        )
    return int(padding_idx) % num_embeddings


def scatter_add_rows(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``target[rows[k]] += values[k]`` for every ``k``, repeated rows summed (in order of
    occurrence), without a Python loop: a stable sort groups equal rows and ``np.add.reduceat``
    sums each group, so each touched row of ``target`` is written once."""
    if rows.size == 0:
        return
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    target[sorted_rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


class Embedding(Module):
    """``y[..., :] = weight[x[...], :]`` for an integer index array ``x`` of any shape.

    Parameters
    ----------
    num_embeddings : int
        Size of the table (valid indices are ``0 .. num_embeddings - 1``).
    embedding_dim : int
        Length of each vector.
    padding_idx : int, optional
        A row that is initialised to zeros and never receives a gradient (so it stays whatever
        it is set to); negative values count from the end, as in torch.
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.
    init : None, str or callable, optional
        Weight initialization. ``None`` (default) is torch's ``N(0, 1)``; a name from
        ``nn.init.LAYER_INITS`` or a ``callable(weight, rng)`` fills the weight instead (fans
        as torch computes them for a ``(num_embeddings, embedding_dim)`` array). Either way the
        ``padding_idx`` row is then set to zero.
    rng : None, int or numpy Generator, optional
        Source of the initial weights (default: the generator seeded by ``nn.manual_seed``).

    Notes
    -----
    ``weight`` has shape ``(num_embeddings, embedding_dim)`` and starts as ``N(0, 1)`` like
    torch's. ``backward(dy)`` adds ``dy[...]`` into row ``x[...]`` of the weight gradient
    (repeated indices add up) and returns ``None``: indices are not differentiable, so an
    ``Embedding`` must be the first layer of a model. ``max_norm`` and ``sparse`` are not
    supported.

    Raises
    ------
    TypeError
        Non-integer indices (floats, bools, strings).
    ValueError
        An index outside ``[0, num_embeddings)`` (the message names the value).
    """

    weight: np.ndarray

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        dtype: Any = np.float32,
        init: Any = None,
        rng: Any = None,
    ) -> None:
        super().__init__(dtype)
        self.num_embeddings = check_int("num_embeddings", num_embeddings, low=1)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, low=1)
        self.padding_idx = _resolve_padding_idx(padding_idx, self.num_embeddings)
        generator = resolve_rng(rng)
        shape = (self.num_embeddings, self.embedding_dim)
        if init is None:
            weight = self.register_parameter("weight", generator.standard_normal(shape))
        else:
            weight = self.register_parameter("weight", np.zeros(shape))
            initialize_layer(weight, None, init, generator, "Embedding")
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0.0
        self._cache: np.ndarray | None = None

    def forward(self, x: Any) -> np.ndarray:
        """The rows of ``weight`` picked by ``x``: shape ``x.shape + (embedding_dim,)``."""
        indices = _check_indices(x, self.num_embeddings)
        self._cache = indices
        return self.weight[indices]

    def backward(self, dy: np.ndarray) -> None:  # type: ignore[override]  # no input gradient
        """Scatter-add ``dy`` (shape ``x.shape + (embedding_dim,)``) into the weight gradient
        (nothing into the ``padding_idx`` row); returns ``None`` (no gradient for indices)."""
        indices = require_cache(self._cache, "Embedding")
        dy = check_input(dy, self.dtype, name="dy", ndim=indices.ndim + 1, layer="Embedding")
        expected = (*indices.shape, self.embedding_dim)
        if dy.shape != expected:
            raise ValueError(f"Embedding: dy must have shape {expected}, got {dy.shape}")
        rows = indices.reshape(-1)
        values = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = rows != self.padding_idx
            rows, values = rows[keep], values[keep]
        scatter_add_rows(self.grad("weight"), rows, values)
        self._cache = None
        return None

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"

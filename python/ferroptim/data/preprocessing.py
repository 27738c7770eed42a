"""Feature standardization fitted on training data only (scikit-learn's ``StandardScaler``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ferroptim._checks import check_state_keys
from ferroptim.nn._checks import check_input, resolve_dtype

_STATE_KEYS = ("mean", "var", "scale")


def _normalize_axis(axis: Any) -> tuple[int, ...]:
    """``axis`` (an int or a tuple of distinct non-negative ints containing 0) as a sorted tuple."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else axis
    if not isinstance(axes, (tuple, list)) or not axes:
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
    normalized = tuple(sorted(int(a) for a in axes))
    if len(set(normalized)) != len(normalized) or normalized[0] != 0:
        raise ValueError(f"axis must hold distinct non-negative axes including 0, got {axis!r}")
    return normalized


class Standardizer:
    """Standardize features with statistics of the training data: ``z = (x - mean) / scale``.

    ``fit`` computes, over the reduced ``axis`` (the samples, plus the spatial axes for
    per-channel image statistics), ``mean = sum(x) / n`` and the population variance
    ``var = sum((x - mean)**2) / n`` in float64 (two passes), and ``scale = sqrt(var)``; a
    feature whose standard deviation is below ``eps`` (constant on the training data) gets
    ``scale = 1``, as in scikit-learn, so it is only centred and never divided by zero.

    Parameters
    ----------
    with_mean : bool
        Subtract the mean (default True); otherwise only scale.
    with_std : bool
        Divide by ``scale`` (default True); otherwise only centre.
    axis : int or tuple of ints
        Axes reduced by ``fit``; must include 0. ``0`` (default) gives per-feature statistics
        of an ``(n_samples, n_features)`` matrix; ``(0, 2, 3)`` per-channel statistics of an
        NCHW image batch. Inputs to ``transform`` must match the kept axes' sizes.
    eps : float
        Standard deviations below this count as zero variance (default 1e-8).
    dtype : numpy dtype
        ``float32`` (default) or ``float64``: the dtype of the statistics and of the output.

    Attributes
    ----------
    mean_, var_, scale_ : ndarray
        Statistics with the shape of the kept axes (``(n_features,)``, ``(C,)``, ...).
    n_samples_seen_ : int
        Elements reduced per statistic in ``fit``.
    """

    def __init__(
        self,
        with_mean: bool = True,
        with_std: bool = True,
        *,
        axis: int | tuple[int, ...] = 0,
        eps: float = 1e-8,
        dtype: Any = np.float32,
    ) -> None:
        if not isinstance(with_mean, bool) or not isinstance(with_std, bool):
            raise TypeError(
                f"with_mean and with_std must be bools, got {with_mean!r}, {with_std!r}"
            )
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
            raise TypeError(f"eps must be a float, got {eps!r}")
        if not 0.0 <= float(eps) < np.inf:
            raise ValueError(f"eps must be a finite non-negative float, got {eps}")
        self.with_mean = with_mean
        self.with_std = with_std
        self.axis = _normalize_axis(axis)
        self.eps = float(eps)
        self.dtype = resolve_dtype(dtype)
        self.mean_: np.ndarray | None = None
        self.var_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.n_samples_seen_: int | None = None

    # --- shapes -------------------------------------------------------------------------------
    def _kept_axes(self, ndim: int) -> tuple[int, ...]:
        return tuple(a for a in range(ndim) if a not in self.axis)

    def _check_layout(self, x: Any, name: str, dtype: Any, fitted: bool = True) -> np.ndarray:
        """``x`` as an array whose rank fits ``axis`` and (``fitted``) whose kept axes match."""
        array = check_input(x, dtype, name=name)
        if array.ndim <= self.axis[-1]:
            raise ValueError(
                f"Standardizer: {name} must have more than {self.axis[-1]} dimensions for "
                f"axis={self.axis}, got shape {array.shape}"
            )
        if fitted and self.mean_ is not None:
            kept = tuple(array.shape[a] for a in self._kept_axes(array.ndim))
            if kept != self.mean_.shape:
                raise ValueError(
                    f"Standardizer: {name} has feature shape {kept} (shape {array.shape}), but "
                    f"the standardizer was fitted on feature shape {self.mean_.shape}"
                )
        return array

    def _broadcast(self, stat: np.ndarray, ndim: int) -> np.ndarray:
        """``stat`` reshaped to broadcast against an input of rank ``ndim``."""
        shape = [1] * ndim
        for a, size in zip(self._kept_axes(ndim), stat.shape, strict=True):
            shape[a] = size
        return stat.reshape(shape)

    def _require_fit(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError(f"Standardizer.{method} called before fit (call fit(X) first)")
        offset = self.mean_ if self.with_mean else np.zeros_like(self.mean_)
        scale = self.scale_ if self.with_std else np.ones_like(self.scale_)
        return offset, scale

    # --- fitting and transforming -------------------------------------------------------------
    def fit(self, x: Any) -> Standardizer:
        """Compute ``mean_``, ``var_`` and ``scale_`` from training data ``x``; returns self.

        Raises
        ------
        TypeError
            ``x`` is not numeric.
        ValueError
            ``x`` has too few dimensions, no samples, or non-finite values.
        """
        array = self._check_layout(x, "X", np.float64, fitted=False)
        n = int(np.prod([array.shape[a] for a in self.axis]))
        if n == 0:
            raise ValueError(f"Standardizer: X must hold at least one sample, got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("Standardizer: X contains NaN or infinity")
        mean = array.mean(axis=self.axis)
        centred = array - self._broadcast(mean, array.ndim)
        var = np.mean(centred * centred, axis=self.axis)
        std = np.sqrt(var)
        scale = np.where(std < self.eps, 1.0, std)
        self.mean_ = mean.astype(self.dtype)
        self.var_ = var.astype(self.dtype)
        self.scale_ = scale.astype(self.dtype)
        self.n_samples_seen_ = n
        return self

    def transform(self, x: Any) -> np.ndarray:
        """``(x - mean_) / scale_`` as a new array of ``dtype`` (``x`` is never modified)."""
        offset, scale = self._require_fit("transform")
        array = self._check_layout(x, "X", self.dtype)
        return (array - self._broadcast(offset, array.ndim)) / self._broadcast(scale, array.ndim)

    def fit_transform(self, x: Any) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, z: Any) -> np.ndarray:
        """``z * scale_ + mean_``: undoes :meth:`transform` (up to rounding)."""
        offset, scale = self._require_fit("inverse_transform")
        array = self._check_layout(z, "Z", self.dtype)
        return array * self._broadcast(scale, array.ndim) + self._broadcast(offset, array.ndim)

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of ``mean``, ``var`` and ``scale`` (plain arrays, e.g. for ``np.savez``)."""
        if self.mean_ is None or self.var_ is None or self.scale_ is None:
            raise RuntimeError("Standardizer.state_dict called before fit (call fit(X) first)")
        return {"mean": self.mean_.copy(), "var": self.var_.copy(), "scale": self.scale_.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict` (checked fully before anything is set).

        Raises
        ------
        KeyError
            A key is missing or unexpected.
        ValueError
            Shapes differ, a value is not finite, ``var`` is negative or ``scale`` not positive.
        """
        state = check_state_keys("Standardizer", state, _STATE_KEYS)
        arrays = {k: check_input(state[k], self.dtype, name=f"state[{k!r}]") for k in _STATE_KEYS}
        shapes = {k: a.shape for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"Standardizer state: mean, var and scale shapes differ: {shapes}")
        if not all(np.isfinite(a).all() for a in arrays.values()):
            raise ValueError("Standardizer state: values must be finite")
        if (arrays["var"] < 0).any() or (arrays["scale"] <= 0).any():
            raise ValueError("Standardizer state: var must be >= 0 and scale > 0")
        self.mean_, self.var_, self.scale_ = (arrays[k].copy() for k in _STATE_KEYS)
        self.n_samples_seen_ = None

    def __repr__(self) -> str:
        return (
            f"Standardizer(with_mean={self.with_mean}, with_std={self.with_std}, "
            f"axis={self.axis}, eps={self.eps}, dtype={self.dtype})"
        )

"""Array checks shared by the nn modules: dtypes, inputs, upstream gradients, the forward cache.
Scalar hyperparameters are checked with :mod:`ferroptim._checks`."""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def resolve_dtype(dtype: Any) -> np.dtype:
    """``float32`` or ``float64`` as a NumPy dtype; anything else raises ``TypeError``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in _FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def as_numeric(x: Any, name: str, layer: str = "") -> np.ndarray:
    """``np.asarray(x)`` if it holds bools, ints or floats (never copied when ``x`` is an array
    already); ``TypeError`` naming ``layer`` and ``name`` otherwise."""
    where = f"{layer}: " if layer else ""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{where}{name} must be a numeric array, got {type(x).__name__}")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{where}{name} must be numeric, got dtype {x.dtype}")
    return x


def check_input(
    x: Any,
    dtype: np.dtype,
    *,
    name: str = "input",
    ndim: int | tuple[int, ...] | None = None,
    axis_size: tuple[int, int] | None = None,
    layer: str = "",
) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype`` (converted, never modified).

    ``ndim`` is the allowed rank (or ranks); ``axis_size=(axis, n)`` requires ``x.shape[axis] == n``
    (the feature or channel count). Errors name ``layer`` and ``name``.
    """
    where = f"{layer}: " if layer else ""
    x = as_numeric(x, name, layer)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{where}{name} must have {want} dimensions, got shape {x.shape}")
    if axis_size is not None:
        axis, size = axis_size
        if x.shape[axis] != size:
            raise ValueError(
                f"{where}{name} must have {size} features on axis {axis}, got shape {x.shape}"
            )
    return np.ascontiguousarray(x, dtype=dtype)


def check_upstream(dy: Any, shape: tuple[int, ...], dtype: np.dtype, layer: str) -> np.ndarray:
    """``dy`` as a C-contiguous array of ``dtype`` with the forward output's ``shape``."""
    array = check_input(dy, dtype, name="dy", layer=layer)
    if array.shape != tuple(shape):
        raise ValueError(
            f"{layer}: dy must have the output shape {tuple(shape)}, got {array.shape}"
        )
    return array


def require_cache(cache: Any, layer: str) -> Any:
    """The forward cache, or a ``RuntimeError`` saying backward came before forward."""
    if cache is None:
        raise RuntimeError(f"{layer}: backward called before forward (or twice for one forward)")
    return cache

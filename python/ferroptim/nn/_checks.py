"""Argument checks shared by the nn modules: dtypes, input arrays, hyperparameters."""

from __future__ import annotations

import math
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
    if not isinstance(x, np.ndarray):
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(f"{where}{name} must be a numeric array, got {type(x).__name__}")
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{where}{name} must be numeric, got dtype {x.dtype}")
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


def check_int(value: Any, name: str) -> int:
    """An int (NumPy integers too; bools refused), as a Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """A positive integer (bools refused)."""
    value = check_int(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    allow_inf: bool = False,
) -> float:
    """A real number (NumPy scalars too; bools refused) in ``[low, high]``, as a float.

    ``TypeError`` for anything else; ``ValueError`` for nan, for an infinity unless
    ``allow_inf``, and outside the range. ``name`` is used in the messages as given (prefix the
    layer, e.g. ``"ELU: alpha"``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        kind = "a number, not nan" if allow_inf else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value}")
    if not low <= number <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    return number


def require_cache(cache: Any, layer: str) -> Any:
    """The forward cache, or a ``RuntimeError`` saying backward came before forward."""
    if cache is None:
        raise RuntimeError(f"{layer}: backward called before forward (or twice for one forward)")
    return cache

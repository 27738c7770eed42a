"""Argument checks shared by the image augmentations: NCHW float batches and their parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_images(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as an NCHW float32/float64 array (not copied; callers never write into it)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array of shape (N, C, H, W), got {type(x).__name__}"
        )
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {x.shape}")
    return x


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_real(value: Any, name: str, low: float = 0.0, high: float = np.inf) -> float:
    """A finite real number in ``[low, high]``."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (np.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)


def check_range(
    value: Any, name: str, low: float = 0.0, high: float = np.inf
) -> tuple[float, float]:
    """``v`` as ``(v, v)``, or a ``(lo, hi)`` pair with ``low <= lo <= hi <= high``."""
    if _is_real(value):
        v = check_real(value, name, low, high)
        return v, v
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    lo, hi = (check_real(v, name, low, high) for v in value)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {value}")
    return lo, hi


def check_size(value: Any, name: str) -> tuple[int, int]:
    """A positive int ``s`` as ``(s, s)``, or an ``(h, w)`` pair of positive ints."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair
    ):
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(pair[0]), int(pair[1])


def per_image(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per-image values ``(N,)`` shaped ``(N, 1, 1, 1)`` in ``dtype``, to broadcast over NCHW."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1, 1)


def uniform_per_image(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """``n`` draws from ``U(lo, hi)`` (float64)."""
    return rng.uniform(bounds[0], bounds[1], size=n)


def check_degrees(degrees: Any) -> tuple[float, float]:
    """``d`` as ``(-d, d)`` (``0 <= d <= 360``), or a ``(lo, hi)`` pair, in degrees."""
    if isinstance(degrees, (tuple, list)):
        return check_range(degrees, "degrees", -360.0, 360.0)
    d = check_real(degrees, "degrees", 0.0, 360.0)
    return -d, d


def check_padding(padding: Any, padding_mode: str, modes: Any) -> int:
    """A non-negative int ``padding`` and a ``padding_mode`` among ``modes``."""
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)):
        raise TypeError(f"padding must be a non-negative int, got {padding!r}")
    if padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding}")
    if padding_mode not in modes:
        raise ValueError(f"padding_mode must be one of {sorted(modes)}, got {padding_mode!r}")
    return int(padding)


def check_kernel_size(kernel_size: Any) -> int:
    """An odd positive int."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)):
        raise TypeError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size}")
    return int(kernel_size)


def per_image_values(value: Any, n: int, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``value`` (a scalar or one value per image) as an array of shape ``(n,)``."""
    try:
        array = np.asarray(value, dtype=dtype)
        return np.broadcast_to(array, (n,))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or one per image ({n}), got {value!r}") from exc

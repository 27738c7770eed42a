"""Argument checks shared by the image augmentations: NCHW float batches and the parameters that
are particular to images (ranges, sizes, angles, padding, kernels), built on
:mod:`ferroptim._checks`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import NON_NEGATIVE, Range, check_int, check_real, invalid

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


def check_range(name: str, value: Any, allowed: Range = NON_NEGATIVE) -> tuple[float, float]:
    """``v`` as ``(v, v)``, or a ``(lo, hi)`` pair with ``lo <= hi``, each value in ``allowed``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        lo, hi = (check_real(name, v, allowed) for v in value)
        if lo > hi:
            raise invalid(name, value, "low <= high")
        return lo, hi
    v = check_real(name, value, allowed)
    return v, v


def check_size(name: str, value: Any) -> tuple[int, int]:
    """A positive int ``s`` as ``(s, s)``, or an ``(h, w)`` pair of positive ints."""
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(pair) != 2:
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    h, w = (check_int(name, v, low=1) for v in pair)
    return h, w


def per_image(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per-image values ``(N,)`` shaped ``(N, 1, 1, 1)`` in ``dtype``, to broadcast over NCHW."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1, 1)


def uniform_per_image(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """``n`` draws from ``U(lo, hi)`` (float64)."""
    return rng.uniform(bounds[0], bounds[1], size=n)


def check_degrees(degrees: Any) -> tuple[float, float]:
    """``d`` as ``(-d, d)`` (``0 <= d <= 360``), or a ``(lo, hi)`` pair, in degrees."""
    if isinstance(degrees, tuple | list):
        return check_range("degrees", degrees, Range(-360.0, 360.0))
    d = check_real("degrees", degrees, Range(0.0, 360.0))
    return -d, d


def check_padding(padding: Any, padding_mode: str, modes: Any) -> int:
    """A non-negative int ``padding`` and a ``padding_mode`` among ``modes``."""
    padding = check_int("padding", padding, low=0)
    if padding_mode not in modes:
        raise ValueError(f"padding_mode must be one of {sorted(modes)}, got {padding_mode!r}")
    return padding


def check_kernel_size(kernel_size: Any) -> int:
    """An odd positive int."""
    kernel_size = check_int("kernel_size", kernel_size, low=1)
    if kernel_size % 2 == 0:
        raise invalid("kernel_size", kernel_size, "an odd int")
    return kernel_size


def per_image_values(value: Any, n: int, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``value`` (a scalar or one value per image) as an array of shape ``(n,)``."""
    try:
        array = np.asarray(value, dtype=dtype)
        return np.broadcast_to(array, (n,))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or one per image ({n}), got {value!r}") from exc

"""Non-overlapping pooling windows (``stride == kernel_size``) as contiguous planes.

When the windows tile the image, the element at kernel offset ``(i, j)`` of every window is one
strided slab of the padded image. :func:`tile_planes` copies the ``kh*kw`` slabs once into a
``(kh*kw, N*C*OH*OW)`` array, so every later step (max, sum, first maximum) is an elementwise
operation over long contiguous rows instead of a reduction over tiny window axes, which NumPy
runs slowly. Rows and columns past the last whole window (``floor`` output size) are skipped,
as torch does with ``ceil_mode=False``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["first_max_positions", "tile_planes", "untile"]


def _tiled_view(padded: np.ndarray, kernel: tuple[int, int], out_hw: tuple[int, int]):
    """View ``(N, C, OH, kh, OW, kw)`` of the windows of ``padded`` (no copy)."""
    n, c = padded.shape[:2]
    (kh, kw), (oh, ow) = kernel, out_hw
    covered = padded[:, :, : oh * kh, : ow * kw]
    return covered.reshape(n, c, oh, kh, ow, kw)


def tile_planes(padded: np.ndarray, kernel: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """``planes[i*kw + j, m]`` = element ``(i, j)`` of window ``m`` (windows in
    ``(N, C, OH, OW)`` order); a contiguous ``(kh*kw, N*C*OH*OW)`` copy."""
    view = _tiled_view(padded, kernel, out_hw).transpose(3, 5, 0, 1, 2, 4)
    return np.ascontiguousarray(view).reshape(kernel[0] * kernel[1], -1)


def untile(
    per_window: np.ndarray, padded_shape: tuple[int, ...], kernel: tuple[int, int]
) -> np.ndarray:
    """``padded_shape`` array with ``per_window`` ``(N, C, OH, OW)`` copied to every element of
    its window and zeros outside the windows (the adjoint of summing each window)."""
    kh, kw = kernel
    spread = np.repeat(np.repeat(per_window, kh, axis=2), kw, axis=3)  # memcpy-based, fast
    if spread.shape == tuple(padded_shape):
        return spread
    out = np.zeros(padded_shape, dtype=per_window.dtype)
    out[:, :, : spread.shape[2], : spread.shape[3]] = spread
    return out


def first_max_positions(
    planes: np.ndarray,
    maxima: np.ndarray,
    padded_shape: tuple[int, ...],
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """Flat index into the padded image of each window's first maximum (row-major window order).

    ``maxima`` is ``planes.max(axis=0)`` and must hold no NaN. The offset of the first maximum
    inside a window is the number of leading entries that differ from the maximum, counted with
    one pass per kernel offset.
    """
    kh, kw = kernel
    count_type = np.uint8 if kh * kw < 256 else np.intp
    not_yet = np.not_equal(planes[0], maxima)
    leading = not_yet.astype(count_type)
    differs = np.empty_like(not_yet)
    for plane in planes[1:]:
        np.not_equal(plane, maxima, out=differs)
        np.logical_and(not_yet, differs, out=not_yet)
        np.add(leading, not_yet, out=leading)
    width = padded_shape[3]
    offsets = (np.arange(kh)[:, None] * width + np.arange(kw)).ravel()
    return window_origins(padded_shape, kernel, out_hw) + offsets.take(leading)


@lru_cache(maxsize=8)
def window_origins(
    padded_shape: tuple[int, ...], kernel: tuple[int, int], out_hw: tuple[int, int]
) -> np.ndarray:
    """Flat index of each window's top-left element, windows in ``(N, C, OH, OW)`` order.

    Memoized (a training loop sees the same few shapes every step), hence read-only.
    """
    n, c, height, width = padded_shape
    (kh, kw), (oh, ow) = kernel, out_hw
    planes = np.arange(n * c)[:, None, None] * (height * width)
    rows = np.arange(oh)[:, None] * (kh * width)
    origins = (planes + rows + np.arange(ow) * kw).ravel()
    origins.flags.writeable = False
    return origins

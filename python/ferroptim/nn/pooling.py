"""MaxPool2d and AvgPool2d over ``(N, C, H, W)`` images (``torch.nn`` semantics,
``ceil_mode=False``, no dilation), on the strided window view of :mod:`ferroptim.nn.conv`.

Non-overlapping windows (``stride == kernel_size``, the usual ``MaxPool2d(2)``) take a faster
route through :mod:`ferroptim.nn._tiles` with the same results (a window holding a NaN falls
back to the general route).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import check_flag
from ferroptim.nn._checks import check_upstream, require_cache
from ferroptim.nn._conv_kernels import col2im
from ferroptim.nn._tiles import first_max_positions, tile_planes, untile
from ferroptim.nn.conv import check_fits, check_image, crop, pad_image, pair, windows
from ferroptim.nn.module import Module

__all__ = ["AvgPool2d", "MaxPool2d"]


class _Pool2d(Module):
    """Shared arguments: kernel, stride (default: the kernel), padding (at most half the
    kernel, as torch requires)."""

    layer = "Pool2d"

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, dtype: Any) -> None:
        super().__init__(dtype)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", allow_zero=True)
        for k, p in zip(self.kernel_size, self.padding, strict=True):
            if 2 * p > k:
                raise ValueError(
                    f"{self.layer}: padding {self.padding} must be at most half of kernel_size "
                    f"{self.kernel_size}"
                )
        self._cache: Any = None

    def _padded(self, x: Any, fill: float) -> np.ndarray:
        self.adopt_input_dtype(x)
        x = check_image(x, self.dtype, None, self.layer)
        check_fits(x, self.kernel_size, self.padding, self.layer)
        return pad_image(x, self.padding, fill)

    def _tiled(self, xp: np.ndarray) -> tuple[int, int] | None:
        """The output ``(OH, OW)`` when the windows tile the image (stride == kernel), else
        None."""
        if self.stride != self.kernel_size:
            return None
        (kh, kw), (hp, wp) = self.kernel_size, xp.shape[2:]
        return hp // kh, wp // kw

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over each window; padding counts as ``-inf``.

    .. math::  y_{n,c,p,q} = \\max_{i,j} x^{pad}_{n,c,\\,p s_h + i,\\,q s_w + j}

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int)
        At most half the kernel on each axis.
    dtype : numpy dtype, optional
        ``float32`` or ``float64``; ``None`` (default) keeps a float input's dtype.

    Notes
    -----
    ``backward`` sends each output's gradient to the position of its window's maximum: the
    first one in row-major window order when several are equal, as torch does on the CPU
    (a NaN counts as the maximum). Overlapping windows add up.
    """

    layer = "MaxPool2d"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        *,
        dtype: Any = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dtype)

    def forward(self, x: Any) -> np.ndarray:
        xp = self._padded(x, -np.inf)
        out_hw = self._tiled(xp)
        if out_hw is not None:
            planes = tile_planes(xp, self.kernel_size, out_hw)
            maxima = planes.max(axis=0)
            if not np.isnan(maxima).any():
                positions = first_max_positions(planes, maxima, xp.shape, self.kernel_size, out_hw)
                out_shape = (*xp.shape[:2], *out_hw)
                self._cache = ("tiled", positions, xp.shape, out_shape)
                return xp.reshape(-1).take(positions).reshape(out_shape)
        kh, kw = self.kernel_size
        flat = windows(xp, self.kernel_size, self.stride)
        flat = flat.reshape(*flat.shape[:4], kh * kw)  # copies: (N, C, OH, OW, kh*kw)
        argmax = np.argmax(flat, axis=-1)[..., None]
        y = np.take_along_axis(flat, argmax, axis=-1)[..., 0]
        self._cache = ("general", argmax, xp.shape, flat.shape[:4])
        return y

    def backward(self, dy: Any) -> np.ndarray:
        route, where, padded_shape, out_shape = require_cache(self._cache, self.layer)
        dy = check_upstream(dy, out_shape, self.dtype, self.layer)
        if route == "tiled":  # ``where``: flat index of each window's maximum
            dxp = np.zeros(padded_shape, dtype=self.dtype)
            dxp.reshape(-1)[where] = dy.reshape(-1)
        else:  # ``where``: position of the maximum inside each window
            kh, kw = self.kernel_size
            dflat = np.zeros((*out_shape, kh * kw), dtype=self.dtype)
            np.put_along_axis(dflat, where, dy[..., None], axis=-1)
            dwin = dflat.reshape(*out_shape, *self.kernel_size)
            dxp = col2im(dwin, np.zeros(padded_shape, self.dtype), self.stride)
        self._cache = None
        return crop(dxp, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over each window.

    .. math::  y_{n,c,p,q} = \\frac{1}{D_{p,q}} \\sum_{i,j} x^{pad}_{n,c,\\,p s_h + i,\\,q s_w + j}

    with ``D = kh * kw`` when ``count_include_pad`` (zero padding counted, torch's default) and
    otherwise the number of window positions inside the unpadded image.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int)
        At most half the kernel on each axis.
    count_include_pad : bool
    dtype : numpy dtype, optional
        ``float32`` or ``float64``; ``None`` (default) keeps a float input's dtype.
    """

    layer = "AvgPool2d"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        count_include_pad: bool = True,
        *,
        dtype: Any = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dtype)
        self.count_include_pad = check_flag("AvgPool2d: count_include_pad", count_include_pad)

    def _divisor(self, height: int, width: int) -> np.ndarray | float:
        """``D`` per output position (a scalar when every window counts the whole kernel)."""
        kh, kw = self.kernel_size
        if self.count_include_pad or self.padding == (0, 0):
            return float(kh * kw)
        inside = pad_image(np.ones((1, 1, height, width), self.dtype), self.padding, 0.0)
        return windows(inside, self.kernel_size, self.stride).sum(axis=(-2, -1))[0, 0]

    def forward(self, x: Any) -> np.ndarray:
        xp = self._padded(x, 0.0)
        divisor = self._divisor(
            xp.shape[2] - 2 * self.padding[0], xp.shape[3] - 2 * self.padding[1]
        )
        out_hw = self._tiled(xp)
        if out_hw is not None:
            sums = tile_planes(xp, self.kernel_size, out_hw).sum(axis=0)
            sums = sums.reshape(*xp.shape[:2], *out_hw)
        else:
            sums = windows(xp, self.kernel_size, self.stride).sum(axis=(-2, -1))
        y = (sums / divisor).astype(self.dtype, copy=False)
        self._cache = (divisor, xp.shape, y.shape, out_hw is not None)
        return y

    def backward(self, dy: Any) -> np.ndarray:
        divisor, padded_shape, out_shape, tiled = require_cache(self._cache, self.layer)
        dy = check_upstream(dy, out_shape, self.dtype, self.layer)
        share = (dy / divisor).astype(self.dtype, copy=False)
        if tiled:
            dxp = untile(share, padded_shape, self.kernel_size)
        else:
            dwin = np.broadcast_to(share[..., None, None], (*out_shape, *self.kernel_size))
            dxp = col2im(dwin, np.zeros(padded_shape, self.dtype), self.stride)
        self._cache = None
        return crop(dxp, self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"

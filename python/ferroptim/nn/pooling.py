"""MaxPool2d and AvgPool2d over ``(N, C, H, W)`` images (``torch.nn`` semantics,
``ceil_mode=False``, no dilation), on the strided window view of :mod:`ferroptim.nn.conv`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim.nn._checks import check_upstream, require_cache
from ferroptim.nn.conv import check_fits, check_image, col2im, crop, pad_image, pair, windows
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

    def _windows(self, x: Any, fill: float) -> tuple[np.ndarray, np.ndarray]:
        self.adopt_input_dtype(x)
        x = check_image(x, self.dtype, None, self.layer)
        check_fits(x, self.kernel_size, self.padding, self.layer)
        xp = pad_image(x, self.padding, fill)
        return xp, windows(xp, self.kernel_size, self.stride)

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
        xp, win = self._windows(x, -np.inf)
        flat = win.reshape(*win.shape[:4], -1)  # copies: (N, C, OH, OW, kh*kw)
        argmax = np.argmax(flat, axis=-1)[..., None]
        y = np.take_along_axis(flat, argmax, axis=-1)[..., 0]
        self._cache = (argmax, xp.shape, flat.shape)
        return y

    def backward(self, dy: Any) -> np.ndarray:
        argmax, padded_shape, flat_shape = require_cache(self._cache, self.layer)
        dy = check_upstream(dy, flat_shape[:4], self.dtype, self.layer)
        dflat = np.zeros(flat_shape, dtype=self.dtype)
        np.put_along_axis(dflat, argmax, dy[..., None], axis=-1)
        dwin = dflat.reshape(*flat_shape[:4], *self.kernel_size)
        self._cache = None
        return crop(col2im(dwin, padded_shape, self.stride), self.padding)


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
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(
                f"AvgPool2d: count_include_pad must be a bool, got {count_include_pad!r}"
            )
        self.count_include_pad = bool(count_include_pad)

    def _divisor(self, height: int, width: int) -> np.ndarray | float:
        """``D`` per output position (a scalar when every window counts the whole kernel)."""
        kh, kw = self.kernel_size
        if self.count_include_pad or self.padding == (0, 0):
            return float(kh * kw)
        inside = pad_image(np.ones((1, 1, height, width), self.dtype), self.padding, 0.0)
        return windows(inside, self.kernel_size, self.stride).sum(axis=(-2, -1))[0, 0]

    def forward(self, x: Any) -> np.ndarray:
        xp, win = self._windows(x, 0.0)
        divisor = self._divisor(
            xp.shape[2] - 2 * self.padding[0], xp.shape[3] - 2 * self.padding[1]
        )
        y = (win.sum(axis=(-2, -1)) / divisor).astype(self.dtype, copy=False)
        self._cache = (divisor, xp.shape, y.shape)
        return y

    def backward(self, dy: Any) -> np.ndarray:
        divisor, padded_shape, out_shape = require_cache(self._cache, self.layer)
        dy = check_upstream(dy, out_shape, self.dtype, self.layer)
        share = (dy / divisor).astype(self.dtype, copy=False)
        dwin = np.broadcast_to(share[..., None, None], (*out_shape, *self.kernel_size))
        self._cache = None
        return crop(col2im(dwin, padded_shape, self.stride), self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"

"""Conv2d (``torch.nn.Conv2d``) by im2col + matmul, and the window helpers pooling shares.

The convolution itself lives in :mod:`ferroptim.nn._conv_kernels`: forward is one matrix product
with the patch matrix, which forward keeps for the weight gradient; backward multiplies ``dy``
by the patch matrix (weight gradient) and by the weight (patch gradient, scattered back to the
image by ``col2im``). The windows of a padded ``(N, C, Hp, Wp)`` image are a strided view
``(N, C, OH, OW, kh, kw)`` (``sliding_window_view``, then every ``stride``-th window).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ferroptim._checks import check_flag, check_int
from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn._conv_kernels import correlate, padded_input_gradient, weight_rows
from ferroptim.nn.init import initialize_layer
from ferroptim.nn.module import Module

__all__ = ["Conv2d"]


def pair(value: Any, name: str, *, allow_zero: bool = False) -> tuple[int, int]:
    """An int or a pair of ints as ``(height, width)``; positive (or ``>= 0`` with
    ``allow_zero``)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if item < 0 or (item == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "positive"
            raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(items[0]), int(items[1])


def check_image(x: Any, dtype: np.dtype, channels: int | None, layer: str) -> np.ndarray:
    """An ``(N, C, H, W)`` array of ``dtype`` (``C == channels`` unless ``channels`` is None)."""
    x = check_input(x, dtype, ndim=4, layer=layer)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{layer}: input must have {channels} channels on axis 1, got shape {x.shape}"
        )
    return x


def check_fits(x: np.ndarray, kernel, padding, layer: str) -> None:
    """The padded image is at least one kernel tall and wide."""
    for axis, k, p in ((2, kernel[0], padding[0]), (3, kernel[1], padding[1])):
        if x.shape[axis] + 2 * p < k:
            raise ValueError(
                f"{layer}: input of shape {x.shape} padded by {padding} is smaller than the "
                f"kernel {kernel}"
            )


def pad_image(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """``x`` padded by ``padding`` rows/columns of ``value`` on each side (no copy when 0)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Read-only view ``(N, C, OH, OW, kh, kw)`` of the windows of a padded image."""
    view = sliding_window_view(xp, kernel, axis=(2, 3))
    return view[:, :, :: stride[0], :: stride[1]]


def crop(xp: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Remove ``padding`` from the spatial axes (inverse of :func:`pad_image`)."""
    ph, pw = padding
    h, w = xp.shape[2], xp.shape[3]
    return np.ascontiguousarray(xp[:, :, ph : h - ph, pw : w - pw])


class Conv2d(Module):
    """2-d cross-correlation over ``(N, C_in, H, W)`` images.

    .. math::

        y_{n,o,p,q} = b_o + \\sum_{c,i,j} W_{o,c,i,j} \\,
        x^{pad}_{n,c,\\,p s_h + i,\\,q s_w + j}

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int)
        Step between windows (default 1).
    padding : int or (int, int)
        Zeros added on each side of both spatial axes (default 0).
    bias : bool
        Learn a bias per output channel.
    init : None, str or callable, optional
        As :class:`~ferroptim.nn.Linear`; ``None`` is torch's default (weight and bias
        ``U(-k, k)``, ``k = 1/sqrt(in_channels * kh * kw)``).
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.
    rng : None, int or numpy Generator, optional
        Source of the initial values.

    Notes
    -----
    ``weight`` has torch's layout ``(out_channels, in_channels, kh, kw)``; the output is
    ``(N, out_channels, OH, OW)`` with ``OH = floor((H + 2 ph - kh) / sh) + 1`` (likewise OW).
    Forward caches the ``(N*OH*OW, kh*kw*C)`` patch matrix for the weight gradient.
    No dilation or groups.
    """

    weight: np.ndarray
    bias: np.ndarray | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        bias: bool = True,
        init: Any = None,
        *,
        dtype: Any = np.float32,
        rng: Any = None,
    ) -> None:
        super().__init__(dtype)
        self.in_channels = check_int("in_channels", in_channels, low=1)
        self.out_channels = check_int("out_channels", out_channels, low=1)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", allow_zero=True)
        check_flag("Conv2d: bias", bias)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.register_parameter("weight", np.zeros(shape))
        if bias:
            self.register_parameter("bias", np.zeros(self.out_channels))
        else:
            self.bias = None
        initialize_layer(self.weight, self.bias, init, rng, "Conv2d")
        self._cache: tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[int, ...]] | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = check_image(x, self.dtype, self.in_channels, "Conv2d")
        check_fits(x, self.kernel_size, self.padding, "Conv2d")
        (ph, pw), rows = self.padding, weight_rows(self.weight)
        y, cols = correlate(x, rows, self.bias, self.kernel_size, self.stride, (ph, ph, pw, pw))
        self._cache = (cols, rows, x.shape, y.shape)
        return y

    def backward(self, dy: Any) -> np.ndarray:
        cols, rows, in_shape, out_shape = require_cache(self._cache, "Conv2d")
        dy = check_upstream(dy, out_shape, self.dtype, "Conv2d")
        n, out_channels, oh, ow = out_shape
        dy_rows = np.empty((out_channels, n * oh * ow), self.dtype)  # dy as (O, N*OH*OW)
        dy_rows.reshape(out_channels, n, oh * ow)[...] = dy.reshape(
            n, out_channels, oh * ow
        ).transpose(1, 0, 2)
        kh, kw = self.kernel_size
        d_rows = (dy_rows @ cols).reshape(self.out_channels, kh, kw, self.in_channels)
        self.grad("weight")[...] += d_rows.transpose(0, 3, 1, 2)
        if self.bias is not None:
            self.grad("bias")[...] += dy_rows.sum(axis=1)
        self._cache = None
        ph, pw = self.padding
        padded_shape = (n, self.in_channels, in_shape[2] + 2 * ph, in_shape[3] + 2 * pw)
        dxp = padded_input_gradient(dy_rows, rows, padded_shape, self.kernel_size, self.stride)
        return crop(dxp, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

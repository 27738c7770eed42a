"""2-d cross-correlation as one matrix product over a patch matrix (im2col), for Conv2d.

The patch matrix ``P`` has one row per output pixel, in ``(N, OH, OW)`` order, and one column per
kernel tap, in ``(kh, kw, C)`` order: ``P[(n, p, q), (i, j, c)] = x_pad[n, c, p s_h + i,
q s_w + j]``. With the weight as rows ``R[o, (i, j, c)] = W[o, c, i, j]`` the output is
``y[n, o, p, q] = (R @ P.T)[o, (n, p, q)] + b[o]``.

NumPy copies strided data fastest when the innermost loop is long, so ``P`` is filled in one of
two memory layouts and used as a matrix either way (BLAS takes both orders without a copy):

* channels-last (C order): the image is moved to ``(N, Hp, Wp, C)`` once, and each row of ``P``
  is ``kh`` runs of ``kw*C`` contiguous values;
* channels-first (Fortran order, each column contiguous): runs of ``OW`` values along an image
  row, better when ``kw*C`` is short (e.g. a 1-channel input).

The input gradient goes the other way (patch-matrix gradient, then :func:`col2im`), again in the
memory layout with the longer inner loop.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["col2im", "correlate", "padded_input_gradient", "patch_matrix", "weight_rows"]


def weight_rows(weight: np.ndarray) -> np.ndarray:
    """``(O, C, kh, kw)`` weight as the ``(O, kh*kw*C)`` matrix ``R`` (a small copy)."""
    out_channels = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(out_channels, -1)


def _output_size(size: int, kernel: int, stride: int, before: int, after: int) -> int:
    return (size + before + after - kernel) // stride + 1


def padded(x: np.ndarray, pads: tuple[int, int, int, int], channels_last: bool) -> np.ndarray:
    """``x`` zero-padded by ``pads`` = (top, bottom, left, right) as ``(N, C, Hp, Wp)``, or as
    ``(N, Hp, Wp, C)`` when ``channels_last``. (``np.pad`` costs ~10x more on small images.)"""
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    if not channels_last:
        if top == bottom == left == right == 0:
            return x
        out = np.zeros((n, c, h + top + bottom, w + left + right), x.dtype)
        out[:, :, top : top + h, left : left + w] = x
        return out
    out = np.zeros((n, h + top + bottom, w + left + right, c), x.dtype)
    out[:, top : top + h, left : left + w] = x.transpose(0, 2, 3, 1)
    return out


def patch_matrix(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> tuple[np.ndarray, tuple[int, int]]:
    """The patch matrix ``P`` ``(N*OH*OW, kh*kw*C)`` of the NCHW image ``x`` padded by
    ``pads`` = (top, bottom, left, right), and ``(OH, OW)``."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh = _output_size(h, kh, sh, pads[0], pads[1])
    ow = _output_size(w, kw, sw, pads[2], pads[3])
    if kw * c >= ow:
        image = padded(x, pads, channels_last=True)
        win = sliding_window_view(image, kernel, axis=(1, 2))[:, ::sh, ::sw]  # N OH OW C kh kw
        cols = np.empty((n, oh, ow, kh, kw, c), x.dtype)
        cols[...] = win.transpose(0, 1, 2, 4, 5, 3)
        return cols.reshape(n * oh * ow, kh * kw * c), (oh, ow)
    image = padded(x, pads, channels_last=False)
    win = sliding_window_view(image, kernel, axis=(2, 3))[:, :, ::sh, ::sw]  # N C OH OW kh kw
    cols_t = np.empty((kh, kw, c, n, oh, ow), x.dtype)
    cols_t[...] = win.transpose(4, 5, 1, 0, 2, 3)
    return cols_t.reshape(kh * kw * c, n * oh * ow).T, (oh, ow)


def correlate(
    x: np.ndarray,
    rows: np.ndarray,
    bias: np.ndarray | None,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """``y`` ``(N, O, OH, OW)`` = correlation of ``x`` with the weight ``rows`` (from
    :func:`weight_rows`) plus ``bias``; also returns the patch matrix."""
    cols, (oh, ow) = patch_matrix(x, kernel, stride, pads)
    n, out_channels = x.shape[0], rows.shape[0]
    y = np.empty((n, out_channels, oh, ow), x.dtype)
    target = y.reshape(n, out_channels, oh * ow)
    # The product is fastest (OpenBLAS) with its rows along the patch matrix's memory order.
    if cols.flags.c_contiguous:
        y_rows = cols @ rows.T  # (N*OH*OW, O)
        if bias is not None:
            y_rows += bias
        target[...] = y_rows.reshape(n, oh * ow, out_channels).transpose(0, 2, 1)
    else:
        y_t = rows @ cols.T  # (O, N*OH*OW)
        if bias is not None:
            y_t += bias[:, None]
        target[...] = y_t.reshape(out_channels, n, oh * ow).transpose(1, 0, 2)
    return y, cols


def col2im(dwin: np.ndarray, out: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Adjoint of the window view: add ``dwin`` ``(N, C, OH, OW, kh, kw)`` (any strides) into
    the padded ``(N, C, Hp, Wp)`` array ``out`` (any strides; usually zeros) and return it.
    A loop over the kernel offsets only: offset ``(i, j)`` adds one strided slab."""
    oh, ow, kh, kw = dwin.shape[2:]
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += dwin[
                ..., i, j
            ]
    return out


def padded_input_gradient(
    dy_rows: np.ndarray,
    rows: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
) -> np.ndarray:
    """Gradient w.r.t. the padded input ``(N, C, Hp, Wp)`` of :func:`correlate`, from ``dy`` as
    rows ``(O, N*OH*OW)`` and the weight ``rows``: the patch-matrix gradient
    ``dP = dy_rows.T @ rows`` scattered back by :func:`col2im`.

    The slabs are added with ``C`` innermost (channels-last memory, the result is an NCHW view
    of it) when ``C`` exceeds ``OW``, else with ``OW`` innermost, whichever loop is longer.
    """
    n, c, hp, wp = padded_shape
    kh, kw = kernel
    oh, ow = (hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1
    if c > ow:  # one (N*OH*OW, C) block per kernel offset: each slab is contiguous
        taps = rows.reshape(rows.shape[0], kh * kw, c).transpose(1, 0, 2)  # (kh*kw, O, C)
        dcols = np.matmul(dy_rows.T, taps).reshape(kh, kw, n, oh, ow, c)
        dcols = dcols.transpose(2, 5, 3, 4, 0, 1)
        out = np.zeros((n, hp, wp, c), rows.dtype).transpose(0, 3, 1, 2)
    else:
        dcols = (rows.T @ dy_rows).reshape(kh, kw, c, n, oh, ow).transpose(3, 2, 4, 5, 0, 1)
        out = np.zeros(padded_shape, rows.dtype)
    return col2im(dcols, out, stride)

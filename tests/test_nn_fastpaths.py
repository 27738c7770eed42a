"""Fast paths of the NumPy layers agree with the general formulas they replace: the branch-free
ReLU mask, the tiled pooling of non-overlapping windows and the convolution's patch matrix in
either memory layout."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim.nn import pooling
from ferroptim.nn._tiles import tile_planes
from ferroptim.nn.activation import ReLU
from ferroptim.nn.conv import Conv2d, pair
from ferroptim.nn.pooling import AvgPool2d, MaxPool2d, _Pool2d


# --- ReLU ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_is_where_even_for_nonfinite_dy(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x[0, 0, 0, :3] = [0.0, -0.0, np.nan]  # the kink and NaN get no gradient, as in torch
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[:, :, 1, :] = np.nan
    dy[:, :, 2, :] = np.inf
    layer = ReLU()
    layer(x)
    dx = layer.backward(dy)
    expected = np.where(x > 0, dy, 0.0).astype(dtype)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(dx, expected)
    assert not np.signbit(dx[x <= 0]).any()  # masked entries are +0.0
    assert np.isnan(dx[:, :, 1, :][x[:, :, 1, :] > 0]).all()  # kept NaN stays NaN
    np.testing.assert_array_equal(dy[:, :, 2, :], np.inf)  # dy itself is not modified


# --- pooling ------------------------------------------------------------------------------------
def _max_pool_by_definition(x, kernel, stride, padding):
    """Loops over windows: the maximum and a one-hot gradient map at its first occurrence
    (row-major window order, NaN counts as the maximum), padding is -inf."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.empty((*x.shape[:2], oh, ow), x.dtype)
    first = np.zeros((*y.shape, *xp.shape[2:]), bool)
    for n, c, p, q in np.ndindex(y.shape):
        window = xp[n, c, p * sh : p * sh + kh, q * sw : q * sw + kw].ravel()
        nan = np.flatnonzero(np.isnan(window))
        k = nan[0] if nan.size else int(np.flatnonzero(window == window.max())[0])
        y[n, c, p, q] = window[k]
        first[n, c, p, q, p * sh + k // kw, q * sw + k % kw] = True
    return y, first[..., ph : xp.shape[2] - ph, pw : xp.shape[3] - pw]


def _general_route(monkeypatch):
    """Force the strided-window route (as for overlapping windows)."""
    monkeypatch.setattr(_Pool2d, "_tiled", lambda self, xp: None)


POOL_CASES = [
    # (shape, kernel, padding): every one has stride == kernel, i.e. the tiled route
    ((2, 3, 8, 8), (2, 2), (0, 0)),
    ((3, 2, 7, 9), (2, 2), (0, 0)),  # odd sizes: the last row/column belongs to no window
    ((2, 2, 6, 9), (3, 3), (1, 1)),
    ((2, 1, 5, 8), (2, 3), (1, 0)),
    ((1, 2, 4, 4), (1, 1), (0, 0)),
    ((2, 2, 5, 5), (5, 5), (0, 0)),
    ((0, 2, 4, 4), (2, 2), (0, 0)),  # empty batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, kernel, padding", POOL_CASES)
def test_tiled_max_pool_matches_the_definition_and_the_general_route(
    monkeypatch, dtype, shape, kernel, padding
):
    rng = np.random.default_rng(sum(shape) + kernel[0])
    x = rng.integers(-2, 3, shape).astype(dtype)  # few values: many ties, zeros of both signs
    x[x == 0] = np.where(rng.random(np.count_nonzero(x == 0)) < 0.5, -0.0, 0.0)
    if x.size:
        x.flat[rng.integers(0, x.size, 3)] = -np.inf
    dy = rng.standard_normal((shape[0], shape[1], 1, 1)).astype(dtype) + 10.0
    calls = []
    monkeypatch.setattr(pooling, "tile_planes", lambda *a: calls.append(1) or tile_planes(*a))
    fast = MaxPool2d(kernel, padding=padding)
    y = fast(x)
    assert calls, "stride == kernel_size must take the tiled route"
    dy = np.broadcast_to(dy, y.shape) * np.arange(1, y.shape[2] * y.shape[3] + 1).reshape(
        y.shape[2:]
    )
    dy = dy.astype(dtype)  # distinct values, so a misrouted gradient shows
    dx = fast.backward(dy)
    expected_y, first = _max_pool_by_definition(x, kernel, kernel, padding)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(expected_y))  # the first max's sign
    np.testing.assert_array_equal(dx, np.einsum("ncpq,ncpqhw->nchw", dy, first.astype(dtype)))
    assert y.dtype == dx.dtype == dtype and dx.shape == x.shape

    _general_route(monkeypatch)
    general = MaxPool2d(kernel, padding=padding)
    np.testing.assert_array_equal(general(x), y)
    np.testing.assert_array_equal(general.backward(dy), dx)


def test_max_pool_ties_follow_row_major_order_not_columns():
    """Maximum at (0, 1) and (1, 0): torch picks (0, 1), the first in row-major order."""
    x = np.array([[[[0.0, 5.0], [5.0, 0.0]]]])
    layer = MaxPool2d(2, dtype=np.float64)
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1))), [[[[0, 1], [0, 0]]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_max_pool_with_nan_matches_the_general_route(monkeypatch, dtype):
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(dtype)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[1, 2, 5, 5] = np.nan
    dy = np.random.default_rng(4).standard_normal((2, 3, 3, 3)).astype(dtype)
    fast = MaxPool2d(2)
    y, dx = fast(x), None
    dx = fast.backward(dy)
    expected_y, first = _max_pool_by_definition(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, expected_y)  # NaN windows give NaN
    np.testing.assert_array_equal(dx, np.einsum("ncpq,ncpqhw->nchw", dy, first.astype(dtype)))
    assert dx[0, 0, 0, 1] == dy[0, 0, 0, 0] and dx[0, 0, 1, 0] == 0.0  # the first NaN
    _general_route(monkeypatch)
    general = MaxPool2d(2)
    np.testing.assert_array_equal(general(x), y)
    np.testing.assert_array_equal(general.backward(dy), dx)


@pytest.mark.parametrize(
    "kernel, stride, padding", [(3, 2, 1), ((2, 3), (1, 2), (1, 1)), (2, 1, 0)]
)
def test_overlapping_pooling_takes_the_general_route(monkeypatch, kernel, stride, padding):
    monkeypatch.setattr(pooling, "tile_planes", lambda *a: pytest.fail("tiled route taken"))
    x = np.random.default_rng(5).integers(-2, 3, (2, 2, 7, 6)).astype(np.float64)
    layer = MaxPool2d(kernel, stride, padding)
    y = layer(x)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    dx = layer.backward(dy)
    k, s, p = (pair(v, "v", allow_zero=True) for v in (kernel, stride, padding))
    expected_y, first = _max_pool_by_definition(x, k, s, p)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_allclose(dx, np.einsum("ncpq,ncpqhw->nchw", dy, first), rtol=1e-15)
    avg = AvgPool2d(kernel, stride, padding)
    avg.backward(avg(x))  # AvgPool2d too never tiles overlapping windows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, padding", POOL_CASES)
def test_tiled_avg_pool_matches_the_general_route(
    monkeypatch, dtype, count_include_pad, shape, kernel, padding
):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    fast = AvgPool2d(kernel, padding=padding, count_include_pad=count_include_pad)
    y = fast(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = fast.backward(dy)
    _general_route(monkeypatch)
    general = AvgPool2d(kernel, padding=padding, count_include_pad=count_include_pad)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, general(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, general.backward(dy), rtol=tol, atol=tol)
    assert y.dtype == dx.dtype == dtype and dx.shape == x.shape
    if x.size:  # elements outside every window get no gradient, the others their share
        kh, kw = kernel
        covered = np.zeros(shape, bool)
        ph, pw = padding
        rows = (shape[2] + 2 * ph) // kh * kh - ph
        cols = (shape[3] + 2 * pw) // kw * kw - pw
        covered[:, :, :rows, :cols] = True
        assert not dx[~covered].any()


# --- Conv2d ---------------------------------------------------------------------------------------
def _conv_by_definition(x, weight, bias, stride, padding, dy):
    """y, dx, dweight, dbias of torch's Conv2d by loops over the kernel offsets."""
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], weight.shape[0], oh, ow)) + bias[:, None, None]
    dxp, dweight = np.zeros(xp.shape), np.zeros(weight.shape)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            y += np.einsum("ncpq,oc->nopq", patch, weight[:, :, i, j])
            dweight[:, :, i, j] = np.einsum("nopq,ncpq->oc", dy, patch)
            dxp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += np.einsum(
                "nopq,oc->ncpq", dy, weight[:, :, i, j]
            )
    dx = dxp[:, :, ph : xp.shape[2] - ph, pw : xp.shape[3] - pw]
    return y, dx, dweight, dy.sum(axis=(0, 2, 3))


CONV_CASES = [
    # (x shape, out channels, kernel, stride, padding): both memory layouts of the patch matrix
    # (kw*C >= OW or not) and of its gradient (C > OW or not) occur
    ((4, 1, 8, 8), 16, 3, 1, 1),  # the demo's first layer
    ((4, 16, 4, 4), 32, 3, 1, 1),  # the demo's second layer
    ((2, 3, 7, 9), 4, (2, 3), (2, 1), (1, 2)),
    ((3, 5, 9, 6), 2, 3, 2, 0),
    ((2, 2, 4, 5), 3, 2, 1, 3),  # padding larger than the kernel
    ((2, 6, 3, 11), 3, (3, 1), (1, 3), (0, 1)),
    ((1, 2, 12, 12), 2, 5, 1, 2),
    ((2, 4, 3, 3), 5, 3, 1, 0),  # a single output pixel
    ((0, 3, 5, 5), 4, 3, 1, 1),  # empty batch
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, out_channels, kernel, stride, padding", CONV_CASES)
def test_conv2d_matches_the_definition(dtype, shape, out_channels, kernel, stride, padding):
    rng = np.random.default_rng(shape[1] * 100 + out_channels)
    layer = Conv2d(shape[1], out_channels, kernel, stride, padding, dtype=dtype, rng=1)
    layer.bias[...] = rng.standard_normal(out_channels)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    s, p = (pair(v, "v", allow_zero=True) for v in (stride, padding))
    want = _conv_by_definition(
        x.astype(np.float64), layer.weight.astype(np.float64), layer.bias, s, p, dy
    )
    tol = 1e-12 if dtype == np.float64 else 2e-5
    got = (y, dx, layer.grad("weight"), layer.grad("bias"))
    for name, actual, expected in zip(("y", "dx", "dweight", "dbias"), got, want, strict=True):
        assert actual.dtype == dtype and actual.shape == expected.shape, name
        assert actual.flags.c_contiguous, name
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=name)


def test_conv2d_gradients_accumulate_and_use_the_forward_weight():
    layer = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    dy = np.random.default_rng(2).standard_normal((2, 4, 5, 5))
    weight = layer.weight.copy()
    layer(x)
    layer.weight[...] = 0.0  # changed between forward and backward: backward uses the forward's
    dx = layer.backward(dy)
    layer.weight[...] = weight
    layer(x)
    layer.backward(dy)
    _, want_dx, want_dweight, want_dbias = _conv_by_definition(
        x, weight, layer.bias, (1, 1), (1, 1), dy
    )
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grad("weight"), 2 * want_dweight, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grad("bias"), 2 * want_dbias, rtol=1e-12)


@pytest.mark.parametrize("in_channels, padding", [(1, 0), (1, 1), (16, 0), (16, 1)])
def test_conv2d_results_are_fresh_arrays(in_channels, padding):
    """What forward and backward return shares no memory with the input or with later results
    (both memory layouts, with and without padding)."""
    layer = Conv2d(in_channels, 8, 3, padding=padding, dtype=np.float64, rng=0)
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 4, in_channels, 6, 6))
    y1 = layer(x1)
    dy = rng.standard_normal(y1.shape)
    dx1 = layer.backward(dy)
    y1_copy, dx1_copy = y1.copy(), dx1.copy()
    y2 = layer(x2)
    dx2 = layer.backward(2.0 * dy)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    assert not np.shares_memory(dx1, dx2) and not np.shares_memory(y1, y2)
    assert not np.shares_memory(dx2, x2) and not np.shares_memory(y2, x2)

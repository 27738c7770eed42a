"""Fast paths of the NumPy layers agree with the general formulas they replace: the branch-free
ReLU mask, the reshape-based pooling for non-overlapping windows and the NHWC convolution."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim.nn.activation import ReLU


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

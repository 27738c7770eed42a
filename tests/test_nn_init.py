"""nn.init: torch's gains and fans, statistics of every initializer on large arrays with fixed
seeds, orthogonality, seeding, argument errors, and the ``init=`` option of Linear/Conv2d."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import load_golden
from ferroptim import _seed
from ferroptim.nn import _rng, init
from ferroptim.nn.conv import Conv2d
from ferroptim.nn.linear import Linear

N = 400_000  # elements in the statistical tests: mean error ~ std * 1.6e-3


def _phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


# --- torch's tables ------------------------------------------------------------------------------
def test_gains_equal_torch():
    gains = load_golden("golden_nn_layers.npz", "init/gain/")
    assert len(gains) >= 14
    for name, expected in gains.items():
        if name.startswith("leaky_relu_"):
            slope = float(name.rsplit("_", 1)[1])
            slope = int(slope) if slope.is_integer() else slope
            actual = init.calculate_gain("leaky_relu", slope)
        else:
            actual = init.calculate_gain(name)
        assert actual == pytest.approx(float(expected), rel=1e-15, abs=0), name


def test_fans_equal_torch():
    fans = load_golden("golden_nn_layers.npz", "init/fans/")
    assert len(fans) == 4
    for row in fans.values():
        shape, expected = tuple(int(v) for v in row[:-2]), tuple(int(v) for v in row[-2:])
        assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == expected


def test_gain_and_fan_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(np.empty(5))


# --- statistics ----------------------------------------------------------------------------------
def _assert_moments(values, mean, std, label=""):
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n) + 1e-12, label
    assert values.std() == pytest.approx(std, rel=0.01), label


def test_normal_and_uniform():
    a = init.normal_(np.empty(N), mean=1.5, std=0.02, rng=0)
    _assert_moments(a, 1.5, 0.02)
    u = init.uniform_(np.empty(N), a=-1.0, b=3.0, rng=1)
    assert u.min() >= -1.0 and u.max() < 3.0
    _assert_moments(u, 1.0, 4 / math.sqrt(12))


def test_scaled_normal_uses_fan_in():
    w = init.scaled_normal_(np.empty((200, 2000)), init_scale=0.1, rng=0)
    _assert_moments(w, 0.0, 0.1 / math.sqrt(2000))
    conv = init.scaled_normal_(np.empty((100, 8, 5, 5)), rng=1)
    _assert_moments(conv, 0.0, 1.0 / math.sqrt(8 * 25))


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_xavier(gain):
    shape = (300, 500, 3)  # fan_in 1500, fan_out 900
    std = gain * math.sqrt(2.0 / (1500 + 900))
    u = init.xavier_uniform_(np.empty(shape), gain=gain, rng=0)
    bound = math.sqrt(3) * std
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.99 * bound
    _assert_moments(u, 0.0, std)
    _assert_moments(init.xavier_normal_(np.empty(shape), gain=gain, rng=1), 0.0, std)


@pytest.mark.parametrize(
    "a, mode, nonlinearity, gain",
    [
        (0.0, "fan_in", "leaky_relu", math.sqrt(2.0)),
        (math.sqrt(5), "fan_in", "leaky_relu", math.sqrt(1 / 3)),
        (0.0, "fan_out", "relu", math.sqrt(2.0)),
        (0.0, "fan_in", "tanh", 5 / 3),
    ],
)
def test_kaiming(a, mode, nonlinearity, gain):
    shape = (400, 100, 3, 3)  # fan_in 900, fan_out 3600
    fan = 900 if mode == "fan_in" else 3600
    std = gain / math.sqrt(fan)
    u = init.kaiming_uniform_(np.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity, rng=0)
    assert np.abs(u).max() <= math.sqrt(3) * std
    _assert_moments(u, 0.0, std)
    n = init.kaiming_normal_(np.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity, rng=1)
    _assert_moments(n, 0.0, std)


@pytest.mark.parametrize(
    "mean, std, lo, hi",
    [
        (0.0, 1.0, -2.0, 2.0),  # torch's defaults: normal proposals
        (1.0, 0.5, 2.5, 4.0),  # a wide right-tail interval: exponential proposals
        (0.0, 2.0, -9.0, -6.0),  # the same in the left tail (reflected)
        (0.0, 1.0, 3.0, 3.2),  # narrow, in the tail: uniform proposals
        (0.5, 1.0, 0.49, 0.53),  # narrow, around the mean
    ],
)
def test_trunc_normal_matches_the_truncated_distribution(mean, std, lo, hi):
    t = init.trunc_normal_(np.empty(N), mean=mean, std=std, a=lo, b=hi, rng=1)
    assert t.min() >= lo and t.max() <= hi
    za, zb = (lo - mean) / std, (hi - mean) / std
    z = _cdf(zb) - _cdf(za)
    expected_mean = mean + std * (_phi(za) - _phi(zb)) / z
    expected_var = std**2 * (
        1 + (za * _phi(za) - zb * _phi(zb)) / z - ((_phi(za) - _phi(zb)) / z) ** 2
    )
    _assert_moments(t, expected_mean, math.sqrt(expected_var))


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (6, 3, 2, 2), (8, 8)])
def test_orthogonal(shape):
    w = init.orthogonal_(np.empty(shape), gain=2.0, rng=0)
    flat = w.reshape(shape[0], -1) / 2.0
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-12)


def test_constants():
    a = np.empty((3, 4), np.float32)
    assert init.constant_(a, 0.25) is a and (a == 0.25).all()
    assert (init.zeros_(a) == 0).all() and (init.ones_(a) == 1).all()


# --- in place, dtype, seeding --------------------------------------------------------------------
@pytest.mark.parametrize(
    "fill",
    [
        lambda a, r: init.normal_(a, rng=r),
        lambda a, r: init.uniform_(a, rng=r),
        lambda a, r: init.scaled_normal_(a, rng=r),
        lambda a, r: init.trunc_normal_(a, rng=r),
        lambda a, r: init.xavier_uniform_(a, rng=r),
        lambda a, r: init.xavier_normal_(a, rng=r),
        lambda a, r: init.kaiming_uniform_(a, rng=r),
        lambda a, r: init.kaiming_normal_(a, rng=r),
        lambda a, r: init.orthogonal_(a, rng=r),
    ],
)
def test_in_place_dtype_and_seeds(fill):
    a32 = np.zeros((6, 5), np.float32)
    assert fill(a32, 3) is a32 and a32.dtype == np.float32 and a32.any()
    a64 = fill(np.zeros((6, 5)), 3)
    np.testing.assert_array_equal(a32, a64.astype(np.float32))  # one rounding of the same draw
    np.testing.assert_array_equal(fill(np.zeros((6, 5)), np.random.default_rng(3)), a64)
    generator = np.random.default_rng(9)
    first = fill(np.zeros((6, 5)), generator).copy()
    assert not np.array_equal(fill(np.zeros((6, 5)), generator), first), "the generator advances"
    view = np.zeros((6, 10))[:, ::2]
    fill(view, 1)
    assert view.any()


def test_manual_seed_drives_the_default_generator():
    saved = _seed._initial
    try:
        _rng.manual_seed(5)
        first = init.normal_(np.empty(10))
        _rng.manual_seed(5)
        np.testing.assert_array_equal(init.normal_(np.empty(10)), first)
    finally:
        _seed._initial = saved


# --- argument errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda a: init.kaiming_uniform_(a, nonlinearity="gelu"), ValueError, "'gelu'"),
        (lambda a: init.kaiming_normal_(a, mode="fan_avg"), ValueError, "mode 'fan_avg'"),
        (lambda a: init.uniform_(a, 1.0, 0.0), ValueError, "a must be <= b"),
        (lambda a: init.normal_(a, std=-1.0), ValueError, "std"),
        (lambda a: init.trunc_normal_(a, a=1.0, b=1.0), ValueError, "a must be < b"),
        (lambda a: init.trunc_normal_(a, std=0.0), ValueError, "std"),
        (lambda a: init.scaled_normal_(a, init_scale=-1.0), ValueError, "init_scale"),
        (lambda a: init.normal_(a, rng="x"), TypeError, "rng"),
        (lambda a: init.constant_(a, "1"), TypeError, "val"),
        (lambda a: init.xavier_uniform_(a[0]), ValueError, "fewer than 2 dimensions"),
        (lambda a: init.orthogonal_(a[0]), ValueError, "2 or more dimensions"),
    ],
)
def test_errors_name_the_argument_and_change_nothing(call, error, match):
    a = np.full((4, 3), 7.0)
    with pytest.raises(error, match=match):
        call(a)
    assert (a == 7.0).all()


def test_tensor_must_be_a_writeable_float_array():
    with pytest.raises(TypeError, match="numpy array"):
        init.normal_([1.0, 2.0])
    with pytest.raises(TypeError, match="floating dtype"):
        init.normal_(np.zeros(3, np.int64))
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        init.ones_(frozen)


# --- the init= option of Linear / Conv2d ---------------------------------------------------------
def test_default_layer_init_is_torchs():
    linear = Linear(400, 300, dtype=np.float64, rng=0)
    bound = 1 / math.sqrt(400)
    for array in (linear.weight, linear.bias):
        assert np.abs(array).max() <= bound and np.abs(array).max() > 0.95 * bound
    _assert_moments(linear.weight, 0.0, bound / math.sqrt(3))
    conv = Conv2d(16, 64, (3, 5), dtype=np.float64, rng=0)
    bound = 1 / math.sqrt(16 * 15)
    assert np.abs(conv.weight).max() <= bound and np.abs(conv.bias).max() <= bound
    assert np.abs(conv.weight).max() > 0.95 * bound


@pytest.mark.parametrize(
    "name, std",
    [
        ("normal", 0.02),
        ("scaled_normal", 1 / math.sqrt(600)),
        ("xavier_uniform", math.sqrt(2 / 1000)),
        ("xavier_normal", math.sqrt(2 / 1000)),
        ("kaiming_uniform", math.sqrt(2 / 600)),
        ("kaiming_normal", math.sqrt(2 / 600)),
        ("orthogonal", 1 / math.sqrt(600)),
        ("zeros", 0.0),
    ],
)
def test_named_layer_inits(name, std):
    layer = Linear(600, 400, init=name, dtype=np.float64, rng=0)
    assert layer.weight.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    assert not layer.bias.any(), "a chosen init starts the bias at zero"
    conv = Conv2d(3, 4, 3, init=name, rng=0)
    assert conv.weight.dtype == np.float32 and not conv.bias.any()


def test_callable_layer_init_and_seeding():
    seen = []

    def fill(weight, rng):
        seen.append((weight.shape, type(rng)))
        weight[...] = 0.5

    layer = Linear(3, 2, init=fill, rng=1)
    assert seen == [((2, 3), np.random.Generator)]
    assert (layer.weight == 0.5).all() and not layer.bias.any()
    np.testing.assert_array_equal(Linear(5, 4, rng=7).weight, Linear(5, 4, rng=7).weight)
    assert not np.array_equal(Linear(5, 4, rng=7).weight, Linear(5, 4, rng=8).weight)
    with pytest.raises(ValueError, match="init must be None, a callable"):
        Linear(3, 2, init="he")
    with pytest.raises(ValueError, match="Conv2d: init"):
        Conv2d(1, 1, 3, init=3)

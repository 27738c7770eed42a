"""Activation modules: torch's values and gradients (golden fixture), finite-difference checks,
float32 against float64, numerical stability, the exact erf, and bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from conftest import load_golden
from ferroptim.nn import activation as A
from ferroptim.nn import functional as F
from ferroptim.nn.gradcheck import gradcheck

DATA = load_golden("golden_nn_functions.npz")
ACT_CASES = json.loads(str(DATA["meta"]))["activations"]

# Factories for every activation with non-default options, as (id, callable(dtype)).
FACTORIES = [
    ("Sigmoid", lambda d: A.Sigmoid(dtype=d)),
    ("Tanh", lambda d: A.Tanh(dtype=d)),
    ("ReLU", lambda d: A.ReLU(dtype=d)),
    ("LeakyReLU", lambda d: A.LeakyReLU(0.2, dtype=d)),
    ("PReLU", lambda d: A.PReLU(dtype=d)),
    ("PReLU3", lambda d: A.PReLU(3, init=-0.3, dtype=d)),
    ("ELU", lambda d: A.ELU(0.7, dtype=d)),
    ("GELU", lambda d: A.GELU(dtype=d)),
    ("GELU-tanh", lambda d: A.GELU("tanh", dtype=d)),
    ("SiLU", lambda d: A.SiLU(dtype=d)),
    ("Softplus", lambda d: A.Softplus(dtype=d)),
    ("Softplus-b2", lambda d: A.Softplus(beta=2.0, threshold=3.0, dtype=d)),
    ("Softmax", lambda d: A.Softmax(dim=1, dtype=d)),
    ("LogSoftmax", lambda d: A.LogSoftmax(dtype=d)),
]
IDS = [name for name, _ in FACTORIES]
MAKERS = [make for _, make in FACTORIES]


def away_from_kinks(shape, seed=0, scale=2.0):
    """Normal values with |x| >= 0.05 (ReLU-type kinks and Softplus's switch are avoided)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    return np.where(np.abs(x) < 0.05, 0.3, x)


@pytest.mark.parametrize("case", ACT_CASES)
def test_matches_torch(case):
    config = json.loads(str(DATA[f"act/{case}/config"]))
    module = getattr(A, config["class"])(**config["kwargs"], dtype=np.float64)
    if config["class"] == "PReLU":
        module.weight[...] = DATA[f"act/{case}/weight"]
    x = DATA[f"act/{case}/x"]
    y = module(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    np.testing.assert_allclose(y, DATA[f"act/{case}/y"], rtol=1e-9, atol=1e-12)
    dx = module.backward(DATA[f"act/{case}/dy"])
    np.testing.assert_allclose(dx, DATA[f"act/{case}/dx"], rtol=1e-9, atol=1e-12)
    if config["class"] == "PReLU":
        np.testing.assert_allclose(
            module.grad("weight"), DATA[f"act/{case}/dweight"], rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("make", MAKERS, ids=IDS)
def test_gradcheck(make):
    report = gradcheck(make(np.float64), away_from_kinks((4, 3, 5)))
    assert report.passed, str(report)


@pytest.mark.parametrize("make", MAKERS, ids=IDS)
def test_float32_close_to_float64(make):
    x = away_from_kinks((6, 3, 4), seed=1).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    m32, m64 = make(np.float32), make(np.float64)
    y32, y64 = m32(x), m64(x.astype(np.float64))
    dx32, dx64 = m32.backward(dy), m64.backward(dy.astype(np.float64))
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=2e-5, atol=2e-6)
    for (_, g32), (_, g64) in zip(m32.named_gradients(), m64.named_gradients(), strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", MAKERS, ids=IDS)
def test_extreme_inputs_are_finite_without_warnings(make, dtype):
    row = [-1e4, -1000.0, -88.0, -50.0, 50.0, 88.0, 1000.0, 1e4, -1e-30, 1e-30]
    x = np.broadcast_to(np.array(row, dtype), (2, 3, 10)).copy()  # 3 channels on axis 1
    module = make(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = module(x)
        dx = module.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


def test_saturation_values():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0])
    np.testing.assert_array_equal(A.Sigmoid(dtype=np.float64)(x)[[0, 3]], [0.0, 1.0])
    np.testing.assert_array_equal(A.Softplus(dtype=np.float64)(x)[[0, 3]], [0.0, 1000.0])
    np.testing.assert_array_equal(A.GELU(dtype=np.float64)(x)[[0, 3]], [0.0, 1000.0])
    np.testing.assert_array_equal(A.SiLU(dtype=np.float64)(x)[[0, 3]], [0.0, 1000.0])
    probs = A.Softmax(dtype=np.float64)(x)
    np.testing.assert_allclose(probs, [0.0, 0.0, 0.0, 1.0])
    log_probs = A.LogSoftmax(dtype=np.float64)(x)
    np.testing.assert_allclose(log_probs, [-2000.0, -1050.0, -950.0, 0.0])


def test_kink_gradients_follow_torch():
    x = np.array([-1.0, 0.0, 1.0])
    dy = np.ones(3)
    for module, expected in [
        (A.ReLU(dtype=np.float64), [0.0, 0.0, 1.0]),
        (A.LeakyReLU(0.1, dtype=np.float64), [0.1, 0.1, 1.0]),
        (A.PReLU(init=0.3, dtype=np.float64), [0.3, 0.3, 1.0]),
        (A.ELU(2.0, dtype=np.float64), [2.0 * math.exp(-1.0), 2.0, 1.0]),
    ]:
        module(x)
        np.testing.assert_allclose(module.backward(dy), expected, rtol=1e-15)


def test_relu_propagates_nan():
    assert np.isnan(A.ReLU(dtype=np.float64)(np.array([np.nan]))[0])


def test_softmax_sums_to_one_along_dim():
    x = away_from_kinks((3, 4, 5))
    for dim in (0, 1, 2, -1, -3):
        y = A.Softmax(dim, dtype=np.float64)(x)
        np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-14)
        logs = A.LogSoftmax(dim, dtype=np.float64)(x)
        np.testing.assert_allclose(np.exp(logs), y, rtol=1e-13)


def test_softmax_zero_dim_input():
    module = A.LogSoftmax(dtype=np.float64)
    assert module(np.array(3.0)) == 0.0
    assert module.backward(np.array(2.0)) == 0.0


def test_prelu_parameter_state_and_repr():
    module = A.PReLU(4, init=0.1, dtype=np.float64)
    assert [name for name, _ in module.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(module.state_dict()["weight"], np.full(4, 0.1))
    assert "num_parameters=4" in repr(module)
    module(np.full((2, 4, 3), -2.0))
    module.backward(np.ones((2, 4, 3)))
    np.testing.assert_array_equal(module.grad("weight"), np.full(4, -12.0))
    for cls in (A.ReLU, A.Sigmoid, A.Softmax, A.GELU):
        assert cls().num_parameters() == 0


def test_input_is_not_modified():
    x = away_from_kinks((4, 3))
    before = x.copy()
    for make in MAKERS:
        module = make(np.float64)
        module(x)
        module.backward(np.ones_like(x))
        np.testing.assert_array_equal(x, before)


def test_backward_before_forward_and_twice():
    module = A.Tanh()
    with pytest.raises(RuntimeError, match="Tanh: backward called before forward"):
        module.backward(np.ones(3))
    module(np.ones(3))
    module.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(np.ones(3))


def test_dy_shape_mismatch():
    module = A.Sigmoid()
    module(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dy has shape \(3, 2\).*\(2, 3\)"):
        module.backward(np.ones((3, 2)))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: A.GELU("fast"), ValueError, "approximate"),
        (lambda: A.PReLU(0), ValueError, "num_parameters"),
        (lambda: A.PReLU(2.0), TypeError, "num_parameters"),
        (lambda: A.PReLU(init="x"), TypeError, "init"),
        (lambda: A.LeakyReLU(float("nan")), ValueError, "negative_slope"),
        (lambda: A.ELU(None), TypeError, "alpha"),
        (lambda: A.Softplus(beta=0), ValueError, "beta"),
        (lambda: A.Softmax(dim=1.0), TypeError, "dim"),
        (lambda: A.Tanh(dtype=np.int32), TypeError, "dtype"),
    ],
)
def test_bad_hyperparameters(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"PReLU: input must have 3 channels.*\(2, 4\)"):
        A.PReLU(3)(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"dim 2 is out of range.*\(2, 4\)"):
        A.Softmax(2)(np.ones((2, 4)))
    with pytest.raises(TypeError, match="Sigmoid: input must be numeric"):
        A.Sigmoid()(np.array(["a"]))
    with pytest.raises(TypeError, match="ReLU: input"):
        A.ReLU()(None)


# --- erf ------------------------------------------------------------------------------------
def test_erf_accuracy_against_math_erf():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.linspace(-7.0, 7.0, 20001),
            np.geomspace(1e-300, 1e-3, 300),
            rng.standard_normal(5000) * 3.0,
            np.arange(49) / 8 + 1 / 16,  # halfway between expansion centres
        ]
    )
    reference = np.array([math.erf(v) for v in x])
    got = F.erf(x)
    relative = np.abs(got - reference) / np.maximum(np.abs(reference), 1e-308)
    assert relative.max() < 1e-15


def test_erf_special_values_and_dtypes():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6.05, 30.0, -1e-320])
    y = F.erf(x)
    assert y[0] == 0.0 and not np.signbit(y[0]) and np.signbit(y[1])
    np.testing.assert_array_equal(y[[2, 3, 5, 6]], [1.0, -1.0, 1.0, 1.0])
    assert np.isnan(y[4])
    assert y[7] == math.erf(-1e-320)
    x32 = np.linspace(-4, 4, 101, dtype=np.float32)
    y32 = F.erf(x32)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, np.array([math.erf(v) for v in x32], np.float32))

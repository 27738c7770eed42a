"""Losses: torch's values and input gradients (golden fixture), finite-difference checks,
float32 against float64, numerical stability and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from conftest import load_golden
from ferroptim.nn import loss as L
from ferroptim.nn.gradcheck import gradcheck_loss

DATA = load_golden("golden_nn_functions.npz")
LOSS_CASES = json.loads(str(DATA["meta"]))["losses"]
REDUCTIONS = ("mean", "sum", "none")


def golden_loss(case: str):
    config = json.loads(str(DATA[f"loss/{case}/config"]))
    kwargs = dict(config["kwargs"])
    for key in ("weight", "pos_weight"):
        if f"loss/{case}/{key}" in DATA:
            kwargs[key] = DATA[f"loss/{case}/{key}"]
    return getattr(L, config["class"])(**kwargs), kwargs.get("reduction", "mean")


@pytest.mark.parametrize("case", LOSS_CASES)
def test_matches_torch(case):
    loss_fn, reduction = golden_loss(case)
    x, target = DATA[f"loss/{case}/input"], DATA[f"loss/{case}/target"]
    expected = DATA[f"loss/{case}/output"]
    value = loss_fn(x, target)
    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        assert value.shape == expected.shape
        grad = loss_fn.backward(DATA[f"loss/{case}/upstream"])
    else:
        assert isinstance(value, float)
        grad = loss_fn.backward()
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    np.testing.assert_allclose(grad, DATA[f"loss/{case}/grad"], rtol=1e-9, atol=1e-12)


# --- finite differences on random data ---------------------------------------------------------
def class_targets(rng, shape, classes, ignore_index=-100, ignored=2):
    target = rng.integers(0, classes, shape)
    target.reshape(-1)[:ignored] = ignore_index
    return target


CE_OPTIONS = [
    {},
    dict(weight=[0.3, 1.0, 2.0, 0.7]),
    dict(label_smoothing=0.15),
    dict(weight=[0.3, 1.0, 2.0, 0.7], label_smoothing=0.4, ignore_index=1),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", CE_OPTIONS, ids=["plain", "weight", "smooth", "all"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 2), (4,)], ids=["2d", "4d", "unbatched"])
def test_cross_entropy_gradcheck(shape, options, reduction):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape) * 2
    target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    ignored = 0 if len(shape) == 1 else 2
    target = class_targets(rng, target_shape, 4, options.get("ignore_index", -100), ignored)
    loss_fn = L.CrossEntropyLoss(reduction=reduction, **options)
    report = gradcheck_loss(loss_fn, x, target)
    assert report.passed, str(report)


ELEMENTWISE = [
    ("mse", lambda r: L.MSELoss(r)),
    ("l1", lambda r: L.L1Loss(r)),
    ("huber", lambda r: L.HuberLoss(r)),
    ("huber-0.3", lambda r: L.HuberLoss(r, delta=0.3)),
    ("bce", lambda r: L.BCEWithLogitsLoss(reduction=r)),
    (
        "bce-weights",
        lambda r: L.BCEWithLogitsLoss([0.5, 2.0, 1.0], r, pos_weight=[2.0, 0.3, 1.0]),
    ),
]
ELEMENTWISE_IDS = [name for name, _ in ELEMENTWISE]
ELEMENTWISE_MAKERS = [make for _, make in ELEMENTWISE]


def regression_pair(rng, shape, bce):
    x = rng.standard_normal(shape) * 2
    target = rng.uniform(0, 1, shape) if bce else x + rng.standard_normal(shape)
    if not bce:  # keep |x - y| away from L1's kink and Huber's boundary
        diff = target - x
        target = x + np.where(np.abs(np.abs(diff) - 0.3) < 0.05, diff + 0.2, diff)
        target = np.where(np.abs(target - x) < 0.05, x + 0.5, target)
    return x, target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("make", ELEMENTWISE_MAKERS, ids=ELEMENTWISE_IDS)
def test_elementwise_gradcheck(make, reduction):
    rng = np.random.default_rng(3)
    x, target = regression_pair(rng, (5, 3), bce=False)
    if isinstance(make(reduction), L.BCEWithLogitsLoss):
        x, target = regression_pair(rng, (5, 3), bce=True)
    report = gradcheck_loss(make(reduction), x, target)
    assert report.passed, str(report)


def all_losses(reduction):
    yield "ce", L.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1, weight=[1, 2, 3])
    for name, make in ELEMENTWISE:
        yield name, make(reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32_close_to_float64(reduction):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((8, 3)) * 2).astype(np.float32)
    for name, loss_fn in all_losses(reduction):
        if name == "ce":
            target = class_targets(rng, (8,), 3)
        else:
            target = regression_pair(rng, x.shape, bce=name.startswith("bce"))[1]
        v32 = loss_fn(x, target)
        g32 = loss_fn.backward()
        v64 = loss_fn(x.astype(np.float64), target)
        g64 = loss_fn.backward()
        assert g32.dtype == np.float32 and g64.dtype == np.float64, name
        if reduction == "none":
            assert v32.dtype == np.float32, name
        np.testing.assert_allclose(v32, v64, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_finite_without_warnings(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1000.0, 1000.0, 50.0], [88.0, -88.0, -1e4]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ce = L.CrossEntropyLoss(label_smoothing=0.1)
        value = ce(x, np.array([1, 1, 2]))
        grad = ce.backward()
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        bce = L.BCEWithLogitsLoss(pos_weight=[2.0, 1.0, 0.5])
        value = bce(x, (x > 0).astype(dtype))
        grad = bce.backward()
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    confident = L.BCEWithLogitsLoss(reduction="none")
    values = confident(np.array([1e4, -1e4, 1e4], dtype), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(values, [0.0, 0.0, 1e4])  # right, right, wrong
    np.testing.assert_array_equal(confident.backward(), [0.0, 0.0, 1.0])


def test_cross_entropy_confident_wrong_prediction():
    x = np.array([[1000.0, -1000.0]])
    ce = L.CrossEntropyLoss()
    assert ce(x, np.array([1])) == 2000.0
    np.testing.assert_array_equal(ce.backward(), [[1.0, -1.0]])


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient():
    ce = L.CrossEntropyLoss(ignore_index=0)
    assert np.isnan(ce(np.ones((3, 2)), np.zeros(3, np.int64)))
    np.testing.assert_array_equal(ce.backward(), np.zeros((3, 2)))


def test_upstream_gradient_scales():
    rng = np.random.default_rng(5)
    x, target = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    ce = L.CrossEntropyLoss()
    ce(x, target)
    base = ce.backward()
    ce(x, target)
    np.testing.assert_allclose(ce.backward(2.5), 2.5 * base, rtol=1e-15)
    none = L.CrossEntropyLoss(reduction="none")
    none(x, target)
    np.testing.assert_allclose(none.backward(), 4 * base, rtol=1e-14)  # default: ones
    mse = L.MSELoss(reduction="none")
    mse(np.zeros((4, 3)), np.ones((4, 3)))
    np.testing.assert_array_equal(mse.backward(np.full((4, 3), 3.0)), np.full((4, 3), -6.0))


def test_l1_subgradient_at_zero():
    l1 = L.L1Loss(reduction="sum")
    l1(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 4.0]))
    np.testing.assert_array_equal(l1.backward(), [0.0, 1.0, -1.0])


def test_inputs_not_modified():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3))
    target = rng.integers(0, 3, 4)
    saved = x.copy(), target.copy()
    for reduction in REDUCTIONS:
        for name, loss_fn in all_losses(reduction):
            t = target if name == "ce" else np.abs(x) / 4
            loss_fn(x, t)
            loss_fn.backward()
    np.testing.assert_array_equal(x, saved[0])
    np.testing.assert_array_equal(target, saved[1])


# --- bad input ---------------------------------------------------------------------------------
def test_cross_entropy_target_errors():
    ce = L.CrossEntropyLoss()
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="target value 7 is out of range for 4 classes"):
        ce(x, np.array([0, 7, 1]))
    with pytest.raises(ValueError, match="target value -1 is out of range"):
        ce(x, np.array([0, -1, -100]))
    with pytest.raises(TypeError, match="integer class indices, got dtype float64"):
        ce(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="integer class indices, got dtype bool"):
        ce(x, np.array([True, False, True]))
    with pytest.raises(
        ValueError, match=r"target shape \(4,\) does not match input shape \(3, 4\)"
    ):
        ce(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"target shape \(3,\).*\(3, 4, 2\)"):
        ce(np.zeros((3, 4, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="class axis"):
        ce(np.array(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"weight has shape \(3,\) but the input has 4 classes"):
        L.CrossEntropyLoss(weight=[1.0, 2.0, 3.0])(x, np.array([0, 1, 2]))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: L.CrossEntropyLoss(reduction="avg"), ValueError, "reduction"),
        (lambda: L.CrossEntropyLoss(reduction=None), TypeError, "reduction"),
        (lambda: L.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
        (lambda: L.CrossEntropyLoss(label_smoothing="0.1"), TypeError, "label_smoothing"),
        (lambda: L.CrossEntropyLoss(ignore_index=1.0), TypeError, "ignore_index"),
        (lambda: L.CrossEntropyLoss(weight=[[1.0, 2.0]]), ValueError, "weight must be 1-D"),
        (lambda: L.CrossEntropyLoss(weight=[1.0, np.nan]), ValueError, "weight must be finite"),
        (lambda: L.CrossEntropyLoss(weight=["a"]), TypeError, "weight"),
        (lambda: L.HuberLoss(delta=0.0), ValueError, "delta"),
        (lambda: L.HuberLoss(delta="1"), TypeError, "delta"),
        (lambda: L.BCEWithLogitsLoss(pos_weight="a"), TypeError, "pos_weight"),
    ],
)
def test_bad_options(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_shape_and_dtype_errors(reduction):
    for name, loss_fn in all_losses(reduction):
        if name == "ce":
            continue
        with pytest.raises(ValueError, match=r"target shape \(3, 2\) does not match input shape"):
            loss_fn(np.zeros((2, 3)), np.zeros((3, 2)))
        with pytest.raises(TypeError, match="input must be float32 or float64, got dtype int64"):
            loss_fn(np.zeros((2, 3), np.int64), np.zeros((2, 3)))
        with pytest.raises(TypeError, match="target must be numeric"):
            loss_fn(np.zeros((2, 3)), np.full((2, 3), "a"))
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) does not broadcast.*\(3, 2\)"):
        L.BCEWithLogitsLoss(weight=[1.0, 2.0, 3.0])(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="float32 or float64, got dtype float16"):
        L.CrossEntropyLoss()(np.zeros((2, 3), np.float16), np.zeros(2, np.int64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_before_forward_twice_and_after_failed_call(reduction):
    x = np.zeros((2, 3))
    for name, loss_fn in all_losses(reduction):
        target = np.array([0, 1]) if name == "ce" else np.zeros((2, 3))
        with pytest.raises(RuntimeError, match="backward called before forward"):
            loss_fn.backward()
        with pytest.raises((ValueError, TypeError)):
            loss_fn(x, np.zeros((5, 5), np.int64))
        with pytest.raises(RuntimeError, match="before forward"):
            loss_fn.backward()  # a failed call caches nothing
        loss_fn(x, target)
        loss_fn.backward()
        with pytest.raises(RuntimeError, match="before forward"):
            loss_fn.backward()


def test_grad_output_errors():
    mean = L.MSELoss()
    mean(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"grad_output must be a scalar.*shape \(3,\)"):
        mean.backward(np.ones(3))
    none = L.CrossEntropyLoss(reduction="none")
    none(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"grad_output has shape \(3,\), expected.*\(2,\)"):
        none.backward(np.ones(3))
    none.backward(np.ones(2))  # the failed call left the cache intact

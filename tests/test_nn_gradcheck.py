"""The finite-difference gradient checker: catches wrong backward passes, passes correct ones,
leaves the module as it found it, and rejects bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim.nn.gradcheck import GradcheckError, GradcheckReport, gradcheck, gradcheck_loss
from ferroptim.nn.module import Module


class Affine(Module):
    """y = tanh(x @ W.T + b) with an optional deliberate bug in one gradient."""

    def __init__(self, n_in=4, n_out=3, bug=None, dtype=np.float64, seed=0):
        super().__init__(dtype)
        rng = np.random.default_rng(seed)
        self.register_parameter("weight", rng.standard_normal((n_out, n_in)))
        self.register_parameter("bias", rng.standard_normal(n_out))
        self.bug = bug
        self.cache = None

    def forward(self, x):
        x = np.asarray(x, self.dtype)
        y = np.tanh(x @ self.weight.T + self.bias)
        self.cache = (x, y)
        return y

    def backward(self, dy):
        x, y = self.cache
        dz = dy * (1.0 - y**2)
        if self.bug == "weight":
            self.grad("weight")[...] += dz.T @ x * 1.001  # off by 0.1 %
        else:
            self.grad("weight")[...] += dz.T @ x
        if self.bug == "bias":
            self.grad("bias")[...] += dz[:-1].sum(axis=0)  # forgets the last sample
        else:
            self.grad("bias")[...] += dz.sum(axis=0)
        dx = dz @ self.weight
        if self.bug == "input":
            dx = dx.copy()
            dx[0, 0] = -dx[0, 0]
        return dx


class RunningMean(Module):
    """Scales by a parameter and updates a buffer on every forward (like batch norm)."""

    def __init__(self):
        super().__init__(np.float64)
        self.register_parameter("scale", np.array([1.5, -0.5]))
        self.register_buffer("running", np.zeros(2))
        self.cache = None

    def forward(self, x):
        self.running[...] = 0.9 * self.running + 0.1 * x.mean(axis=0)
        self.cache = x
        return x * self.scale

    def backward(self, dy):
        self.grad("scale")[...] += (dy * self.cache).sum(axis=0)
        return dy * self.scale


class MaskedScale(Module):
    """Inverted dropout driven by ``self.rng``; optionally a global generator instead."""

    def __init__(self, use_own_rng=True):
        super().__init__(np.float64)
        self.rng = np.random.default_rng(5)
        self.use_own_rng = use_own_rng
        self.global_rng = np.random.default_rng(9)
        self.mask = None

    def forward(self, x):
        source = self.rng if self.use_own_rng else self.global_rng
        self.mask = (source.random(x.shape) >= 0.5) / 0.5
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class Embed(Module):
    """Looks up rows of a table by integer index."""

    def __init__(self):
        super().__init__(np.float64)
        self.register_parameter("weight", np.random.default_rng(1).standard_normal((5, 3)))
        self.index = None

    def forward(self, index):
        self.index = index
        return self.weight[index]

    def backward(self, dy):
        np.add.at(self.grad("weight"), self.index, dy)
        return None


class SquaredError:
    """0.5 * sum((x - t)^2) / n, or elementwise with reduction="none"."""

    def __init__(self, bug=False, reduction="mean"):
        self.bug = bug
        self.reduction = reduction
        self.cache = None

    def __call__(self, x, target):
        diff = x - target
        self.cache = diff
        if self.reduction == "none":
            return 0.5 * diff**2
        return float(0.5 * np.sum(diff**2) / diff.size)

    def backward(self, dy=None):
        diff = self.cache
        if self.reduction == "none":
            return dy * diff
        grad = diff / diff.size
        return grad * (1.01 if self.bug else 1.0)


def x_batch(seed=0, shape=(5, 4)):
    return np.random.default_rng(seed).standard_normal(shape)


def test_correct_module_passes_with_small_errors():
    report = gradcheck(Affine(), x_batch())
    assert isinstance(report, GradcheckReport)
    assert report.passed and bool(report)
    assert [t.name for t in report.tensors] == ["input", "weight", "bias"]
    for tensor in report.tensors:
        assert tensor.checked == tensor.analytic.size
        assert tensor.max_abs_error < 1e-8
        assert tensor.max_rel_error < 1e-6
    assert "passed" in str(report)


@pytest.mark.parametrize("bug", ["weight", "bias", "input"])
def test_wrong_backward_is_caught_and_named(bug):
    report = gradcheck(Affine(bug=bug), x_batch())
    assert not report.passed
    failed = [t.name for t in report.failures]
    assert failed == [{"weight": "weight", "bias": "bias", "input": "input"}[bug]]
    assert report[failed[0]].max_abs_error > 1e-5
    if bug == "input":
        assert report["input"].worst_index == (0, 0)
    assert "FAILED" in str(report)
    with pytest.raises(GradcheckError) as info:
        gradcheck(Affine(bug=bug), x_batch(), raise_on_failure=True)
    assert info.value.report.failures[0].name == failed[0]
    assert isinstance(info.value, AssertionError)


def test_parameters_input_and_buffers_restored_gradients_hold_analytic():
    module = RunningMean()
    module.running[...] = [0.25, -1.0]
    x = x_batch(shape=(6, 2))
    x_before = x.copy()
    params_before = module.scale.copy()
    report = gradcheck(module, x)
    assert report.passed
    np.testing.assert_array_equal(x, x_before)
    assert module.scale.tobytes() == params_before.tobytes()
    np.testing.assert_array_equal(module.running, [0.25, -1.0])
    # gradients were zeroed before the analytic pass and hold its result
    np.testing.assert_array_equal(module.grad("scale"), report["scale"].analytic)


def test_gradients_zeroed_before_analytic_pass():
    module = Affine()
    module.grad("weight")[...] = 100.0
    assert gradcheck(module, x_batch()).passed


def test_mode_is_left_as_set():
    module = Affine().eval()
    gradcheck(module, x_batch())
    assert module.training is False
    module.train()
    gradcheck(module, x_batch())
    assert module.training is True


def test_explicit_dy_and_shape_mismatch():
    dy = np.ones((5, 3))
    assert gradcheck(Affine(), x_batch(), dy).passed
    with pytest.raises(ValueError, match=r"dy has shape \(3, 5\).*\(5, 3\)"):
        gradcheck(Affine(), x_batch(), dy.T)


def test_frozen_parameters_are_skipped():
    module = Affine(bug="weight").freeze("weight")
    report = gradcheck(module, x_batch())
    assert [t.name for t in report.tensors] == ["input", "bias"]
    assert report.passed


def test_dropout_like_module_uses_rewound_generator():
    module = MaskedScale()
    state = module.rng.bit_generator.state
    assert gradcheck(module, x_batch()).passed
    assert module.rng.bit_generator.state == state


def test_nondeterministic_forward_raises():
    with pytest.raises(RuntimeError, match="deterministic"):
        gradcheck(MaskedScale(use_own_rng=False), x_batch())


def test_integer_input_checks_parameters_only():
    report = gradcheck(Embed(), np.array([[0, 3], [3, 4]]))
    assert [t.name for t in report.tensors] == ["weight"]
    assert report.passed


def test_max_checks_samples_elements():
    report = gradcheck(Affine(n_in=6, n_out=5), x_batch(shape=(7, 6)), max_checks=4)
    for tensor in report.tensors:
        assert tensor.checked == min(4, tensor.analytic.size)
        assert np.count_nonzero(~np.isnan(tensor.numeric)) == tensor.checked
    assert report.passed


def test_float32_module_refused():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Affine(dtype=np.float32), x_batch())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps=-1e-6), ValueError, "eps"),
        (dict(atol=float("nan")), ValueError, "atol"),
        (dict(rtol="1"), TypeError, "rtol"),
        (dict(max_checks=0), ValueError, "max_checks"),
        (dict(max_checks=2.5), TypeError, "max_checks"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradcheck(Affine(), x_batch(), **kwargs)


def test_bad_module_and_input():
    with pytest.raises(TypeError, match="module"):
        gradcheck(lambda x: x, x_batch())
    with pytest.raises(TypeError, match="x must be numeric"):
        gradcheck(Affine(), np.array(["a"]))


def test_loss_checker_passes_and_catches():
    x, target = x_batch(1), x_batch(2)
    report = gradcheck_loss(SquaredError(), x, target)
    assert report.passed
    assert report["input"].max_abs_error < 1e-9
    bad = gradcheck_loss(SquaredError(bug=True), x, target)
    assert not bad.passed
    with pytest.raises(GradcheckError):
        gradcheck_loss(SquaredError(bug=True), x, target, raise_on_failure=True)


def test_loss_checker_elementwise_uses_upstream():
    x, target = x_batch(1), x_batch(2)
    assert gradcheck_loss(SquaredError(reduction="none"), x, target).passed
    with pytest.raises(ValueError, match="dy has shape"):
        gradcheck_loss(SquaredError(reduction="none"), x, target, np.ones(3))


def test_loss_checker_rejects_non_loss():
    with pytest.raises(TypeError, match="backward"):
        gradcheck_loss(np.sum, x_batch(), x_batch())

"""All-or-nothing calls: a failed Sequential/Residual forward or backward, set_rng_state or
load_state_dict leaves every parameter, gradient, buffer and generator state as it was; shared
module instances are refused; state_dict key errors name the shape."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import container
from ferroptim.nn.container import Sequential
from ferroptim.nn.dropout import Dropout
from ferroptim.nn.linear import Linear
from ferroptim.nn.module import Module
from ferroptim.nn.normalization import BatchNorm1d
from ferroptim.nn.residual import Residual


def state_of(model: Module) -> dict:
    """Copies of everything a failed call must not change."""
    return {
        "params": [p.copy() for p in model.parameters()],
        "grads": [g.copy() for _, g in model.named_gradients() if g is not None],
        "buffers": [b.copy() for _, b in model.named_buffers()],
        "rng": model.rng_state(),
    }


def assert_same_state(before: dict, model: Module) -> None:
    after = state_of(model)
    for key in ("params", "grads", "buffers"):
        assert len(before[key]) == len(after[key])
        for old, new in zip(before[key], after[key], strict=True):
            assert old.tobytes() == new.tobytes(), key
    assert before["rng"] == after["rng"]


def batch(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class WrongGradient(Module):
    """Identity forward; once ``broken``, backward returns a gradient of the wrong width."""

    def __init__(self) -> None:
        super().__init__(None)
        self.broken = False

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy[:, :-1] if self.broken else dy


class Gate(Module):
    """Identity, except that an ``armed`` gate refuses every forward (after the layers before
    it in a Sequential have run)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.armed = False

    def forward(self, x):
        if self.armed:
            raise ValueError("gate closed")
        return x

    def backward(self, dy):
        return dy


class Pair(Module):
    """Holds one child under two names (a module that shares an instance)."""

    def __init__(self, child: Module) -> None:
        super().__init__(None)
        self.first = child
        self.second = child


# --- forward -----------------------------------------------------------------------------
def test_failed_forward_restores_running_stats_and_dropout_generator():
    model = Sequential(BatchNorm1d(4), Dropout(0.5, seed=3), Linear(3, 2))
    before = state_of(model)
    with pytest.raises(ValueError, match="Linear"):
        model(batch((8, 4)))
    assert_same_state(before, model)
    assert int(model[0].num_batches_tracked) == 0


def test_failed_forward_leaves_no_backward_but_a_fresh_forward_works():
    """After a failed forward some layers hold this call's caches and others the previous
    call's: a backward from that mix would be silently wrong, so it is refused; a new forward
    then trains exactly as a model that never saw the failure (state was restored)."""

    def build():
        return Sequential(
            Linear(4, 3, rng=0), BatchNorm1d(3), Dropout(0.5, seed=1), Linear(3, 2, rng=1), Gate()
        )

    model, twin = build(), build()
    x, dy = batch((8, 4)), batch((8, 2), seed=1)
    model(x)
    model[4].armed = True
    with pytest.raises(ValueError, match="gate"):
        model(batch((8, 4), seed=9))  # every layer ran (caches, statistics, masks) before this
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(dy)
    model[4].armed = False
    twin(x)
    y, twin_y = model(x), twin(x)
    dx, twin_dx = model.backward(dy), twin.backward(dy)
    np.testing.assert_array_equal(y, twin_y)
    np.testing.assert_array_equal(dx, twin_dx)
    for g, h in zip(model.gradients(), twin.gradients(), strict=True):
        np.testing.assert_array_equal(g, h)
    assert_same_state(state_of(twin), model)


def test_failure_after_the_chain_ran_is_undone_in_nested_sequentials():
    inner = Sequential(BatchNorm1d(4), Dropout(0.3, seed=0))
    model = Sequential(Linear(4, 4), inner, Linear(3, 2))
    before = state_of(model)
    with pytest.raises(ValueError):
        model(batch((6, 4)))
    assert_same_state(before, model)


def test_nested_sequentials_snapshot_once(monkeypatch):
    made = []
    original = container._Snapshot

    def counting(*args, **kwargs):
        made.append(kwargs["backward"])
        return original(*args, **kwargs)

    monkeypatch.setattr(container, "_Snapshot", counting)
    model = Sequential(Sequential(Linear(4, 4), Sequential(Linear(4, 4))), Linear(4, 2))
    model.backward(np.ones_like(model(batch((3, 4)))))
    assert made == [False, True]


def test_keyboard_interrupt_inside_forward_is_undone_too():
    class Interrupt(Module):
        def forward(self, x):
            raise KeyboardInterrupt

    model = Sequential(BatchNorm1d(4), Dropout(0.5, seed=0), Interrupt())
    before = state_of(model)
    with pytest.raises(KeyboardInterrupt):
        model(batch((5, 4)))
    assert_same_state(before, model)
    assert getattr(container._DEPTH, "value", 0) == 0


def test_failed_residual_forward_restores_the_block():
    block = Sequential(BatchNorm1d(4), Dropout(0.5, seed=2), Linear(4, 3))
    model = Residual(block)
    before = state_of(model)
    with pytest.raises(ValueError, match="same shape"):
        model(batch((8, 4)))
    assert_same_state(before, model)


# --- backward ----------------------------------------------------------------------------
def test_backward_checks_dy_before_any_layer_runs():
    model = Sequential(Linear(4, 3), fo.nn.ReLU(), Linear(3, 2))
    y = model(batch((5, 4)))
    before = state_of(model)
    with pytest.raises(ValueError, match="Sequential: dy must have the output shape"):
        model.backward(np.ones((5, 3), np.float32))
    with pytest.raises(TypeError, match="Sequential: dy must be numeric"):
        model.backward(np.ones(y.shape, np.complex128))
    with pytest.raises(TypeError, match="Sequential: dy"):
        model.backward(None)
    assert_same_state(before, model)
    model.backward(np.ones_like(y))  # the forward cache survived the refusals


def test_failed_backward_restores_gradients_of_later_layers():
    model = Sequential(Linear(4, 3), WrongGradient(), BatchNorm1d(3), Linear(3, 2))
    x, dy = batch((6, 4)), batch((6, 2), seed=4)
    model(x)
    model.backward(dy)  # a first step's gradients are already there
    model(x)
    model[1].broken = True
    before = state_of(model)
    with pytest.raises(ValueError, match="Linear"):
        model.backward(dy)
    assert_same_state(before, model)
    assert any(np.any(g != 0) for g in before["grads"])


def test_backward_twice_after_one_forward_is_refused():
    model = Sequential(Linear(2, 2))
    y = model(batch((3, 2)))
    model.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="Sequential"):
        model.backward(np.ones_like(y))


def test_empty_sequential_is_the_identity():
    model = Sequential()
    x = batch((2, 3))
    np.testing.assert_array_equal(model(x), x)
    np.testing.assert_array_equal(model.backward(x), x)


# --- shared instances --------------------------------------------------------------------
def test_same_instance_twice_is_refused_at_construction_and_append():
    linear, relu = Linear(3, 3), fo.nn.ReLU()
    with pytest.raises(ValueError, match="already in this Sequential"):
        Sequential(linear, relu, linear)
    with pytest.raises(ValueError, match="already in this Sequential"):
        Sequential(relu, Sequential(Linear(3, 3), relu))
    model = Sequential(linear, relu)
    with pytest.raises(ValueError, match="already in this Sequential"):
        model.append(relu)
    with pytest.raises(ValueError, match="already in this Sequential"):
        model.append(model)
    with pytest.raises(ValueError, match="twice"):
        model.append(Residual(Pair(fo.nn.Tanh())))
    assert len(model) == 2
    model[0:1]  # a slice is a new Sequential over the same instances: allowed
    model.append(fo.nn.ReLU())
    setattr(model, "0", Linear(3, 3))  # replacing a child by a fresh one is fine


def test_sharing_added_behind_the_outer_back_is_refused_at_forward():
    linear = Linear(3, 3)
    inner = Sequential()
    model = Sequential(linear, inner)
    inner.append(linear)  # inner cannot see its parent
    before = state_of(model)
    with pytest.raises(ValueError, match="appears twice"):
        model(batch((2, 3)))
    assert_same_state(before, model)


# --- set_rng_state -----------------------------------------------------------------------
def test_set_rng_state_validates_every_value_before_applying():
    model = Sequential(Dropout(0.5, seed=0), Dropout(0.5, seed=1))
    before = model.rng_state()
    good = Sequential(Dropout(0.5, seed=7), Dropout(0.5, seed=8)).rng_state()
    bad_values = [
        ("garbage", TypeError),
        ({"bit_generator": "MT19937", "state": {}}, ValueError),
        ({"bit_generator": "PCG64"}, ValueError),
        ({**good["1"], "state": {"state": -1, "inc": 1}}, ValueError),
        ({**good["1"], "state": {"state": "x", "inc": 1}}, TypeError),
    ]
    for bad, error in bad_values:
        with pytest.raises(error, match="'1'"):
            model.set_rng_state({"0": good["0"], "1": bad})
        assert model.rng_state() == before
    with pytest.raises(TypeError, match="mapping"):
        model.set_rng_state([("0", good["0"])])
    model.set_rng_state(good)
    assert model.rng_state() == good


# --- load_state_dict ---------------------------------------------------------------------
def test_missing_and_unexpected_keys_name_the_shape():
    model = Sequential(Linear(4, 3), BatchNorm1d(3))
    state = model.state_dict()
    del state["0.weight"]
    with pytest.raises(KeyError, match=r"'0\.weight'.*expected shape \(3, 4\)"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["2.weight"] = np.zeros((5, 2))
    with pytest.raises(KeyError, match=r"'2\.weight'.*given shape \(5, 2\)"):
        model.load_state_dict(state)
    state["2.weight"] = [[1, 2], [3]]  # ragged: no shape, still a KeyError naming the key
    with pytest.raises(KeyError, match=r"'2\.weight'.*no shape"):
        model.load_state_dict(state)

"""The prepared kernel call (``ferroptim._native.prepare_step``, kept by each group's call plan):
after the first step it re-checks the group's arrays by comparing what the checks read last
time, so every way of changing an array behind the optimizer's back between two steps must
still be refused, with the argument named and nothing modified, and a step after the array is
restored must give the same bits as an optimizer that never saw the change. Every optimizer of
the registry, with its state lists."""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native, _registry

SHAPES = ((5,), (6,), (2, 4))
#: options that give each optimizer every state list it can have
OPTIONS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.9},
    "RMSprop": {"momentum": 0.9, "centered": True},
    "Adam": {"amsgrad": True},
    "AdamW": {"amsgrad": True},
}
NAMES = [spec.name for spec in _registry.OPTIMIZERS]


def arrays(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def build(name: str, params: list[np.ndarray]) -> fo.optim.Optimizer:
    return getattr(fo.optim, name)(params, lr=0.01, **OPTIONS.get(name, {}))


def state_arrays(opt: fo.optim.Optimizer) -> list[np.ndarray]:
    return [a for s in opt._group_states for lst in s.arrays.values() for a in lst]


def everything(opt: fo.optim.Optimizer) -> list[np.ndarray]:
    """Copies of every array a step writes: parameters, state, step counts."""
    out = [p.copy() for g in opt.param_groups for p in g["params"]]
    out += [a.copy() for a in state_arrays(opt)]
    return out + [s.steps.copy() for s in opt._group_states]


def assert_same(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def _read_only(arr: np.ndarray) -> Callable[[], None]:
    arr.flags.writeable = False

    def undo() -> None:
        arr.flags.writeable = True

    return undo


def _retyped(arr: np.ndarray) -> Callable[[], None]:
    arr.dtype = np.int32

    def undo() -> None:
        arr.dtype = np.float32

    return undo


def _strided(arr: np.ndarray) -> Callable[[], None]:
    """The same memory, seen as a transposed 2-d array (no longer C-contiguous)."""
    shape = arr.shape
    arr.shape = (2, 3)
    with warnings.catch_warnings():  # NumPy 2.4 deprecates setting strides; still possible
        warnings.simplefilter("ignore", DeprecationWarning)
        arr.strides = (4, 8)

    def undo() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            arr.strides = (12, 4)
        arr.shape = shape

    return undo


def _resized(arr: np.ndarray) -> Callable[[], None]:
    """Reallocated in place to another size (``ndarray.resize``), then back."""
    values = arr.copy()
    arr.resize((9,), refcheck=False)

    def undo() -> None:
        arr.resize(values.shape, refcheck=False)
        arr[...] = values

    return undo


#: (what is done to the array, exception, message) for a change behind the optimizer's back
CHANGES = {
    "read-only": (_read_only, ValueError, "read-only"),
    "dtype": (_retyped, TypeError, "dtype int32"),
    "not contiguous": (_strided, ValueError, "not C-contiguous"),
    "resized": (_resized, ValueError, "shape"),
}


def stepped(name: str) -> tuple[fo.optim.Optimizer, list[np.ndarray], fo.optim.Optimizer]:
    """An optimizer after two steps (its kernel call prepared and checked once), its params,
    and a twin that took the same steps."""
    params, twin_params = arrays(0), arrays(0)
    opt, twin = build(name, params), build(name, twin_params)
    for t in range(2):
        opt.step(arrays(10 + t))
        twin.step(arrays(10 + t))
    assert opt._group_states[0].plan.prepared is not None
    return opt, params, twin


def assert_refused_then_resumes(
    opt: fo.optim.Optimizer,
    twin: fo.optim.Optimizer,
    spoil: Callable[[], Callable[[], None]],
    error: type[Exception],
    match: str,
    grads: list[Any] | None = None,
) -> None:
    """``spoil()`` (returning its undo) makes the next step fail with ``error`` matching
    ``match``, changing nothing; after the undo, ``opt`` steps to ``twin``'s bits."""
    before = everything(opt)
    undo = spoil()
    with pytest.raises(error, match=match):
        opt.step(arrays(12) if grads is None else grads)
    undo()
    assert_same(everything(opt), before)
    opt.step(arrays(12))
    twin.step(arrays(12))
    assert_same(everything(opt), everything(twin))


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("name", NAMES)
def test_parameter_changed_behind_the_optimizer_is_refused(name: str, change: str) -> None:
    opt, params, twin = stepped(name)
    make, error, message = CHANGES[change]
    assert_refused_then_resumes(
        opt, twin, lambda: make(params[1]), error, rf"params\[1\].*{message}"
    )


def _handed_out_state(opt: fo.optim.Optimizer) -> np.ndarray:
    """A state array of params[1], as ``state_dict()`` hands it out."""
    key = next(iter(opt.state_dict()["state"][1].keys() - {"step", "mu_product"}))
    return opt.state_dict()["state"][1][key]


@pytest.mark.parametrize("change", ["read-only", "dtype"])
@pytest.mark.parametrize("name", [s.name for s in _registry.OPTIMIZERS if s.states])
def test_state_array_changed_behind_the_optimizer_is_refused(name: str, change: str) -> None:
    """State arrays are the optimizer's own, but ``state_dict()`` hands them out."""
    opt, _, twin = stepped(name)
    make, error, message = CHANGES[change]
    target = _handed_out_state(opt)
    assert_refused_then_resumes(opt, twin, lambda: make(target), error, rf"\[1\].*{message}")


@pytest.mark.parametrize("name", [s.name for s in _registry.OPTIMIZERS if s.states])
def test_state_arrays_cannot_be_resized_behind_the_optimizer(name: str) -> None:
    """The state arrays of one name are views of one allocation (``_flat_layout``), which NumPy
    refuses to reallocate in place; the optimizer steps on unchanged."""
    opt, _, twin = stepped(name)
    before = everything(opt)
    with pytest.raises(ValueError, match="does not own its data"):
        _resized(_handed_out_state(opt))
    assert_same(everything(opt), before)
    opt.step(arrays(12))
    twin.step(arrays(12))
    assert_same(everything(opt), everything(twin))


def _overlapping(params: list[np.ndarray]) -> list[Any]:
    grads = arrays(12)
    grads[1] = params[1]
    return grads


def _view_of_param(params: list[np.ndarray]) -> list[Any]:
    grads = arrays(12)
    grads[2] = params[2].reshape(-1)[:].reshape(2, 4)
    return grads


#: gradients the cheap route must not accept: (grads from params, exception, message)
BAD_GRADS = {
    "a parameter": (_overlapping, ValueError, r"shares memory"),
    "a view of a parameter": (_view_of_param, ValueError, r"shares memory"),
    "float64": (
        lambda p: [*arrays(12)[:2], arrays(12)[2].astype(np.float64)],
        TypeError,
        r"grads\[2\].*dtype",
    ),
    "big-endian": (
        lambda p: [*arrays(12)[:2], arrays(12)[2].astype(">f4")],
        TypeError,
        r"grads\[2\].*dtype",
    ),
    "shape": (lambda p: [*arrays(12)[:2], np.ones(8, np.float32)], ValueError, r"grads\[2\]"),
    "strided": (
        lambda p: [*arrays(12)[:2], np.ones((2, 8), np.float32)[:, ::2]],
        ValueError,
        r"grads\[2\].*C-contiguous",
    ),
    "not an array": (lambda p: [*arrays(12)[:2], [1.0] * 8], TypeError, r"grads\[2\]"),
    "too few": (lambda p: arrays(12)[:2], ValueError, r"grads"),
}


@pytest.mark.parametrize("bad", list(BAD_GRADS))
@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
def test_bad_gradients_after_prepared_steps_are_refused(name: str, bad: str) -> None:
    opt, params, twin = stepped(name)
    make, error, message = BAD_GRADS[bad]
    assert_refused_then_resumes(opt, twin, lambda: lambda: None, error, message, make(params))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_lists_of_any_make_give_the_same_bits(name: str) -> None:
    """New gradient arrays every step, a tuple, None entries, views of one buffer, float32
    arrays with an equal but distinct dtype object: all take a prepared call (cheap route or
    full check) and give the generic kernel call's bits."""
    opt, _, twin = stepped(name)
    buffer = np.concatenate([g.ravel() for g in arrays(20)])
    views, start = [], 0
    for s in SHAPES:
        n = int(np.prod(s))
        views.append(buffer[start : start + n].reshape(s))
        start += n
    other_dtype = [g.view(np.dtype("float32", metadata={"k": 1})) for g in arrays(21)]
    for grads in (
        arrays(13),
        tuple(arrays(14)),
        [None, *arrays(15)[1:]],
        arrays(16),
        views,
        other_dtype,
        [arrays(17)[0], None, None],
    ):
        opt.step(grads)
        twin.step([None if g is None else np.array(g, np.float32) for g in grads])
        assert_same(everything(opt), everything(twin))


def test_prepared_step_direct_call_checks_its_arguments() -> None:
    params = arrays(0)
    opt = fo.optim.Adam(params)
    opt.step(arrays(1))
    prepared = opt._group_states[0].plan.prepared
    group = opt.param_groups[0]
    with pytest.raises(ValueError, match="clip_value"):
        prepared.step(group, arrays(2), 1.0, -1.0, 0)
    # Another group, another parameter list, another value of a watched option: not this call.
    assert prepared.step({**group, "lr": 0.5}, arrays(2), 1.0, None, 0) is False
    assert prepared.step({**group, "params": params[:2]}, arrays(2)[:2], 1.0, None, 0) is False
    assert prepared.step(group, arrays(2)[:2], 1.0, None, 0) is False
    assert prepared.step([], arrays(2), 1.0, None, 0) is False
    with pytest.raises(ValueError, match="no optimizer kernel"):
        _native.prepare_step("nope", params, (), {}, ())


def test_one_optimizer_stepped_from_two_threads() -> None:
    """Steps of one optimizer from two threads at once (the lock orders them; a prepared call
    busy in one thread is never entered by the other) give the bits of the same steps in one
    thread: every step applies the same gradients, so the order does not matter."""
    grads = arrays(1)
    alone = fo.optim.Adam(arrays(0))
    for _ in range(60):
        alone.step(grads)
    shared = fo.optim.Adam(arrays(0))

    def run() -> None:
        for _ in range(30):
            shared.step(grads)

    workers = [threading.Thread(target=run) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert_same(everything(shared), everything(alone))


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_wrappers_grad_scale_reaches_the_prepared_call(name: str) -> None:
    """ZeRO clips by a global norm of every rank's shard and sets the inner optimizer's
    ``_grad_scale`` before its step: an unchanged group's one-call step must apply it (a scale
    of 0.5 is exact, so the twin stepping halved gradients gives the same bits)."""
    opt, _, twin = stepped(name)
    for t in range(3):
        opt._grad_scale = 0.5
        opt.step(arrays(20 + t))
        twin.step([g * np.float32(0.5) for g in arrays(20 + t)])
        assert_same(everything(opt), everything(twin))


def test_copies_get_their_own_prepared_call() -> None:
    params = arrays(0)
    opt = fo.optim.RMSprop(params, momentum=0.5)
    opt.step(arrays(1))
    clone = copy.deepcopy(opt)
    before = [p.copy() for p in params]
    clone.step(arrays(2))
    assert_same(params, before)

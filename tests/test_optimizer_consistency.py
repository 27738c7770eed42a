"""An optimizer step reads one consistent set of options, is all-or-nothing under Ctrl-C, checks
its groups the same way whatever their number, follows edits of a group's ``params`` list, and
can be copied and pickled (issue 11, items 3, 4, 13, 14 and the "also" items)."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import threading
import time
from decimal import Decimal

import numpy as np
import pytest

import ferroptim as fo
from conftest import assert_unchanged, optimizer_configs, snapshot
from ferroptim.optim.lr_scheduler import OneCycleLR, StepLR
from ferroptim.reference import _checks

OPTIMIZERS = optimizer_configs()
IDS = [cls.__name__ for cls, _ in OPTIMIZERS]


def _groups(n_groups: int, size: int = 5, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"params": [rng.standard_normal(size)]} for _ in range(n_groups)]


def _grads(opt) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(p.shape) for g in opt.param_groups for p in g["params"]]


# ----------------------------------------------------------------------------- item 3


def test_clipping_holds_while_another_thread_sets_max_grad_norm():
    """Every step of a multi-group SGD is clipped to max_grad_norm, while another thread keeps
    assigning the same max_grad_norm (the setter used to reset the step's clipping factor
    without the lock, so later groups of a running step took unclipped updates)."""
    n_groups, max_norm = 32, 1.0
    params = [np.zeros(64) for _ in range(n_groups)]
    opt = fo.optim.SGD([{"params": [p]} for p in params], lr=1.0, max_grad_norm=max_norm)
    grads = [np.full(64, 10.0) for _ in range(n_groups)]
    stop = threading.Event()

    def setter() -> None:
        while not stop.is_set():
            opt.max_grad_norm = max_norm

    thread = threading.Thread(target=setter)
    thread.start()
    too_long = 0
    try:
        for _ in range(2000):
            before = np.concatenate(params)
            opt.step(grads)
            moved = np.linalg.norm(np.concatenate(params) - before)
            too_long += bool(moved > max_norm * (1 + 1e-6))
    finally:
        stop.set()
        thread.join()
    assert too_long == 0, f"{too_long} of 2000 steps exceeded max_grad_norm"


# ----------------------------------------------------------------------------- item 4


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_never_half_applies_a_multi_group_step():
    """SIGINT fired at random moments while a 40-group Adam steps: after each KeyboardInterrupt
    every group has taken the same number of steps, and the parameters equal that many steps
    replayed on the reference backend."""
    n_groups = 40
    opt = fo.optim.Adam(_groups(n_groups, size=2000), lr=0.01)
    grads = _grads(opt)
    main = threading.main_thread().ident
    rng = np.random.default_rng(3)
    interrupts = 0
    for _ in range(60):
        delay = float(rng.uniform(0, 0.004))
        timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
        try:
            timer.start()
            for _ in range(1000):
                opt.step(grads)
            timer.join()
        except KeyboardInterrupt:
            interrupts += 1
            timer.join()
        steps = {entry["step"] for entry in opt.state_dict()["state"].values()}
        assert len(steps) <= 1, f"groups disagree on the step count: {sorted(steps)}"
    assert interrupts > 0
    replay = fo.optim.Adam(_groups(n_groups, size=2000), lr=0.01, backend="reference")
    (count,) = {entry["step"] for entry in opt.state_dict()["state"].values()}
    for _ in range(int(count)):
        replay.step(grads)
    for a, b in zip(opt.param_groups, replay.param_groups, strict=True):
        np.testing.assert_array_equal(a["params"][0], b["params"][0])


# ----------------------------------------------------------------------------- item 13

BAD_VALUES = [
    ("lr", True, TypeError),
    ("lr", Decimal("0.1"), TypeError),
    ("lr", np.array(0.1), TypeError),
    ("lr", float("nan"), ValueError),
    ("lr", "0.1", TypeError),
    ("lr", 10**400, ValueError),
    ("weight_decay", -1.0, ValueError),
]


@pytest.mark.parametrize("n_groups", [1, 2, 3])
@pytest.mark.parametrize(("key", "value", "error"), BAD_VALUES, ids=lambda v: repr(v)[:20])
def test_bad_values_written_into_param_groups_are_refused_whatever_the_group_count(
    n_groups, key, value, error
):
    opt = fo.optim.Adam(_groups(n_groups), lr=0.01)
    grads = _grads(opt)
    opt.step(grads)
    saved = snapshot(opt.param_groups, opt.state_dict())
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=key):
        opt.step(grads)
    assert_unchanged(saved)


@pytest.mark.parametrize("n_groups", [1, 2])
def test_adagrad_negative_initial_accumulator_in_a_group_is_refused(n_groups):
    opt = fo.optim.Adagrad(_groups(n_groups))
    opt.param_groups[0]["initial_accumulator_value"] = -1.0
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        opt.step(_grads(opt))


def test_a_step_uses_the_checked_value_not_the_raw_one():
    """np.float32 lr is accepted and normalized for the kernel (as in a two-group step)."""
    one = fo.optim.SGD(_groups(1), lr=0.1)
    two = fo.optim.SGD(_groups(1), lr=0.1)
    one.param_groups[0]["lr"] = np.float32(0.25)
    two.param_groups[0]["lr"] = float(np.float32(0.25))
    one.step(_grads(one))
    two.step(_grads(two))
    np.testing.assert_array_equal(
        one.param_groups[0]["params"][0], two.param_groups[0]["params"][0]
    )


# ----------------------------------------------------------------------------- item 14


@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS, ids=IDS)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_optimizer_is_independent_and_steps_identically(cls, kwargs, how):
    opt = cls(_groups(2), **kwargs)
    grads = _grads(opt)
    opt.step(grads)
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin._lock is not opt._lock
    for a, b in zip(opt.param_groups, twin.param_groups, strict=True):
        assert not np.shares_memory(a["params"][0], b["params"][0])
    for _ in range(2):
        opt.step(grads)
        twin.step(grads)
    for a, b in zip(opt.param_groups, twin.param_groups, strict=True):
        np.testing.assert_array_equal(a["params"][0], b["params"][0])
    twin.param_groups[0]["params"][0][...] = 7.0
    assert not np.any(opt.param_groups[0]["params"][0] == 7.0)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_scheduler_with_its_optimizer_can_be_copied(how):
    opt = fo.optim.SGD(_groups(2), lr=0.1)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    sched.step()
    twin = copy.deepcopy(sched) if how == "deepcopy" else pickle.loads(pickle.dumps(sched))
    for _ in range(3):
        sched.step()
        twin.step()
    assert twin.get_last_lr() == sched.get_last_lr()
    assert twin.optimizer is not opt
    assert twin.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


# ----------------------------------------------------------------------------- also items


def test_appending_to_a_groups_params_gives_the_new_parameter_fresh_state():
    """As in torch (state keyed by parameter): the appended parameter starts fresh, the others
    keep their state; state_dict() lists it."""
    opt = fo.optim.Adam(_groups(1, size=4), lr=0.1)
    grads = _grads(opt)
    opt.step(grads)
    extra = np.ones(3)
    opt.param_groups[0]["params"].append(extra)
    opt.step([*grads, np.ones(3)])
    fresh = np.ones(3)
    fo.optim.Adam([fresh], lr=0.1).step([np.ones(3)])
    np.testing.assert_array_equal(extra, fresh)
    state = opt.state_dict()["state"]
    assert [state[i]["step"] for i in range(2)] == [2.0, 1.0]
    opt.load_state_dict(opt.state_dict())


def test_appending_a_bad_parameter_is_a_clear_error():
    opt = fo.optim.Adam(_groups(1, size=4), lr=0.1)
    p = opt.param_groups[0]["params"][0]
    opt.param_groups[0]["params"].append(p)  # the same array twice
    with pytest.raises(ValueError, match="shares memory"):
        opt.step([np.ones(4), np.ones(4)])
    with pytest.raises(ValueError, match="shares memory"):
        opt.state_dict()


def test_add_param_group_checks_only_the_new_arrays(monkeypatch):
    """Adding n groups checks n arrays, not n*(n+1)/2 (which made 4,000 groups take 27 s)."""
    calls = []
    original = _checks.ArrayChecker.array

    def counting(self, obj, *args, **kwargs):
        calls.append(1)
        return original(self, obj, *args, **kwargs)

    monkeypatch.setattr(_checks.ArrayChecker, "array", counting)
    opt = fo.optim.SGD([np.zeros(2)], lr=0.1)
    calls.clear()
    for _ in range(300):
        opt.add_param_group({"params": [np.zeros(2)]})
    assert len(calls) == 300
    shared = opt.param_groups[150]["params"][0]
    with pytest.raises(ValueError, match=r"params\[301\] shares memory with params\[150\]"):
        opt.add_param_group({"params": [shared[1:]]})
    assert len(opt.param_groups) == 301


def test_refused_load_restores_param_groups_exactly():
    """Loading a OneCycleLR-era optimizer state then failing must not leave its extra keys."""
    model = fo.nn.Linear(3, 2)
    opt = fo.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = OneCycleLR(opt, max_lr=1.0, total_steps=10)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"onecycle-{os.getpid()}.npz")
    try:
        fo.save(path, model=model, optimizer=opt, scheduler=sched)
        model2 = fo.nn.Linear(3, 2)
        opt2 = fo.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
        sched2 = StepLR(opt2, step_size=3)
        before = [dict(g) for g in opt2.param_groups]
        with pytest.raises(ValueError):
            fo.load(path, model=model2, optimizer=opt2, scheduler=sched2)
        assert [set(g) for g in opt2.param_groups] == [set(g) for g in before]
        for got, want in zip(opt2.param_groups, before, strict=True):
            assert {k: v for k, v in got.items() if k != "params"} == {
                k: v for k, v in want.items() if k != "params"
            }
    finally:
        os.unlink(path)


def test_timer_thread_interrupts_do_not_leak_handlers():
    """The deferral restores the SIGINT handler it replaced."""
    before = signal.getsignal(signal.SIGINT)
    opt = fo.optim.SGD(_groups(3), lr=0.1)
    for _ in range(5):
        opt.step(_grads(opt))
    assert signal.getsignal(signal.SIGINT) is before
    time.sleep(0)

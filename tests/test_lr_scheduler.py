"""ferroptim.optim.lr_scheduler against torch's sequences, state_dict round trips, bad input.

``tests/data/golden_schedulers.npz`` is written by ``tools/make_golden_schedulers.py`` (run it with
/work/torchenv/bin/python); the case table, the named lambdas and the spec builder come from that
script, so the tests replay exactly the calls torch made.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferroptim.optim as optim
from conftest import load_tool
from ferroptim.optim import lr_scheduler as L

ROOT = Path(__file__).resolve().parent.parent
gen = load_tool("make_golden_schedulers")

GOLDEN = np.load(ROOT / "tests" / "data" / "golden_schedulers.npz", allow_pickle=False)
CASE_NAMES = json.loads(str(GOLDEN["meta"]))["cases"]
RTOL, ATOL = 1e-12, 1e-15
ALL_OPTIMIZERS = [
    getattr(optim, n)
    for n in optim.__all__
    if isinstance(getattr(optim, n), type) and n != "Optimizer"
]


def config(name: str) -> dict[str, Any]:
    return json.loads(str(GOLDEN[f"{name}/config"]))


def make_optimizer(cfg: dict[str, Any], cls: Any = None) -> Any:
    cls = cls or getattr(optim, cfg["optimizer"])
    groups = [{"params": [np.zeros(3, np.float64)], "lr": lr} for lr in cfg["lrs"]]
    return cls(groups, **cfg["optimizer_kwargs"])


def zero_step(opt: Any) -> Any:
    grads = [np.zeros_like(p) for g in opt.param_groups for p in g["params"]]
    return lambda: opt.step(grads)


def replay(cfg: dict[str, Any], opt: Any, step_opt: Any = None) -> dict[str, np.ndarray]:
    sched = gen.build(cfg["scheduler"], opt, L)
    return gen.run(cfg, opt, sched, step_opt or zero_step(opt))


def assert_matches(name: str, got: dict[str, np.ndarray], rows: slice = slice(None)) -> None:
    for key in ("lr", "momentum"):
        if f"{name}/{key}" in GOLDEN:
            np.testing.assert_allclose(
                got[key], GOLDEN[f"{name}/{key}"][rows], rtol=RTOL, atol=ATOL, err_msg=key
            )


# ----- torch's numbers --------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASE_NAMES)
def test_sequences_match_torch(name: str) -> None:
    cfg = config(name)
    assert_matches(name, replay(cfg, make_optimizer(cfg)))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_state_dict_keys_match_torch(name: str) -> None:
    cfg = config(name)
    opt = make_optimizer(cfg)
    sched = gen.build(cfg["scheduler"], opt, L)
    assert sorted(sched.state_dict()) == cfg["state_keys"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_resume_mid_schedule_from_json(name: str) -> None:
    """Save scheduler (through JSON) and optimizer at step 23, rebuild both, load, continue."""
    cfg = config(name)
    first = dict(cfg, steps=23)
    opt = make_optimizer(cfg)
    sched = gen.build(cfg["scheduler"], opt, L)
    gen.run(first, opt, sched, zero_step(opt))
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    saved_opt = copy.deepcopy(opt.state_dict())

    opt2 = make_optimizer(cfg)
    sched2 = gen.build(cfg["scheduler"], opt2, L)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert getattr(sched2, "last_epoch", None) == getattr(sched, "last_epoch", None)
    assert sched2.get_last_lr() == sched.get_last_lr()
    rest = dict(cfg, steps=cfg["steps"] - 23)
    for key in ("metrics", "epochs"):
        if cfg[key] is not None:
            rest[key] = cfg[key][23:]
    assert_matches(name, gen.run(rest, opt2, sched2, zero_step(opt2)), slice(23, None))


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_optimizer_class(cls: Any) -> None:
    for name in ("cosine", "onecycle_epochs_no_momentum", "sequential_three", "plateau_min_rel"):
        cfg = config(name)
        assert_matches(name, replay(cfg, make_optimizer(dict(cfg, optimizer_kwargs={}), cls)))
    opt = make_optimizer(dict(config("cosine"), optimizer_kwargs={}), cls)
    if "betas" in opt.defaults:
        name = "onecycle_adam_three_phase_linear"
    elif "momentum" in opt.defaults:
        name = "onecycle_sgd"
    else:
        with pytest.raises(ValueError, match="cycle_momentum"):
            L.OneCycleLR(opt, max_lr=0.1, total_steps=10)
        assert "initial_lr" not in opt.param_groups[0]
        return
    cfg = config(name)
    assert_matches(name, replay(cfg, make_optimizer(dict(cfg, optimizer_kwargs={}), cls)))


class PlainGroups:
    """Not an Optimizer: just a param_groups list of dicts."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.param_groups = groups


@pytest.mark.parametrize("name", ["cyclic_triangular_sgd", "sequential_three", "plateau_max_abs"])
def test_duck_typed_optimizer(name: str) -> None:
    cfg = config(name)
    opt = PlainGroups([{"lr": lr, "momentum": 0.0} for lr in cfg["lrs"]])
    assert_matches(name, replay(cfg, opt, step_opt=lambda: None))


def test_warmup_cosine_is_torchs_sequential() -> None:
    cfg = config("sequential_warmup_cosine")
    opt = make_optimizer(cfg)
    sched = L.warmup_cosine(opt, warmup_steps=8, total_steps=60, min_lr=1e-4)
    assert isinstance(sched, L.SequentialLR)
    assert_matches("sequential_warmup_cosine", gen.run(cfg, opt, sched, zero_step(opt)))


def test_warmup_cosine_without_warmup_is_the_cosine_formula() -> None:
    opt = optim.SGD([np.zeros(2)], lr=0.5)
    sched = L.warmup_cosine(opt, 0, 10, min_lr=0.01)
    for t in range(11):
        expected = 0.01 + (0.5 - 0.01) * (1 + math.cos(math.pi * t / 10)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)
        sched.step()


# ----- behaviour --------------------------------------------------------------------------------
def sgd(lrs: tuple[float, ...] = (0.1, 0.03), **kwargs: Any) -> optim.SGD:
    return optim.SGD([{"params": [np.zeros(2)], "lr": lr} for lr in lrs], **kwargs)


def test_initial_step_and_accessors() -> None:
    opt = sgd()
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    assert sched.last_epoch == 0 and sched.base_lrs == [0.1, 0.03]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.03]
    last = sched.get_last_lr()
    last[0] = 99.0
    assert sched.get_last_lr() == [0.1, 0.03]
    sched.step()
    sched.step()
    assert sched.last_epoch == 2
    assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups] == [0.05, 0.015]


def test_resume_with_last_epoch_needs_initial_lr() -> None:
    with pytest.raises(KeyError, match="initial_lr"):
        L.ExponentialLR(sgd(), gamma=0.9, last_epoch=3)


def test_onecycle_past_total_steps_raises_and_changes_nothing() -> None:
    opt = sgd(momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=1.0, total_steps=5)
    for _ in range(5):
        sched.step()
    before = (sched.state_dict(), copy.deepcopy([dict(g, params=None) for g in opt.param_groups]))
    with pytest.raises(ValueError, match="total steps is 5"):
        sched.step()
    assert (sched.state_dict(), [dict(g, params=None) for g in opt.param_groups]) == before


def test_chained_failure_rolls_back_every_child() -> None:
    opt = sgd(momentum=0.9)
    chain = L.ChainedScheduler(
        [L.ExponentialLR(opt, 0.9), L.OneCycleLR(opt, max_lr=1.0, total_steps=2)]
    )
    chain.step()
    chain.step()
    before = (
        chain.state_dict(),
        [g["lr"] for g in opt.param_groups],
        opt.param_groups[0]["momentum"],
    )
    with pytest.raises(ValueError, match="total steps"):
        chain.step()
    after = (
        chain.state_dict(),
        [g["lr"] for g in opt.param_groups],
        opt.param_groups[0]["momentum"],
    )
    assert after == before


class Warmup:
    """A callable object: LambdaLR saves and restores its attributes."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.steps)


def test_lambda_state_saves_callable_objects_only() -> None:
    sched = L.LambdaLR(sgd(), [Warmup(4), lambda e: 1.0])
    state = json.loads(json.dumps(sched.state_dict()))
    assert state["lr_lambdas"] == [{"steps": 4}, None]
    fn = Warmup(100)
    other = L.LambdaLR(sgd(), [fn, lambda e: 1.0])
    other.load_state_dict(state)
    assert fn.steps == 4


def test_plateau_reduces_after_patience_with_cooldown() -> None:
    opt = sgd((1.0,))
    sched = L.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=2, min_lr=0.2)
    lrs = []
    for metric in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert sched.last_epoch == 10 and "initial_lr" not in opt.param_groups[0]
    sched.step(np.float32(0.1))
    assert sched.best == pytest.approx(0.1) and sched.num_bad_epochs == 0


def test_load_state_dict_errors_change_nothing() -> None:
    sched = L.CosineAnnealingLR(sgd(), T_max=10)
    sched.step()
    good = sched.state_dict()
    for bad, exc in [
        ({k: v for k, v in good.items() if k != "T_max"}, KeyError),
        ({**good, "extra": 1}, KeyError),
        ({**good, "base_lrs": [0.1]}, ValueError),
        ([("T_max", 3)], TypeError),
    ]:
        with pytest.raises(exc):
            sched.load_state_dict(bad)
        assert sched.state_dict() == good
    seq_opt = sgd()
    seq = L.SequentialLR(
        seq_opt, [L.ConstantLR(seq_opt), L.ExponentialLR(seq_opt, 0.9)], milestones=[3]
    )
    seq.step()
    good = seq.state_dict()
    broken = copy.deepcopy(good)
    del broken["_schedulers"][1]["gamma"]
    with pytest.raises(KeyError, match="gamma"):
        seq.load_state_dict(broken)
    assert seq.state_dict() == good


def test_state_dict_is_strict_json_except_plateau_infinity() -> None:
    opt = sgd(momentum=0.9)
    for sched in [
        L.MultiStepLR(opt, [3, 6]),
        L.CyclicLR(opt, 0.01, 0.1, step_size_up=3),
        L.OneCycleLR(opt, 0.5, total_steps=9),
        L.CosineAnnealingWarmRestarts(opt, 3, 2),
    ]:
        sched.step()
        text = json.dumps(sched.state_dict(), allow_nan=False)
        assert json.loads(text) == json.loads(json.dumps(sched.state_dict()))
    plateau = L.ReduceLROnPlateau(opt)
    assert json.loads(json.dumps(plateau.state_dict()))["best"] == math.inf


# ----- bad input --------------------------------------------------------------------------------
BAD = [
    (lambda o: L.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: L.StepLR(o, step_size=2.5), TypeError, "step_size"),
    (lambda o: L.StepLR(o, step_size=2, gamma=0.0), ValueError, "gamma"),
    (lambda o: L.ExponentialLR(o, gamma=-0.5), ValueError, "gamma"),
    (lambda o: L.MultiStepLR(o, [5, 3]), ValueError, "milestones"),
    (lambda o: L.MultiStepLR(o, [2, 2]), ValueError, "milestones"),
    (lambda o: L.MultiStepLR(o, 5), TypeError, "milestones"),
    (lambda o: L.ConstantLR(o, factor=1.5), ValueError, "factor"),
    (lambda o: L.LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: L.LinearLR(o, end_factor=2.0), ValueError, "end_factor"),
    (lambda o: L.PolynomialLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: L.LambdaLR(o, [lambda e: 1.0]), ValueError, "lr_lambda"),
    (lambda o: L.MultiplicativeLR(o, 0.9), TypeError, "lr_lambda"),
    (lambda o: L.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: L.CosineAnnealingLR(o, T_max=5, eta_min=-1.0), ValueError, "eta_min"),
    (lambda o: L.CosineAnnealingWarmRestarts(o, T_0=-1), ValueError, "T_0"),
    (lambda o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=0), ValueError, "T_mult"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1), ValueError, "total_steps"),
    (lambda o: L.OneCycleLR(o, 0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: L.OneCycleLR(o, 0.1, 10, anneal_strategy="sin"), ValueError, "anneal_strategy"),
    (lambda o: L.OneCycleLR(o, 0.1, total_steps=10, pct_start=0.1), ValueError, "pct_start"),
    (lambda o: L.OneCycleLR(o, [0.1], total_steps=10), ValueError, "max_lr"),
    (lambda o: L.OneCycleLR(o, 0.1, 10, final_div_factor=0), ValueError, "final_div_factor"),
    (lambda o: L.OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=0), ValueError, "steps_per_epoch"),
    (lambda o: L.CyclicLR(o, 0.01, 0.1, mode="square"), ValueError, "mode"),
    (lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=0), ValueError, "step_size_up"),
    (lambda o: L.CyclicLR(o, 0.01, 0.1, scale_mode="epoch"), ValueError, "scale_mode"),
    (lambda o: L.ReduceLROnPlateau(o, mode="mean"), ValueError, "mode"),
    (lambda o: L.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda o: L.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: L.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: L.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr"),
    (lambda o: L.StepLR(o, 2, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: L.SequentialLR(o, [], []), ValueError, "schedulers"),
    (lambda o: L.SequentialLR(o, [L.ReduceLROnPlateau(o)], []), ValueError, "ReduceLROnPlateau"),
    (lambda o: L.SequentialLR(o, [L.StepLR(sgd(), 2)], []), ValueError, "different optimizer"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2)], [3]), ValueError, "milestones"),
    (lambda o: L.ChainedScheduler([L.StepLR(o, 2), "x"]), TypeError, r"schedulers\[1\]"),
    (lambda o: L.warmup_cosine(o, 10, 10), ValueError, "total_steps"),
    (lambda o: L.StepLR(object(), 2), TypeError, "param_groups"),
]


#: cases that build child schedulers first (which set initial_lr, as in torch)
COMPOSITE_MATCHES = ("schedulers", "ReduceLROnPlateau", "different optimizer", "milestones")


@pytest.mark.parametrize("make, exc, match", BAD)
def test_bad_arguments(make: Any, exc: type, match: str) -> None:
    opt = sgd(momentum=0.9)
    before = copy.deepcopy(
        [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    )
    with pytest.raises(exc, match=match):
        make(opt)
    if match not in (*COMPOSITE_MATCHES, r"schedulers\[1\]"):
        after = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        assert after == before, "a failed constructor changed the optimizer"


def test_bad_step_arguments() -> None:
    with pytest.raises(TypeError, match="metrics"):
        L.ReduceLROnPlateau(sgd()).step("low")
    with pytest.raises(ValueError, match="epoch"):
        L.CosineAnnealingWarmRestarts(sgd(), T_0=3).step(-1.0)


# ---------------------------------------------------------------------- load_state_dict checks


class _Scale:
    """A callable object (its attributes are saved)."""

    def __init__(self) -> None:
        self.k = 1.0

    def __call__(self, epoch: int) -> float:
        return self.k / (1 + epoch)


#: one of every scheduler, on a two-group SGD with momentum (built by ``make(opt)``)
SCHEDULER_FACTORIES = {
    "StepLR": lambda o: L.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: L.MultiStepLR(o, [2, 4]),
    "ExponentialLR": lambda o: L.ExponentialLR(o, 0.9),
    "ConstantLR": lambda o: L.ConstantLR(o, 0.5, 3),
    "LinearLR": lambda o: L.LinearLR(o, 0.25, 1.0, 4),
    "PolynomialLR": lambda o: L.PolynomialLR(o, 6, 2.0),
    "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, 5, 0.001),
    "CosineAnnealingWarmRestarts": lambda o: L.CosineAnnealingWarmRestarts(o, 2, 2, 0.001),
    "LambdaLR": lambda o: L.LambdaLR(o, [_Scale(), lambda e: 0.9**e]),
    "MultiplicativeLR": lambda o: L.MultiplicativeLR(o, lambda e: 0.95),
    "CyclicLR": lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="triangular2"),
    "OneCycleLR": lambda o: L.OneCycleLR(o, [0.5, 0.2], total_steps=12, three_phase=True),
    "ReduceLROnPlateau": lambda o: L.ReduceLROnPlateau(o, patience=1, min_lr=[0.001, 0.002]),
    "SequentialLR": lambda o: L.SequentialLR(
        o, [L.ConstantLR(o, 0.5, 2), L.ExponentialLR(o, 0.9)], milestones=[2]
    ),
    "ChainedScheduler": lambda o: L.ChainedScheduler(
        [L.ConstantLR(o, 0.5, 2), L.ExponentialLR(o, 0.9)]
    ),
    "warmup_cosine": lambda o: L.warmup_cosine(o, 2, 8),
}


def _stepped(name: str) -> tuple[Any, Any]:
    opt = sgd(momentum=0.9)
    sched = SCHEDULER_FACTORIES[name](opt)
    for k in range(3):
        sched.step(1.0 + k % 2) if name == "ReduceLROnPlateau" else sched.step()
    return opt, sched


def _groups(opt: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


def _assert_refused(opt: Any, sched: Any, bad: dict[str, Any], match: str) -> None:
    before, groups = sched.state_dict(), copy.deepcopy(_groups(opt))
    with pytest.raises((TypeError, ValueError), match=match):
        sched.load_state_dict(bad)
    assert sched.state_dict() == before
    assert _groups(opt) == groups


@pytest.mark.parametrize("name", SCHEDULER_FACTORIES)
def test_every_saved_entry_has_a_check(name: str) -> None:
    _, sched = _stepped(name)
    assert set(sched.state_dict()) <= set(sched._state_rules())


@pytest.mark.parametrize("name", SCHEDULER_FACTORIES)
def test_load_state_dict_refuses_garbage_in_every_entry(name: str) -> None:
    """A string or a nan in any entry is refused with the key named; nothing changes; the good
    state (also after a JSON round trip) still loads."""
    opt, sched = _stepped(name)
    good = sched.state_dict()
    for key in good:
        for garbage in ("abc", math.nan):
            _assert_refused(opt, sched, {**good, key: garbage}, re.escape(f"state_dict[{key!r}]"))
    for key, value in good.items():
        if isinstance(value, list) and value and isinstance(value[0], float):
            _assert_refused(opt, sched, {**good, key: value[:1]}, re.escape(key))
            _assert_refused(opt, sched, {**good, key: [value[0], "x"]}, re.escape(f"{key!r}][1]"))
            _assert_refused(opt, sched, {**good, key: [value[0], -1.0]}, re.escape(key))
    sched.load_state_dict(json.loads(json.dumps(good)))
    assert sched.state_dict() == good


def test_step_lr_refuses_the_audit_example() -> None:
    opt, sched = _stepped("StepLR")
    good = sched.state_dict()
    bad = {**good, "base_lrs": ["abc", 0.1], "last_epoch": math.nan, "step_size": -5}
    _assert_refused(opt, sched, bad, r"state_dict\['")
    for key, value, match in [
        ("base_lrs", ["abc", 0.1], r"state_dict\['base_lrs'\]\[0\] must be a real number"),
        ("base_lrs", [0.1, math.inf], r"state_dict\['base_lrs'\]\[1\]"),
        ("base_lrs", (0.1,), r"state_dict\['base_lrs'\] has 1 values.*2 param groups"),
        ("base_lrs", 0.1, r"state_dict\['base_lrs'\] must be a list"),
        ("last_epoch", math.nan, r"state_dict\['last_epoch'\] must be an int"),
        ("last_epoch", 2.0, r"state_dict\['last_epoch'\] must be an int"),
        ("last_epoch", -2, r"state_dict\['last_epoch'\].*>= -1"),
        ("step_size", -5, r"state_dict\['step_size'\].*>= 1"),
        ("step_size", 0, r"state_dict\['step_size'\]"),
        ("gamma", 0.0, r"state_dict\['gamma'\]"),
        ("gamma", math.inf, r"state_dict\['gamma'\]"),
        ("_step_count", -1, r"state_dict\['_step_count'\]"),
        ("_is_initial", 1, r"state_dict\['_is_initial'\] must be a bool"),
        ("_last_lr", [0.1, -0.5], r"state_dict\['_last_lr'\]\[1\]"),
    ]:
        _assert_refused(opt, sched, {**good, key: value}, match)


@pytest.mark.parametrize(
    ("name", "key", "value", "match"),
    [
        ("MultiStepLR", "milestones", [4, 2], "strictly increasing"),
        ("MultiStepLR", "milestones", [2, -4], r"milestones'\]\[1\]"),
        ("ConstantLR", "factor", 1.5, "factor"),
        ("LinearLR", "start_factor", 0.0, "start_factor"),
        ("LinearLR", "end_factor", -0.1, "end_factor"),
        ("LinearLR", "total_iters", 0, "total_iters"),
        ("PolynomialLR", "power", -1.0, "power"),
        ("CosineAnnealingLR", "T_max", 0, "T_max"),
        ("CosineAnnealingLR", "eta_min", -1e-3, "eta_min"),
        ("CosineAnnealingWarmRestarts", "T_i", 1, r"T_i'\] must be at least"),
        ("CosineAnnealingWarmRestarts", "T_mult", 0, "T_mult"),
        ("CosineAnnealingWarmRestarts", "T_cur", -3.5, "T_cur"),
        ("LambdaLR", "lr_lambdas", [{"k": 2.0}], r"lr_lambdas'\] has 1 values"),
        ("LambdaLR", "lr_lambdas", [5, None], r"lr_lambdas'\]\[0\] must be a dict or None"),
        ("CyclicLR", "step_ratio", 1.0, "step_ratio"),
        ("CyclicLR", "total_size", 0.0, "total_size"),
        ("CyclicLR", "mode", "sawtooth", "mode"),
        ("CyclicLR", "scale_mode", "epochs", "scale_mode"),
        ("CyclicLR", "cycle_momentum", "yes", "cycle_momentum"),
        ("CyclicLR", "max_momentums", [0.9], "max_momentums"),
        ("OneCycleLR", "total_steps", 20, r"_schedule_phases'\] ends at step 11"),
        ("OneCycleLR", "_anneal_func_type", "cubic", "_anneal_func_type"),
        ("OneCycleLR", "_schedule_phases", [{"end_step": 1.0}] * 2, "_schedule_phases"),
        ("OneCycleLR", "use_beta1", None, "use_beta1"),
        ("ReduceLROnPlateau", "factor", 1.0, "factor"),
        ("ReduceLROnPlateau", "patience", -1, "patience"),
        ("ReduceLROnPlateau", "mode", "up", "mode"),
        ("ReduceLROnPlateau", "mode_worse", -math.inf, r"mode_worse'\] must be inf"),
        ("ReduceLROnPlateau", "best", math.nan, "best"),
        ("ReduceLROnPlateau", "num_bad_epochs", 1.5, "num_bad_epochs"),
        ("ReduceLROnPlateau", "default_min_lr", -1.0, "default_min_lr"),
        ("ReduceLROnPlateau", "min_lrs", [0.1, 0.2, 0.3], "min_lrs"),
        ("SequentialLR", "_milestones", [2, 5], r"_milestones'\] must have 1 entries"),
        ("SequentialLR", "_milestones", [-1], r"_milestones'\]\[0\]"),
        ("SequentialLR", "_schedulers", [{}, 3], r"_schedulers'\]\[1\] must be a dict"),
        ("ChainedScheduler", "_schedulers", "ab", "_schedulers"),
    ],
)
def test_load_state_dict_uses_the_constructor_rules(
    name: str, key: str, value: Any, match: str
) -> None:
    opt, sched = _stepped(name)
    good = sched.state_dict()
    _assert_refused(opt, sched, {**good, key: value}, match)
    sched.load_state_dict(good)
    assert sched.state_dict() == good


def test_plateau_infinite_best_still_loads() -> None:
    opt = sgd()
    sched = L.ReduceLROnPlateau(opt, mode="max")
    state = sched.state_dict()
    assert state["best"] == -math.inf
    other = L.ReduceLROnPlateau(sgd(), mode="max")
    other.load_state_dict(json.loads(json.dumps(state)))
    assert other.best == -math.inf and other.mode_worse == -math.inf


def test_composite_with_a_bad_child_entry_rolls_back() -> None:
    opt, sched = _stepped("SequentialLR")
    good = sched.state_dict()
    bad = copy.deepcopy(good)
    bad["_schedulers"][0]["factor"] = 0.25  # valid: loaded before the bad one
    bad["_schedulers"][1]["gamma"] = -0.9
    _assert_refused(opt, sched, bad, r"state_dict\['gamma'\]")
    assert sched._schedulers[0].factor == good["_schedulers"][0]["factor"]


@pytest.mark.parametrize("key", ["last_epoch", "_step_count"])
def test_an_int_beyond_float_precision_is_refused_at_load(key):
    """A crafted last_epoch=10**400 used to load and then overflow at step() (issue 11)."""
    opt = optim.SGD([np.zeros(3)], lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2)
    state = sched.state_dict()
    before = copy.deepcopy(state)
    for value in (10**400, 2**53 + 1):
        with pytest.raises(ValueError, match=rf"{key}.*2\*\*53"):
            sched.load_state_dict({**state, key: value})
        assert sched.state_dict() == before
    with pytest.raises(ValueError, match="last_epoch"):
        optim.lr_scheduler.StepLR(opt, step_size=2, last_epoch=10**400)
    sched.step()

"""Skipping steps with non-finite gradients (``skip_nonfinite``), the clipping path's handling of
a non-finite norm, the detection pass, the ``skipped_steps`` entry of state_dict, and
load_state_dict failures that must leave every array untouched."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import ferroptim as fo
from conftest import CLASS_CASES, assert_same, assert_unchanged, random_arrays, snapshot

BACKENDS = ("native", "reference")
ALL = CLASS_CASES
IDS = [cls.__name__ for cls, _ in ALL]
# Mixed dtypes, an empty array and one longer than a norm chunk (4096 elements).
SHAPES = [((5, 3), np.float32), ((7,), np.float64), ((0,), np.float32), ((4097,), np.float32),
          ((33,), np.float64)]  # fmt: skip
# (value, parameter index, flat position): one non-finite element per bad step.
BAD = [(np.nan, 0, 5), (np.inf, 3, 4096), (-np.inf, 1, 3), (np.nan, 3, 0)]
MODES = {
    "skip": {"skip_nonfinite": True},
    "skip+norm": {"skip_nonfinite": True, "max_grad_norm": 1.0},
    "skip+value": {"skip_nonfinite": True, "clip_value": 0.5},
    "skip+norm+value": {"skip_nonfinite": True, "max_grad_norm": 1.0, "clip_value": 0.5},
}


def make_params(seed: int = 0) -> list[np.ndarray]:
    return random_arrays(SHAPES, seed)


def make_grads(step: int) -> list:
    grads = random_arrays(SHAPES, 500 + step, scale=2)
    if step % 3 == 1:
        grads[4] = None
    return grads


def bad_grads(step: int, value: float, index: int, position: int) -> list:
    grads = make_grads(step)
    grads[index].reshape(-1)[position] = value
    return grads


def groups(params: list, multi: bool) -> object:
    return [{"params": params[:2], "lr": 0.01}, {"params": params[2:]}] if multi else params


def internal_arrays(opt) -> list[np.ndarray]:
    """Every array the optimizer owns (state lists, step counts, NAdam's mu products)."""
    arrays = []
    for state in opt._group_states:
        arrays += [state.steps, state.mu_products]
        for name in sorted(state.arrays):
            arrays += state.arrays[name]
    return arrays


def full_state(opt, params: list) -> list[np.ndarray]:
    """Copies of the parameters and every state_dict value, in a fixed order."""
    out = [p.copy() for p in params]
    for _, entry in sorted(opt.state_dict()["state"].items()):
        out += [np.array(value, copy=True) for _, value in sorted(entry.items())]
    return out


def assert_lists_same(a: list, b: list, label: str = "") -> None:
    assert len(a) == len(b), label
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_same(np.asarray(x), np.asarray(y), f"{label} #{k}")


# ----------------------------------------------------------------------------- skipping


def _run_with_bad_steps(cls, kw: dict, mode: dict, backend: str, multi: bool) -> list:
    """Step one optimizer through good and bad gradients and a twin through the good ones only;
    assert that bad steps change nothing and that both stay bit-identical."""
    ours, theirs = make_params(), make_params()
    opt = cls(groups(ours, multi), **kw, **mode, backend=backend)
    twin = cls(groups(theirs, multi), **kw, **mode, backend=backend)
    schedule = ["bad", 0, 1, "bad", 2, "bad", "bad", 3]
    bad = iter(BAD)
    skipped = 0
    for item in schedule:
        label = f"{cls.__name__} {mode} {backend} multi={multi} at {item}"
        if item == "bad":
            value, index, position = next(bad)
            grads = bad_grads(skipped, value, index, position)
            saved = snapshot(ours, internal_arrays(opt), grads)
            lrs = [g["lr"] for g in opt.param_groups]
            opt.step(grads)
            assert_unchanged(saved)
            assert [g["lr"] for g in opt.param_groups] == lrs
            skipped += 1
            assert opt.last_step_skipped, label
            assert opt.skipped_steps == skipped, label
            continue
        grads = make_grads(item)
        before = [None if g is None else g.copy() for g in grads]
        opt.step(grads)
        twin.step(make_grads(item))
        assert not opt.last_step_skipped, label
        assert_lists_same(grads, before, f"{label}: grads were written")
        assert_lists_same(full_state(opt, ours), full_state(twin, theirs), label)
        if opt.max_grad_norm is not None:
            assert opt.last_grad_norm == twin.last_grad_norm, label
    assert opt.state_dict()["skipped_steps"] == skipped
    assert twin.state_dict()["skipped_steps"] == 0
    return full_state(opt, ours)


@pytest.mark.parametrize("multi", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_bad_steps_change_nothing_and_later_steps_match_a_clean_run(cls, kw, mode, multi):
    results = [_run_with_bad_steps(cls, kw, MODES[mode], b, multi) for b in BACKENDS]
    assert_lists_same(results[0], results[1], "native != reference")


@pytest.mark.parametrize("backend", BACKENDS)
def test_off_by_default_nan_reaches_the_parameters(backend):
    params = make_params()
    opt = fo.optim.Adam(params, backend=backend)
    assert opt.skip_nonfinite is False
    opt.step(bad_grads(0, np.nan, 0, 5))
    assert not opt.last_step_skipped and opt.skipped_steps == 0
    assert np.isnan(params[0].reshape(-1)[5])
    assert "skipped_steps" not in opt.state_dict()  # torch's two keys


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_none_gradients_are_not_a_skip(backend):
    params = make_params()
    opt = fo.optim.Adam(params, skip_nonfinite=True, max_grad_norm=1.0, backend=backend)
    before = snapshot(params)
    opt.step([None] * len(params))
    assert_unchanged(before)
    assert not opt.last_step_skipped and opt.skipped_steps == 0 and opt.last_grad_norm == 0.0


def test_skip_nonfinite_must_be_a_bool():
    for cls, kw in ALL:
        with pytest.raises(TypeError, match="skip_nonfinite"):
            cls(make_params(), **kw, skip_nonfinite=1)
    opt = fo.optim.SGD(make_params())
    opt.skip_nonfinite = True
    assert opt.skip_nonfinite is True
    with pytest.raises(TypeError, match="skip_nonfinite"):
        opt.skip_nonfinite = "yes"
    assert opt.skip_nonfinite is True


# ----------------------------------------------------------------------------- clipping path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_nonfinite_clipping_norm_skips_even_without_skip_nonfinite(cls, kw, backend):
    """torch would scale by nan (or by 0, making inf * 0 = nan): we skip and report the norm."""
    params = make_params()
    opt = cls(params, **kw, max_grad_norm=1.0, backend=backend)
    opt.step(make_grads(0))
    for count, (value, index, position) in enumerate(BAD, start=1):
        grads = bad_grads(1, value, index, position)
        saved = snapshot(params, internal_arrays(opt), grads)
        opt.step(grads)
        assert_unchanged(saved)
        assert opt.last_step_skipped and opt.skipped_steps == count
        if math.isnan(value):
            assert math.isnan(opt.last_grad_norm)
        else:
            assert opt.last_grad_norm == math.inf
    opt.step(make_grads(2))
    assert not opt.last_step_skipped
    assert math.isfinite(opt.last_grad_norm)
    assert opt.state_dict()["skipped_steps"] == len(BAD)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clamped_inf_is_applied_unless_skip_nonfinite(backend):
    """With clip_value an inf is clamped (as clip_grad_value_ would) and the step is taken; with
    skip_nonfinite the raw gradients are checked and the step is skipped."""
    mode = {"max_grad_norm": 1.0, "clip_value": 0.5}
    grads = bad_grads(0, np.inf, 3, 4096)
    params, theirs = make_params(), make_params()
    opt = fo.optim.Adam(params, **mode, backend=backend)
    opt.step(grads)
    assert not opt.last_step_skipped and math.isfinite(opt.last_grad_norm)
    clipped = [None if g is None else g.copy() for g in grads]
    fo.clip.clip_grad_value_(clipped, 0.5, backend=backend)
    norm = fo.clip.clip_grad_norm_(clipped, 1.0, backend=backend)
    plain = fo.optim.Adam(theirs, backend=backend)
    plain.step(clipped)
    assert opt.last_grad_norm == norm
    assert_lists_same(full_state(opt, params), full_state(plain, theirs))

    params = make_params()
    opt = fo.optim.Adam(params, **mode, skip_nonfinite=True, backend=backend)
    saved = snapshot(params)
    opt.step(grads)
    assert opt.last_step_skipped and opt.skipped_steps == 1
    assert math.isfinite(opt.last_grad_norm)  # the clamped norm, which could not see the inf
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_sum_of_squares_overflow(backend):
    """Finite float64 elements whose squares overflow: the max-abs check takes the step, the L2
    clipping norm is inf and the step is skipped (documented: the safe choice)."""
    grads = [np.array([1e200, -3.0]), np.array([1.0])]
    params = [np.zeros(2), np.zeros(1)]
    opt = fo.optim.SGD(params, lr=1e-300, skip_nonfinite=True, backend=backend)
    opt.step(grads)
    assert not opt.last_step_skipped and params[0][0] == -1e-100
    for skip in (True, False):
        params = [np.zeros(2), np.zeros(1)]
        opt = fo.optim.SGD(
            params, lr=1e-300, max_grad_norm=1.0, skip_nonfinite=skip, backend=backend
        )
        opt.step(grads)
        assert opt.last_step_skipped and opt.last_grad_norm == math.inf
        assert not params[0].any() and not params[1].any()
    # float32 gradients accumulate in float64: their largest values cannot overflow the norm.
    big = [np.full(5000, np.finfo(np.float32).max, np.float32)]
    opt = fo.optim.SGD([np.zeros(5000, np.float32)], max_grad_norm=1.0, skip_nonfinite=True)
    opt.step(big)
    assert not opt.last_step_skipped and math.isfinite(opt.last_grad_norm)


# ----------------------------------------------------------------------------- one read pass


@pytest.mark.parametrize(
    ("mode", "passes"),
    [
        ({"skip_nonfinite": True}, [math.inf]),
        ({"skip_nonfinite": True, "clip_value": 0.5}, [math.inf]),
        ({"skip_nonfinite": True, "max_grad_norm": 1.0}, [2.0]),
        ({"max_grad_norm": 1.0}, [2.0]),
        ({"skip_nonfinite": True, "max_grad_norm": 1.0, "clip_value": 0.5}, [2.0, math.inf]),
        ({}, []),
    ],
)
@pytest.mark.parametrize("multi", [False, True])
def test_detection_is_one_norm_pass(monkeypatch, mode, passes, multi):
    calls = []
    real = fo.clip.global_norm

    def counting(grads, norm_type=2.0, clip_value=None, *, backend="native"):
        calls.append((norm_type, clip_value))
        return real(grads, norm_type, clip_value, backend=backend)

    monkeypatch.setattr(fo.clip, "global_norm", counting)
    opt = fo.optim.Adam(groups(make_params(), multi), **mode)
    opt.step(make_grads(0))
    assert [norm for norm, _ in calls] == passes
    # the max-abs detection pass reads the raw gradients, never clamped ones
    assert all(c is None for norm, c in calls if norm == math.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_max_abs_norm_propagates_nan(dtype, restore_simd_level, restore_num_threads):
    """The detection relies on it: nan anywhere (any chunk, lane, SIMD level, thread count)
    makes the inf-norm nan, an inf makes it inf; the reference agrees."""
    for level in fo.supported_simd_levels():
        fo.set_simd_level(level)
        for threads in (1, 2):
            fo.set_num_threads(threads)
            for n in (1, 15, 16, 17, 4096, 4097, 40000):
                for position in sorted({0, 7 % n, n // 2, n - 1}):
                    for value in (np.nan, np.inf, -np.inf):
                        grads = [np.ones(n, dtype), None, np.full(3, -2.0, dtype)]
                        grads[0][position] = value
                        for backend in BACKENDS:
                            norm = fo.clip.global_norm(grads, math.inf, backend=backend)
                            label = f"{level} {threads} n={n} at {position} {value} {backend}"
                            if math.isnan(value):
                                assert math.isnan(norm), label
                            else:
                                assert norm == math.inf, label
            assert fo.clip.global_norm([np.ones(4097, dtype)], math.inf) == 1.0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("multi", [False, True])
def test_bad_gradients_raise_on_the_skip_path_too(backend, multi):
    """A step that would be skipped still rejects bad input, as an applied step does."""
    params = make_params()
    opt = fo.optim.Adam(groups(params, multi), skip_nonfinite=True, backend=backend)
    opt.step(make_grads(0))
    for bad, error, match in [
        (np.full(8, np.nan, np.float64), ValueError, r"grads\[1\]"),  # shape
        (np.full(7, np.nan, np.float32), TypeError, r"grads\[1\]"),  # dtype
    ]:
        for fill in (np.nan, 1.0):
            grads = make_grads(1)
            grads[1] = bad.copy()
            grads[1].fill(fill)
            saved = snapshot(params, internal_arrays(opt), grads)
            with pytest.raises(error, match=match):
                opt.step(grads)
            assert_unchanged(saved)
            assert opt.skipped_steps == 0
    with pytest.raises(ValueError, match="grads"):
        opt.step(make_grads(1)[:-1])


# ----------------------------------------------------------------------------- state_dict


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_skipped_steps_round_trip_in_state_dict(cls, kw):
    params = make_params()
    opt = cls(params, **kw, skip_nonfinite=True)
    assert opt.state_dict()["skipped_steps"] == 0
    opt.step(make_grads(0))
    opt.step(bad_grads(1, np.nan, 0, 0))
    opt.step(bad_grads(1, np.inf, 1, 0))
    sd = copy.deepcopy(opt.state_dict())
    assert sd["skipped_steps"] == 2

    fresh = cls(make_params(), **kw, skip_nonfinite=True)
    fresh.load_state_dict(sd)
    assert fresh.skipped_steps == 2
    # torch-shaped dicts (without the entry) load with a count of 0
    torch_shaped = {k: v for k, v in sd.items() if k != "skipped_steps"}
    fresh.load_state_dict(torch_shaped)
    assert fresh.skipped_steps == 0
    # a default optimizer reports the entry only once it has skipped a step (clipping path)
    plain = cls(make_params(), **kw, max_grad_norm=1.0)
    assert "skipped_steps" not in plain.state_dict()
    plain.step(bad_grads(0, np.nan, 0, 0))
    assert plain.state_dict()["skipped_steps"] == 1
    plain.load_state_dict(torch_shaped)
    assert "skipped_steps" not in plain.state_dict()


def _corruptions(good: dict) -> list[tuple[str, dict, type, str]]:
    """(name, bad state_dict, error, message pattern); each fails a different check."""
    out = []

    def variant(name: str, error: type, match: str, edit) -> None:
        bad = copy.deepcopy(good)
        edit(bad)
        out.append((name, bad, error, match))

    first = min(good["state"])
    arrays = [k for k, v in good["state"][first].items() if isinstance(v, np.ndarray)]
    name = arrays[0]

    def shape(sd):
        sd["state"][first][name] = np.zeros(3, np.float32)

    def dtype(sd):
        sd["state"][first][name] = sd["state"][first][name].astype(np.float16)

    variant("shape", ValueError, rf"state\[{first}\]\['{name}'\].*shape", shape)
    variant("dtype", ValueError, rf"state\[{first}\]\['{name}'\].*dtype", dtype)
    variant("missing", ValueError, name, lambda sd: sd["state"][first].pop(name))
    variant("unexpected", ValueError, "surprise", lambda sd: sd["state"][first].update(surprise=1))
    variant("index", ValueError, "99", lambda sd: sd["state"].update({99: {}}))
    variant("groups", ValueError, "param groups", lambda sd: sd["param_groups"].append({}))
    variant("lr", ValueError, "lr", lambda sd: sd["param_groups"][0].update(lr=-1.0))
    variant("negative", ValueError, "skipped_steps", lambda sd: sd.update(skipped_steps=-1))
    variant("fraction", ValueError, "skipped_steps", lambda sd: sd.update(skipped_steps=1.5))
    variant("text", ValueError, "skipped_steps", lambda sd: sd.update(skipped_steps="3"))
    variant("top-level", ValueError, "surprise", lambda sd: sd.update(surprise=0))
    return out


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_failed_load_state_dict_changes_nothing(cls, kw):
    params = make_params()
    opt = cls(groups(params, True), **kw, skip_nonfinite=True)
    for t in range(3):
        opt.step(make_grads(t))
    opt.step(bad_grads(3, np.nan, 0, 0))
    source = cls(groups(make_params(1), True), **kw, skip_nonfinite=True)
    for t in range(5):
        source.step(make_grads(10 + t))
    good = copy.deepcopy(source.state_dict())
    good["skipped_steps"] = 7
    good["param_groups"][1]["lr"] = 0.125
    saved = snapshot(params, internal_arrays(opt))
    before_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    for name, bad, error, match in _corruptions(good):
        with pytest.raises(error, match=match):
            opt.load_state_dict(bad)
        assert_unchanged(saved)
        after = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        assert after == before_groups, name
        assert opt.skipped_steps == 1, name
    opt.load_state_dict(good)  # and the good one does load
    assert opt.skipped_steps == 7 and opt.param_groups[1]["lr"] == 0.125
    assert_lists_same(full_state(opt, make_params(1))[5:], full_state(source, params)[5:])

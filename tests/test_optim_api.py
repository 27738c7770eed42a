"""The torch-shaped optimizer API: param groups, None grads, state_dict, errors, atomicity."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim as fo
from conftest import CLASS_CASES

ALL = CLASS_CASES
SHAPES = [(5, 3), (7,), (0,), (33,)]


def make_params(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def make_grads(step, dtype=np.float32):
    rng = np.random.default_rng(1000 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def snapshot(opt, params):
    arrays = [p.copy() for p in params]
    for entry in opt.state_dict()["state"].values():
        arrays += [np.array(v, copy=True) for v in entry.values()]
    return arrays


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_state_dict_round_trip_resumes_exactly(cls, kw):
    params = make_params()
    opt = cls(params, **kw)
    for t in range(4):
        opt.step(make_grads(t))
    saved = copy.deepcopy(opt.state_dict())
    saved_params = [p.copy() for p in params]
    for t in range(4, 8):
        opt.step(make_grads(t))

    resumed_params = [p.copy() for p in saved_params]
    resumed = cls(resumed_params, **kw)
    resumed.load_state_dict(saved)
    for t in range(4, 8):
        resumed.step(make_grads(t))
    for a, b in zip(params, resumed_params, strict=True):
        np.testing.assert_array_equal(a, b)
    for (i, ea), (j, eb) in zip(
        sorted(opt.state_dict()["state"].items()),
        sorted(resumed.state_dict()["state"].items()),
        strict=True,
    ):
        assert i == j and set(ea) == set(eb)
        for key in ea:
            np.testing.assert_array_equal(np.asarray(ea[key]), np.asarray(eb[key]), err_msg=key)


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_reference_backend_gives_identical_results(cls, kw):
    native, ref = make_params(np.float64), make_params(np.float64)
    a, b = cls(native, **kw), cls(ref, backend="reference", **kw)
    for t in range(5):
        a.step(make_grads(t, np.float64))
        b.step(make_grads(t, np.float64))
    for x, y in zip(native, ref, strict=True):
        np.testing.assert_array_equal(x, y)


def test_adam_keeps_exactly_two_state_arrays_per_param_three_with_amsgrad():
    params = make_params()
    opt = fo.optim.Adam(params)
    opt.step(make_grads(0))
    state = opt.state_dict()["state"]
    for i, p in enumerate(params):
        arrays = [v for v in state[i].values() if isinstance(v, np.ndarray)]
        assert len(arrays) == 2
        assert all(a.shape == p.shape and a.dtype == p.dtype for a in arrays)
    assert fo.optim.Adam(make_params(), amsgrad=True).state_arrays_per_param == 3


def test_torch_shaped_state_dict():
    params = make_params()
    opt = fo.optim.Adam(params, lr=0.01)
    opt.step(make_grads(0))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert sd["param_groups"][0]["lr"] == 0.01
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert sd["state"][0]["step"] == 1.0
    sgd = fo.optim.SGD(make_params(), lr=0.1)
    sgd.step(make_grads(0))
    assert sgd.state_dict()["state"] == {}  # torch keeps no state for momentum-free SGD


def test_params_are_updated_in_place_never_copied():
    params = make_params()
    ids = [id(p) for p in params]
    before = [p.copy() for p in params]
    opt = fo.optim.SGD(params, lr=0.5)
    opt.step(make_grads(0))
    assert [id(p) for p in opt.param_groups[0]["params"]] == ids
    assert all(p is q for p, q in zip(params, opt.param_groups[0]["params"], strict=True))
    for p, b, g in zip(params, before, make_grads(0), strict=True):
        np.testing.assert_array_equal(p, b - np.float32(0.5) * g)


def test_none_grad_skips_param_state_and_step():
    params = make_params()
    opt = fo.optim.Adam(params)
    opt.step(make_grads(0))
    frozen = params[1].copy()
    state_before = {k: np.array(v, copy=True) for k, v in opt.state_dict()["state"][1].items()}
    grads = make_grads(1)
    grads[1] = None
    opt.step(grads)
    np.testing.assert_array_equal(params[1], frozen)
    after = opt.state_dict()["state"]
    for k, v in state_before.items():
        np.testing.assert_array_equal(np.asarray(after[1][k]), v)
    assert after[1]["step"] == 1.0 and after[0]["step"] == 2.0


def test_param_group_hyperparameters_take_effect_next_step():
    params = make_params(np.float64)
    twin = make_params(np.float64)
    opt = fo.optim.Adam([{"params": params[:2], "lr": 0.1}, {"params": params[2:]}], lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    states = [[np.zeros_like(p) for p in twin] for _ in range(2)]
    for t, lr0 in enumerate([0.1, 0.1, 0.5]):
        if t == 2:
            opt.param_groups[0]["lr"] = 0.5
        grads = make_grads(t, np.float64)
        opt.step(grads)
        for sl, lr in ((slice(0, 2), lr0), (slice(2, 4), 0.01)):
            fo.functional.adam_step(
                twin[sl], grads[sl], states[0][sl], states[1][sl], step=t + 1, lr=lr
            )
    for a, b in zip(params, twin, strict=True):
        np.testing.assert_array_equal(a, b)


def test_add_param_group_and_mixed_dtypes():
    p32, p64 = np.ones(5, np.float32), np.ones(3, np.float64)
    opt = fo.optim.SGD([p32], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [p64], "lr": 1.0})
    opt.step([np.ones(5, np.float32), np.ones(3, np.float64)])
    np.testing.assert_array_equal(p32, np.float32(1) - np.float32(0.1))
    np.testing.assert_array_equal(p64, np.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"lr": "fast"}, TypeError, "lr"),
        ({"betas": (1.0, 0.9)}, ValueError, r"betas\[0\]"),
        ({"betas": (0.9, -0.1)}, ValueError, r"betas\[1\]"),
        ({"betas": 0.9}, TypeError, "betas"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
        ({"amsgrad": "yes"}, TypeError, "amsgrad"),
    ],
)
def test_invalid_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        fo.optim.Adam(make_params(), **kwargs)


def test_nesterov_requires_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        fo.optim.SGD(make_params(), nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        fo.optim.SGD(make_params(), momentum=0.9, dampening=0.1, nesterov=True)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.ones(4, np.int64), TypeError, r"params\[2\].*int64"),
        (np.ones(4, np.float16), TypeError, r"params\[2\].*float16"),
        (np.ones(8, np.float32)[::2], ValueError, r"params\[2\].*contiguous"),
        ([1.0, 2.0], TypeError, r"params\[2\]"),
    ],
)
def test_invalid_params(bad, error, match):
    with pytest.raises(error, match=match):
        fo.optim.Adam([np.ones(3, np.float32), np.ones(2, np.float32), bad])


def test_read_only_and_duplicate_params():
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\].*read-only"):
        fo.optim.SGD([np.ones(2, np.float32), ro])
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"params\[1\].*shares memory.*params\[0\]"):
        fo.optim.SGD([p, p])
    base = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        fo.optim.SGD([base[:6], base[4:]])
    with pytest.raises(ValueError, match="empty"):
        fo.optim.SGD([])


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bad_grads_change_nothing_across_groups(backend):
    params = make_params()
    opt = fo.optim.Adam(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.1}], backend=backend
    )
    opt.step(make_grads(0))
    before = snapshot(opt, params)
    cases = [
        (make_grads(1)[:3], ValueError, "grads"),
        ([*make_grads(1)[:3], np.ones(34, np.float32)], ValueError, r"grads\[3\]"),
        ([*make_grads(1)[:3], np.ones(33, np.float64)], TypeError, r"grads\[3\]"),
        ([*make_grads(1)[:3], params[3]], ValueError, r"grads\[3\]|params\[3\]"),
        ([*make_grads(1)[:3], "x"], TypeError, r"grads\[3\]"),
    ]
    for grads, error, match in cases:
        with pytest.raises(error, match=match):
            opt.step(grads)
        for a, b in zip(before, snapshot(opt, params), strict=True):
            np.testing.assert_array_equal(a, b)


def test_load_state_dict_errors_name_the_key_and_change_nothing():
    params = make_params()
    opt = fo.optim.Adam(params)
    opt.step(make_grads(0))
    good = copy.deepcopy(opt.state_dict())
    before = snapshot(opt, params)

    bad_shape = copy.deepcopy(good)
    bad_shape["state"][3]["exp_avg"] = np.zeros(34, np.float32)
    with pytest.raises(ValueError, match=r"state\[3\]\['exp_avg'\].*\(34,\).*\(33,\)"):
        opt.load_state_dict(bad_shape)

    missing = copy.deepcopy(good)
    del missing["state"][1]["exp_avg_sq"]
    with pytest.raises(ValueError, match=r"state\[1\].*exp_avg_sq"):
        opt.load_state_dict(missing)

    extra = copy.deepcopy(good)
    extra["state"][0]["surprise"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"state\[0\].*surprise"):
        opt.load_state_dict(extra)

    groups = copy.deepcopy(good)
    groups["param_groups"][0]["params"] = [0, 1]
    with pytest.raises(ValueError, match="param_groups"):
        opt.load_state_dict(groups)

    bad_lr = copy.deepcopy(good)
    bad_lr["param_groups"][0]["lr"] = -5.0
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad_lr)

    for a, b in zip(before, snapshot(opt, params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt.param_groups[0]["lr"] == 1e-3


def test_threads_and_simd_level_controls():
    assert fo.get_num_threads() >= 1
    old = fo.get_num_threads()
    fo.set_num_threads(1)
    assert fo.get_num_threads() == 1
    fo.set_num_threads(old)
    with pytest.raises(ValueError, match="n"):
        fo.set_num_threads(0)
    assert fo.simd_level() in fo.supported_simd_levels()
    with pytest.raises(ValueError, match="level"):
        fo.set_simd_level("sse9")


def test_int_beyond_float_range_is_a_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="lr"):
        fo.optim.Adam([np.zeros(3, np.float32)], lr=10**400)


def test_state_dict_and_load_state_dict_are_serialized_with_steps():
    """state_dict, load_state_dict and add_param_group hold the optimizer's lock, as step does:
    a load from another thread cannot interleave with a step (the result is one of the orders)."""
    import threading

    params = [np.ones(50_000, np.float32)]
    opt = fo.optim.Adam(params, lr=1e-3)
    grads = [np.full(50_000, 0.5, np.float32)]
    opt.step(grads)
    saved = {k: v for k, v in opt.state_dict().items()}
    saved = {"state": {0: {n: np.copy(a) for n, a in saved["state"][0].items()}},
             "param_groups": saved["param_groups"]}  # fmt: skip
    stop = threading.Event()

    def loader():
        while not stop.is_set():
            opt.load_state_dict(saved)

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        for _ in range(200):
            opt.step(grads)
            sd = opt.state_dict()
            step = sd["state"][0]["step"]
            assert step >= 1.0
    finally:
        stop.set()
        thread.join()
    assert np.isfinite(params[0]).all()

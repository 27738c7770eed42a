"""Optimizer.load_state_dict is all-or-nothing: every value is checked before anything changes, a
failure names the key or index, and every array and scalar of the optimizer keeps its bytes."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim as fo
from conftest import CLASS_CASES

ALL = CLASS_CASES
IDS = [cls.__name__ for cls, _ in ALL]
SHAPES = [((5, 3), np.float32), ((7,), np.float64), ((4,), np.float32), ((6,), np.float64)]
LAST = len(SHAPES) - 1


def make_params(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(d) for s, d in SHAPES]


def make_grads(step: int) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(d) for s, d in SHAPES]


def trained(cls, kw, seed: int = 0, steps: int = 3):
    params = make_params(seed)
    groups = [{"params": params[:2], "lr": 0.01}, {"params": params[2:]}]
    opt = cls(groups, **kw, skip_nonfinite=True)
    for t in range(steps):
        opt.step(make_grads(seed * 10 + t))
    return opt, params


def byte_snapshot(opt, params) -> list[tuple[np.ndarray, bytes]]:
    """Every array the optimizer owns (step counts, mu products, state lists) and the params."""
    arrays = list(params)
    for state in opt._group_states:
        arrays += [state.steps, state.mu_products]
        for name in sorted(state.arrays):
            arrays += state.arrays[name]
    return [(a, a.tobytes()) for a in arrays]


def scalar_snapshot(opt) -> tuple:
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    state_arrays = [sorted(s.arrays) for s in opt._group_states]
    return groups, state_arrays, opt.skipped_steps


def assert_untouched(opt, params, saved_bytes, saved_scalars, case: str) -> None:
    for k, (array, data) in enumerate(saved_bytes):
        assert array.tobytes() == data, f"{case}: array #{k} was modified"
    # the optimizer still holds the very same arrays
    now = byte_snapshot(opt, params)
    assert len(now) == len(saved_bytes)
    assert all(a is b for (a, _), (b, _) in zip(now, saved_bytes, strict=True))
    assert scalar_snapshot(opt) == saved_scalars, case


def corruptions(good: dict, opt) -> list[tuple[str, dict, type, str]]:
    """(name, bad state_dict, error, message pattern), each provoked at the last parameter (or
    the last group) so that a half-applied load would already have changed the others."""
    out = []

    def variant(name, error, match, edit):
        bad = copy.deepcopy(good)
        edit(bad)
        out.append((name, bad, error, match))

    entry = good["state"][LAST]
    arrays = [k for k, v in entry.items() if isinstance(v, np.ndarray)]
    scalars = [k for k, v in entry.items() if not isinstance(v, np.ndarray)]
    at = rf"state\[{LAST}\]"
    for key in scalars:
        label = rf"{at}\['{key}'\]"
        for value, error, tag in [
            (-1.0, ValueError, "negative"),
            (float("nan"), ValueError, "nan"),
            (float("inf"), ValueError, "inf"),
            ("3", TypeError, "string"),
            ("x", TypeError, "text"),
            (True, TypeError, "bool"),
            (None, TypeError, "none"),
            ([1.0], TypeError, "list"),
            (np.zeros(2), TypeError, "vector"),
            (10**400, ValueError, "huge int"),
        ]:
            variant(
                f"{key}-{tag}",
                error,
                label,
                lambda sd, k=key, v=value: sd["state"][LAST].update({k: v}),
            )
        if key == "step":
            variant(
                "step-fraction", ValueError, label, lambda sd: sd["state"][LAST].update(step=1.5)
            )
        if key == "mu_product":
            variant(
                "mu-above-1", ValueError, label, lambda sd: sd["state"][LAST].update(mu_product=1.5)
            )
        variant(
            f"{key}-missing",
            ValueError,
            rf"{at}.*{key}",
            lambda sd, k=key: sd["state"][LAST].pop(k),
        )
    for key in arrays:
        label = rf"{at}\['{key}'\]"
        value = entry[key]

        def put(new, k=key):
            return lambda sd: sd["state"][LAST].update({k: new})

        variant(f"{key}-shape", ValueError, label + ".*shape", put(np.zeros(3, value.dtype)))
        variant(
            f"{key}-dtype",
            ValueError,
            label + ".*dtype",
            put(value.astype(np.float32 if value.dtype == np.float64 else np.float64)),
        )
        variant(f"{key}-list", TypeError, label, put(value.tolist()))
        variant(f"{key}-string", TypeError, label, put("abc"))
        if key in {"exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg", "acc_delta", "exp_inf"}:
            bad = value.copy()
            bad[-1] = -1.0
            variant(f"{key}-negative", ValueError, label + ".*negative", put(bad))
    variant("entry-not-dict", TypeError, at, lambda sd: sd["state"].update({LAST: [1, 2]}))
    variant("entry-string", TypeError, at, lambda sd: sd["state"].update({LAST: "x"}))
    variant("state-not-dict", TypeError, r"state_dict\['state'\]", lambda sd: sd.update(state=[1]))
    variant("groups-not-list", TypeError, "param_groups", lambda sd: sd.update(param_groups="ab"))
    variant(
        "group-not-dict",
        TypeError,
        r"param_groups\[1\]",
        lambda sd: sd["param_groups"].__setitem__(1, 5),
    )
    variant(
        "group-params-type",
        TypeError,
        r"param_groups\[1\]\['params'\]",
        lambda sd: sd["param_groups"][1].update(params=7),
    )
    variant(
        "group-index-type",
        TypeError,
        r"param_groups\[1\]\['params'\]\[1\]",
        lambda sd: sd["param_groups"][1].update(params=[2, "3"]),
    )
    variant(
        "group-indices",
        ValueError,
        r"param_groups\[1\]\['params'\]",
        lambda sd: sd["param_groups"][1].update(params=[3, 2]),
    )
    variant("group-lr", ValueError, "lr", lambda sd: sd["param_groups"][1].update(lr=float("nan")))
    variant("group-lr-type", TypeError, "lr", lambda sd: sd["param_groups"][1].update(lr="0.1"))
    out.append(("not-a-dict", [("state", {})], TypeError, "state_dict must be a dict"))
    variant("skipped", ValueError, "skipped_steps", lambda sd: sd.update(skipped_steps=-1))
    variant("index-key", ValueError, "unknown parameter", lambda sd: sd["state"].update({"0": {}}))
    return out


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_failed_load_changes_no_byte(cls, kw):
    opt, params = trained(cls, kw)
    source, _ = trained(cls, kw, seed=1, steps=5)
    good = copy.deepcopy(source.state_dict())
    good["param_groups"][1]["lr"] = 0.125
    good["skipped_steps"] = 4
    saved_bytes = byte_snapshot(opt, params)
    saved_scalars = scalar_snapshot(opt)
    cases = corruptions(good, opt)
    assert len(cases) >= 17
    for name, bad, error, match in cases:
        with pytest.raises(error, match=match):
            opt.load_state_dict(bad)
        assert_untouched(opt, params, saved_bytes, saved_scalars, name)
    opt.load_state_dict(good)  # the good dict still loads, with everything it holds
    assert opt.param_groups[1]["lr"] == 0.125 and opt.skipped_steps == 4
    loaded = opt.state_dict()["state"]
    assert sorted(loaded) == sorted(good["state"])
    for index, entry in good["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(loaded[index][key], value, err_msg=f"{index} {key}")


def test_adam_negative_step_keeps_the_state_of_every_param():
    opt, _ = trained(fo.optim.Adam, {})
    before = copy.deepcopy(opt.state_dict())
    bad = copy.deepcopy(before)
    bad["state"][2]["step"] = -1.0
    with pytest.raises(ValueError, match=r"state\[2\]\['step'\]"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert sorted(after["state"]) == sorted(before["state"]) == [0, 1, 2, 3]
    for index, entry in before["state"].items():
        assert after["state"][index]["step"] == entry["step"] == 3.0
        np.testing.assert_array_equal(after["state"][index]["exp_avg"], entry["exp_avg"])


def test_nadam_bad_mu_product_keeps_mu_product_and_moments():
    opt, _ = trained(fo.optim.NAdam, {})
    before = copy.deepcopy(opt.state_dict())
    assert before["state"][1]["mu_product"] != 1.0
    bad = copy.deepcopy(before)
    bad["state"][1]["mu_product"] = "x"
    with pytest.raises(TypeError, match=r"state\[1\]\['mu_product'\]"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for index, entry in before["state"].items():
        assert after["state"][index]["mu_product"] == entry["mu_product"]
        np.testing.assert_array_equal(after["state"][index]["exp_avg"], entry["exp_avg"])


def test_string_step_is_refused():
    opt, _ = trained(fo.optim.Adam, {})
    bad = copy.deepcopy(opt.state_dict())
    bad["state"][0]["step"] = "3"
    with pytest.raises(TypeError, match=r"state\[0\]\['step'\].*real number"):
        opt.load_state_dict(bad)


@pytest.mark.parametrize(("cls", "kw"), ALL, ids=IDS)
def test_numpy_scalars_and_0d_arrays_load_as_torch_tensors_would(cls, kw):
    """torch saves ``step`` (and NAdam's ``mu_product``) as 0-d tensors: their numpy form and
    numpy scalars load like floats, and a dict without ``skipped_steps`` loads a count of 0."""
    source, _ = trained(cls, kw, seed=2, steps=4)
    plain = copy.deepcopy(source.state_dict())
    plain.pop("skipped_steps", None)
    tensors = copy.deepcopy(plain)
    for entry in tensors["state"].values():
        for key in ("step", "mu_product"):
            if key in entry:
                entry[key] = np.array(entry[key], dtype=np.float32)
        if "step" in entry:
            entry["step"] = np.float64(entry["step"])
    for saved in (plain, tensors):
        opt, _ = trained(cls, kw)
        opt.load_state_dict(saved)
        assert opt.skipped_steps == 0
        got = opt.state_dict()["state"]
        for index, entry in source.state_dict()["state"].items():
            for key, value in entry.items():
                np.testing.assert_array_equal(got[index][key], value)


def test_nan_and_inf_in_saved_state_load_as_in_torch():
    """A diverged run's state (nan/inf in moments) loads unchanged, so it can be resumed or
    inspected; only shape, dtype, type and sign problems are refused."""
    params = [np.ones(4, np.float32)]
    opt = fo.optim.Adam(params)
    opt.step([np.full(4, 0.5, np.float32)])
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)
    fresh = fo.optim.Adam([np.ones(4, np.float32)])
    fresh.load_state_dict(sd)
    loaded = fresh.state_dict()["state"][0]["exp_avg"]
    assert np.array_equal(loaded, sd["state"][0]["exp_avg"], equal_nan=True)

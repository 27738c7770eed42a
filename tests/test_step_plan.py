"""The per-group kernel call kept between steps (``ferroptim.optim._call_plan``): whatever is
reused, every change a user can make between steps takes effect or is refused at the next step,
exactly as when everything was rebuilt at every step."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import ferroptim as fo


def arrays(seed: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(5 + k).astype(np.float32) for k in range(n)]


def assert_same(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def twin_steps(build, changes, steps: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run ``steps`` steps of ``build(params)`` applying ``changes(opt, t)`` before step ``t``,
    and the same with a fresh optimizer built from the changed group at every step (nothing
    reused): both parameter lists."""
    kept, fresh = arrays(0), arrays(0)
    opt = build(kept)
    saved = None
    for t in range(steps):
        grads = arrays(10 + t)
        changes(opt, t)
        opt.step(grads)
        other = build(fresh)
        if saved is not None:
            other.load_state_dict(saved)
        other.param_groups[0].update(
            {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        )
        other.step(grads)
        saved = copy.deepcopy(other.state_dict())
    return kept, fresh


def test_option_switched_on_between_steps_allocates_and_uses_its_state() -> None:
    def changes(opt: fo.optim.Optimizer, t: int) -> None:
        if t == 2:
            opt.param_groups[0]["amsgrad"] = True
            opt.param_groups[0]["lr"] = 0.01

    kept, fresh = twin_steps(fo.optim.Adam, changes)
    assert_same(kept, fresh)


def test_value_equal_to_the_last_but_of_another_type_is_still_checked() -> None:
    """An ``int`` 0 equals ``False`` and ``2+0j`` equals ``2.0``; the check still sees them."""
    params = arrays(0)
    opt = fo.optim.Adam(params, lr=2.0)
    opt.step(arrays(1))
    before = [p.copy() for p in params]
    for key, value in (("amsgrad", 0), ("lr", 2 + 0j)):
        good = opt.param_groups[0][key]
        opt.param_groups[0][key] = value
        with pytest.raises(TypeError, match=key):
            opt.step(arrays(2))
        opt.param_groups[0][key] = good
    assert_same(params, before)


def test_deleted_hyperparameter_is_named() -> None:
    opt = fo.optim.SGD(arrays(0), lr=0.1, momentum=0.9)
    opt.step(arrays(1))
    del opt.param_groups[0]["momentum"]
    with pytest.raises(KeyError, match="momentum"):
        opt.step(arrays(2))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copy_steps_its_own_arrays(how: str) -> None:
    """A copy made after steps (the original's call plan in place) updates only its own
    parameters and state."""
    params = arrays(0)
    opt = fo.optim.RMSprop(params, lr=0.01, momentum=0.5)
    opt.step(arrays(1))
    clone = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    before = [p.copy() for p in params]
    state_before = [a.copy() for s in opt._group_states for lst in s.arrays.values() for a in lst]
    clone.step(arrays(2))
    assert_same(params, before)
    state_after = [a for s in opt._group_states for lst in s.arrays.values() for a in lst]
    assert_same(state_after, state_before)
    opt.step(arrays(2))
    assert_same(params, clone.param_groups[0]["params"])


def test_loaded_state_is_the_state_the_next_step_uses() -> None:
    params, twin = arrays(0), arrays(0)
    opt, other = fo.optim.Adam(params), fo.optim.Adam(twin)
    for t in range(2):
        other.step(arrays(10 + t))
    opt.step(arrays(20))  # a plan for opt's own state
    saved = copy.deepcopy(other.state_dict())
    for p, q in zip(params, twin, strict=True):
        np.copyto(p, q)
    opt.load_state_dict(saved)
    opt.step(arrays(12))
    other.step(arrays(12))
    assert_same(params, twin)


def test_parameter_replaced_in_the_group_gets_fresh_state() -> None:
    params = arrays(0)
    opt = fo.optim.Adam(params, lr=0.1)
    opt.step(arrays(1))
    new = np.ones(6, np.float32)
    opt.param_groups[0]["params"][1] = new
    grads = arrays(2)
    opt.step(grads)
    alone = np.ones(6, np.float32)
    fo.optim.Adam([alone], lr=0.1).step([grads[1]])
    np.testing.assert_array_equal(new, alone)

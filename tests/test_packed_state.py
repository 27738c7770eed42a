"""Optimizer state arrays of one name (and dtype) in a group are views of one 64-byte-aligned
allocation (``ferroptim._flat_layout``), at the first step, at construction (eager state) and
after ``load_state_dict``; stepping is unchanged."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim._flat_layout import ALIGN_BYTES

BUILDERS: dict[str, Callable[[list[np.ndarray]], fo.optim.Optimizer]] = {
    "adam": lambda p: fo.optim.Adam(p, lr=1e-2),
    "adam_amsgrad": lambda p: fo.optim.Adam(p, lr=1e-2, amsgrad=True),
    "sgd_momentum": lambda p: fo.optim.SGD(p, lr=0.1, momentum=0.9),
    "adagrad_eager": lambda p: fo.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.5),
    "adam_bf16": lambda p: fo.optim.Adam(p, lr=1e-2, state_dtype="bfloat16"),
    "adam_8bit": lambda p: fo.optim.Adam8bit(p, lr=1e-2),
}
SHAPES = [(5000,), (3, 7), (), (300, 20), (1,)]


def _params(seed: int, dtype: type = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _assert_packed(opt: fo.optim.Optimizer) -> None:
    for state in opt._group_states:
        assert state.arrays
        for name, arrays in state.arrays.items():
            by_dtype: dict[np.dtype, list[np.ndarray]] = {}
            for a in arrays:
                by_dtype.setdefault(a.dtype, []).append(a)
            for group in by_dtype.values():
                assert len({id(a.base) for a in group}) == 1, name
                assert group[0].base is not None
                ends = 0
                for a in group:
                    assert a.flags.c_contiguous and a.flags.writeable
                    if a.size:
                        assert _address(a) % ALIGN_BYTES == 0 and _address(a) >= ends, name
                        ends = _address(a) + a.nbytes


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_state_is_packed_and_steps_as_separate_arrays_would(name: str) -> None:
    params, twin_params = _params(0), _params(0)
    opt, twin = BUILDERS[name](params), BUILDERS[name](twin_params)
    for step in range(3):
        grads = _params(10 + step)
        opt.step(grads)
        twin.step(grads)
        if step == 0:  # the twin's state as separately allocated copies (the former layout)
            for state in twin._group_states:
                for arrays in state.arrays.values():
                    arrays[:] = [a.copy() for a in arrays]
                state.plan = None
    _assert_packed(opt)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params, twin_params, strict=True))
    saved = opt.state_dict()
    fresh = BUILDERS[name](_params(0))
    fresh.load_state_dict(saved)
    _assert_packed(fresh)


def test_mixed_dtypes_in_one_group_get_one_allocation_each() -> None:
    params = _params(0) + _params(1, np.float64)
    opt = fo.optim.Adam(params, lr=1e-2)
    opt.step(_params(2) + _params(3, np.float64))
    _assert_packed(opt)
    bases = {id(a.base) for a in opt._group_states[0].arrays["exp_avg"]}
    assert len(bases) == 2


def test_eager_state_is_packed_at_construction() -> None:
    opt = BUILDERS["adagrad_eager"](_params(0))
    _assert_packed(opt)
    assert all((a == 0.5).all() for a in opt._group_states[0].arrays["sum"])

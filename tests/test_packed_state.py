"""Optimizer state arrays of one name (and dtype) in a group are views of one 64-byte-aligned
allocation (``ferroptim._flat_layout``), at the first step, at construction (eager state) and
after ``load_state_dict``; stepping is unchanged."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim._flat_layout import ALIGN_BYTES, packed_arrays
from ferroptim.reference.lowp_formats import bf16_narrow

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


def test_packed_arrays_places_each_value_in_its_view_and_refuses_a_mismatch() -> None:
    values = [np.arange(5, dtype=np.float32), np.ones((2, 3)), np.full((), 7, np.float32)]
    out = packed_arrays([(v.shape, v.dtype) for v in values], iter(values))
    for got, want in zip(out, values, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not np.shares_memory(got, want)
    assert out[0].base is out[2].base  # one allocation per dtype
    layouts = [((5,), np.dtype(np.float32))]
    with pytest.raises(RuntimeError, match="value 0 is float64"):
        packed_arrays(layouts, [np.zeros(5)])
    with pytest.raises(RuntimeError, match="value 0 is nothing"):
        packed_arrays(layouts, [])
    with pytest.raises(RuntimeError, match="more values"):
        packed_arrays(layouts, [np.zeros(5, np.float32)] * 2)


@pytest.mark.parametrize(
    ("name", "state_bytes_per_param_byte"),
    [("adam", 2.0), ("adagrad_eager", 1.0), ("adam_bf16", 1.0), ("adam_8bit", 0.5)],
)
def test_allocating_state_holds_it_once_plus_one_parameter(
    name: str, state_bytes_per_param_byte: float
) -> None:
    # Each state array is written into its place in the packed allocation one parameter at a
    # time: building every array first and packing copies held the state twice (bfloat16:
    # plus whole-array conversion temporaries several times the result).
    params = [np.ones(1 << 21, np.float32) for _ in range(4)]  # 8 MB each
    grads = [np.full_like(p, 0.5) for p in params]
    tracemalloc.start()
    try:
        opt = BUILDERS[name](params)
        opt.step(grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state = sum(a.nbytes for s in opt._group_states for arrs in s.arrays.values() for a in arrs)
    assert state >= state_bytes_per_param_byte * 4 * params[0].nbytes * 0.99
    assert peak <= state + 2 * params[0].nbytes


@pytest.mark.parametrize("n", [1, (1 << 18) - 1, 1 << 18, (1 << 18) + 1, 2 * (1 << 18) + 3])
def test_float32_to_bf16_in_blocks_equals_the_whole_conversion(n: int) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 1e3).astype(np.float32)
    x[:: max(n // 7, 1)] = np.nan
    if n > 3:
        x[1], x[2], x[3] = np.inf, -np.inf, -0.0
    want = bf16_narrow(x, None)
    np.testing.assert_array_equal(fo.optim.float32_to_bf16(x), want)
    np.testing.assert_array_equal(
        fo.optim.float32_to_bf16(x.astype(np.float64).reshape(1, n)), want.reshape(1, n)
    )
    assert fo.optim.float32_to_bf16(np.float32(1.5)).shape == ()

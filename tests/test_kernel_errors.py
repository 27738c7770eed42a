"""Both backends refuse the same bad calls with the same exception type, a message naming the
argument (and list index), and without modifying anything.

Each case breaks the LAST of four tensors (after three valid ones), so a kernel that started
writing before checking everything would be caught by the byte-for-byte snapshot comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from conftest import (
    BACKENDS,
    DEFAULTS,
    KERNELS,
    SPECS,
    Problem,
    assert_unchanged,
    hyper,
    snapshot,
)

N = 4
LAST = N - 1
SHAPE = (17,)


def make_problem(kernel: str, dtype=np.float32) -> tuple[Problem, list]:
    """Four valid tensors of one shape, every option on, a resumed state."""
    problem = Problem.build(
        kernel, hyper(kernel, full=True), [SHAPE] * N, dtype, state="random", start_steps=2
    )
    grads = problem.random_grads(np.random.default_rng(1))
    return problem, grads


def first_state(problem: Problem) -> tuple[str, list]:
    return problem.state_lists()[0]


def misaligned(dtype, shape=SHAPE, buffer_type=bytearray) -> np.ndarray:
    """An array whose data starts one byte past an aligned address (writeable unless the buffer
    is ``bytes``)."""
    size = int(np.prod(shape))
    buffer = buffer_type(np.dtype(dtype).itemsize * (size + 1))
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=1)
    assert not array.flags.aligned
    return array


@dataclass(frozen=True)
class Case:
    """Break a valid problem; ``apply`` returns the grads to pass and the expected error."""

    name: str
    apply: Callable[[Problem, list], tuple[list, type[Exception], str]]
    kernels: tuple[str, ...] = KERNELS
    # The native message does not name the argument in a few cases; check it on the reference.
    match_native: bool = True


def _param(value_fn, exc=TypeError):
    def apply(problem, grads):
        problem.params[LAST] = value_fn(problem.params[LAST])
        return grads, exc, rf"params\[{LAST}\]"

    return apply


def _grad(value_fn, exc):
    def apply(problem, grads):
        grads[LAST] = value_fn(grads[LAST], problem)
        return grads, exc, rf"grads\[{LAST}\]"

    return apply


def _state(value_fn, exc):
    def apply(problem, grads):
        name, arrays = first_state(problem)
        arrays[LAST] = value_fn(arrays[LAST], problem)
        return grads, exc, rf"{name}\[{LAST}\]"

    return apply


def _readonly(a):
    a.flags.writeable = False
    return a


def _hp(key, value, pattern=None):
    def apply(problem, grads):
        problem.hp[key] = value
        return grads, ValueError, pattern or rf"\b{key}\b"

    return apply


def _steps(fn, exc):
    def apply(problem, grads):
        problem.steps = fn(problem.steps)
        return grads, exc, r"steps"

    return apply


def _negative_step(problem, grads):
    problem.steps[LAST] = -1
    return grads, ValueError, rf"steps\[{LAST}\]"


def _wrong_grad_count(problem, grads):
    return grads[:-1], ValueError, r"grads"


def _wrong_state_count(problem, grads):
    name, arrays = first_state(problem)
    problem.set_slot(name, arrays[:-1])
    return grads, ValueError, name


def _grad_is_param(problem, grads):
    grads[LAST] = problem.params[LAST]
    return grads, ValueError, rf"grads\[{LAST}\]"


def _param_twice(problem, grads):
    problem.params[LAST] = problem.params[0]
    return grads, ValueError, rf"params\[{LAST}\]"


def _state_views_param(problem, grads):
    name, arrays = first_state(problem)
    arrays[LAST] = problem.params[1][...]
    return grads, ValueError, rf"{name}\[{LAST}\]"


def _state_views_grad(problem, grads):
    name, arrays = first_state(problem)
    arrays[LAST] = grads[LAST][:]
    return grads, ValueError, rf"{name}\[{LAST}\]"


def _partial_overlap(problem, grads):
    """Two different views whose memory overlaps by one element."""
    name, arrays = first_state(problem)
    base = np.zeros(2 * SHAPE[0] - 1, problem.params[LAST].dtype)
    problem.params[LAST] = base[: SHAPE[0]]
    arrays[LAST] = base[SHAPE[0] - 1 :]
    return grads, ValueError, rf"{name}\[{LAST}\]"


def _params_not_list(problem, grads):
    problem.params = 5
    return grads, TypeError, r"params"


def _params_is_array(problem, grads):
    problem.params = np.zeros((N, *SHAPE), np.float32)
    return grads, TypeError, r"params"


def _state_list_not_list(problem, grads):
    name, _ = first_state(problem)
    problem.set_slot(name, 3.0)
    return grads, TypeError, name


def _missing_state_list(problem, grads):
    """An option that needs a state list whose list is None (amsgrad, centered, momentum)."""
    optional = {"adam": "max_exp_avg_sqs", "rmsprop": "grad_avgs", "sgd": "momentum_buffers"}
    problem.set_slot(optional[problem.kernel], None)
    return grads, ValueError, optional[problem.kernel]


def _extra_state_list(problem, grads):
    """A state list passed for an option that is off."""
    off = {"adam": "amsgrad", "rmsprop": "centered", "sgd": "momentum"}
    key = off[problem.kernel]
    problem.hp[key] = 0.0 if key == "momentum" else False
    if problem.kernel == "sgd":
        problem.hp["nesterov"] = False
    name = {"adam": "max_exp_avg_sqs", "rmsprop": "grad_avgs", "sgd": "momentum_buffers"}
    return grads, ValueError, name[problem.kernel]


def _mu_products(fn, exc):
    def apply(problem, grads):
        problem.set_slot("mu_products", fn(problem.slot("mu_products")))
        return grads, exc, r"mu_products"

    return apply


def _flag_not_bool(problem, grads):
    problem.hp["maximize"] = 1
    return grads, TypeError, r"maximize"


def _lr_not_number(problem, grads):
    problem.hp["lr"] = "0.1"
    return grads, TypeError, r"lr"


def _other(dtype):
    return np.float64 if dtype == np.float32 else np.float32


BETAS = tuple(k for k in KERNELS if "beta1" in DEFAULTS[k])
EPS = tuple(k for k in KERNELS if "eps" in DEFAULTS[k])
OPTIONAL_STATES = tuple(k for k in KERNELS if any(s.optional for s in SPECS[k].states))

CASES = [
    # arrays of the wrong kind
    Case("param_int64", _param(lambda p: np.arange(p.size, dtype=np.int64))),
    Case("param_float16", _param(lambda p: p.astype(np.float16))),
    Case("param_big_endian", _param(lambda p: p.astype(p.dtype.newbyteorder(">")))),
    Case("param_list_of_floats", _param(lambda p: p.tolist())),
    Case("param_noncontiguous", _param(lambda p: np.zeros(2 * p.size, p.dtype)[::2], ValueError)),
    Case("param_strided_2d", _param(lambda p: np.zeros((17, 1, 2), p.dtype)[:, :, 0], ValueError)),
    Case("param_readonly", _param(_readonly, ValueError)),
    Case("param_misaligned", _param(lambda p: misaligned(p.dtype), ValueError)),
    Case("grad_dtype", _grad(lambda g, pr: g.astype(_other(g.dtype)), TypeError)),
    Case("grad_big_endian", _grad(lambda g, pr: g.astype(g.dtype.newbyteorder(">")), TypeError)),
    Case("grad_string", _grad(lambda g, pr: "gradient", TypeError)),
    Case("grad_shape", _grad(lambda g, pr: np.zeros(16, g.dtype), ValueError)),
    Case("grad_shape_2d", _grad(lambda g, pr: np.zeros((1, 17), g.dtype), ValueError)),
    Case("grad_noncontiguous", _grad(lambda g, pr: np.zeros(34, g.dtype)[1::2], ValueError)),
    Case("grad_misaligned", _grad(lambda g, pr: misaligned(g.dtype), ValueError)),
    Case(
        "grad_misaligned_bytes", _grad(lambda g, pr: misaligned(g.dtype, SHAPE, bytes), ValueError)
    ),
    Case("state_dtype", _state(lambda s, pr: s.astype(_other(s.dtype)), TypeError)),
    Case("state_shape", _state(lambda s, pr: np.zeros((1, 17), s.dtype), ValueError)),
    Case("state_readonly", _state(lambda s, pr: _readonly(s), ValueError)),
    Case("state_misaligned", _state(lambda s, pr: misaligned(s.dtype), ValueError)),
    Case("state_none", _state(lambda s, pr: None, TypeError)),
    # lists
    Case("wrong_grad_count", _wrong_grad_count),
    Case("wrong_state_count", _wrong_state_count),
    Case("params_not_a_list", _params_not_list),
    Case("params_an_array", _params_is_array),
    Case("state_list_not_a_list", _state_list_not_list),
    # memory shared with a written array
    Case("grad_is_param", _grad_is_param),
    Case("same_param_twice", _param_twice),
    Case("state_views_param", _state_views_param),
    Case("state_views_grad", _state_views_grad),
    Case("partial_overlap", _partial_overlap),
    # steps
    Case("negative_step", _negative_step),
    Case("steps_int32", _steps(lambda s: s.astype(np.int32), TypeError)),
    Case("steps_too_short", _steps(lambda s: s[:-1].copy(), ValueError)),
    Case("steps_2d", _steps(lambda s: s.reshape(1, -1).copy(), ValueError)),
    Case("steps_readonly", _steps(_readonly, ValueError)),
    Case("steps_list", _steps(lambda s: s.tolist(), TypeError)),
    Case("steps_none", _steps(lambda s: None, TypeError)),
    # hyperparameters
    Case("lr_negative", _hp("lr", -0.1)),
    Case("lr_nan", _hp("lr", float("nan"))),
    Case("lr_inf", _hp("lr", float("inf"))),
    Case("weight_decay_negative", _hp("weight_decay", -0.01)),
    Case("eps_negative", _hp("eps", -1e-8), kernels=EPS),
    Case("beta1_one", _hp("beta1", 1.0), kernels=BETAS),
    Case("beta1_negative", _hp("beta1", -0.1), kernels=BETAS),
    Case("beta2_one", _hp("beta2", 1.0), kernels=BETAS),
    Case("beta2_nan", _hp("beta2", float("nan")), kernels=BETAS),
    Case("momentum_negative", _hp("momentum", -0.9), kernels=("sgd", "rmsprop")),
    Case("nesterov_without_momentum", _hp("momentum", 0.0, "nesterov"), kernels=("sgd",)),
    Case("nesterov_with_dampening", _hp("dampening", 0.1, "nesterov"), kernels=("sgd",)),
    Case("dampening_inf", _hp("dampening", float("inf")), kernels=("sgd",)),
    Case("lr_decay_negative", _hp("lr_decay", -0.1), kernels=("adagrad",)),
    Case("rho_above_one", _hp("rho", 1.5), kernels=("adadelta",)),
    Case("alpha_negative", _hp("alpha", -0.5), kernels=("rmsprop",)),
    Case("momentum_decay_negative", _hp("momentum_decay", -1.0), kernels=("nadam",)),
    Case("flag_not_bool", _flag_not_bool, match_native=False),
    Case("lr_not_a_number", _lr_not_number, match_native=False),
    # state lists that do not match the options (native: "tensor 0 has 2 state arrays ...")
    Case("missing_state_list", _missing_state_list, OPTIONAL_STATES, match_native=False),
    Case("extra_state_list", _extra_state_list, OPTIONAL_STATES, match_native=False),
    # NAdam's mu_products
    Case(
        "mu_products_float64", _mu_products(lambda m: m.astype(np.float64), TypeError), ("nadam",)
    ),
    Case("mu_products_short", _mu_products(lambda m: m[:-1].copy(), ValueError), ("nadam",)),
    Case("mu_products_readonly", _mu_products(_readonly, ValueError), ("nadam",)),
]

PARAMS = [
    pytest.param(case, kernel, id=f"{case.name}-{kernel}")
    for case in CASES
    for kernel in case.kernels
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize(("case", "kernel"), PARAMS)
def test_refused_without_side_effects(case, kernel, backend, dtype):
    problem, grads = make_problem(kernel, dtype)
    grads, exc, pattern = case.apply(problem, grads)
    saved = snapshot(problem.params, [v for _, v in problem.slots], problem.steps, grads)
    if backend == "native" and not case.match_native:
        pattern = None
    with pytest.raises(exc, match=pattern):
        problem.step(backend, grads)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_roofline_refuses_too_many_states(backend):
    p = [np.zeros(3, np.float32)]
    g = [np.ones(3, np.float32)]
    states = [[np.zeros(3, np.float32)] for _ in range(4)]
    saved = snapshot(p, states)
    with pytest.raises(ValueError, match="state"):
        BACKENDS[backend].roofline_step(p, g, *states)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_roofline_state_error_names_list(backend):
    p = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
    g = [np.ones(3, np.float32), np.ones(3, np.float32)]
    states = [[np.zeros(3, np.float32), np.zeros(4, np.float32)]]
    with pytest.raises(ValueError, match=r"states\[0\]\[1\]"):
        BACKENDS[backend].roofline_step(p, g, *states)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_skipped_tensor_is_not_checked(backend):
    """A tensor whose gradient is None is left out entirely, as in torch (grad is None)."""
    problem, grads = make_problem("adam")
    grads[LAST] = None
    problem.params[LAST] = problem.params[LAST].astype(np.float16)
    saved_steps = problem.steps.copy()
    problem.step(backend, grads)
    assert problem.steps[LAST] == saved_steps[LAST]
    np.testing.assert_array_equal(problem.steps[:LAST], saved_steps[:LAST] + 1)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_huge_step_count_refused(backend):
    """steps[i] + 1 must not overflow int64."""
    problem, grads = make_problem("adam")
    problem.steps[LAST] = np.iinfo(np.int64).max
    saved = snapshot(problem.params, problem.steps)
    with pytest.raises(ValueError, match=rf"steps\[{LAST}\]"):
        problem.step(backend, grads)
    assert_unchanged(saved)


@pytest.mark.parametrize(
    "backend",
    [
        "native",
        "reference",
    ],
)
def test_rmsprop_state_list_in_the_wrong_slot_refused(backend):
    params, grads = [np.zeros(3, np.float32)], [np.ones(3, np.float32)]
    square_avgs, buffers = [np.zeros(3, np.float32)], [np.full(3, 5.0, np.float32)]
    steps = np.zeros(1, np.int64)
    saved = snapshot(params, square_avgs, buffers, steps)
    hp = hyper("rmsprop", centered=True, momentum=0.0)
    with pytest.raises(ValueError, match=r"grad_avgs|momentum_buffers"):
        BACKENDS[backend].rmsprop_step(params, grads, square_avgs, None, buffers, steps, **hp)
    assert_unchanged(saved)

"""``ferroptim._native`` and ``ferroptim.reference`` give bit-identical results.

Every kernel, every flag combination, float32 and float64, several tensors per call (sizes 0, 1,
15, 17, a 2-d one, a 0-d one; one gradient None on every other step), at least ten steps with
fresh gradients; params, every state array, steps and mu_products are compared after each step.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from conftest import (
    BACKENDS,
    DTYPES,
    KERNELS,
    SPECS,
    Problem,
    assert_problems_equal,
    config_id,
    hyper,
    product,
    run_equivalence,
)

SHAPES = [(0,), (1,), (15,), (17,), (4, 33), ()]
NONE_AT = (2,)  # the (15,) tensor gets a None gradient on even steps
STEPS = 10
HUGE = 1_000_003
ALL_ON = {"full": True}  # conftest.FULL: every option of the kernel switched on

# A second value for each hyperparameter the grid varies (by name, for every optimizer): a beta1
# (or alpha) of 0.3 makes torch's lerp weight 1 - beta1 >= 0.5, its other branch; flags take both
# values. Other hyperparameters (lr, eps, ...) keep conftest.DEFAULTS.
SECOND_VALUE = {
    "momentum": 0.9,
    "dampening": 0.1,
    "weight_decay": 0.01,
    "lr_decay": 0.01,
    "initial_accumulator_value": 0.1,
    "rho": 0.0,
    "alpha": 0.3,
    "beta1": 0.3,
}


def grid(spec) -> list[dict[str, object]]:
    """Every combination of the varied hyperparameters the kernel accepts."""
    group = {**spec.defaults, "lr": 0.01}
    choices: dict[str, list[object]] = {}
    for h in spec.hypers:
        if h.kind == "flag":
            choices[h.name] = [False, True]
        elif h.kind == "betas":
            choices["beta1"] = [h.default[0], SECOND_VALUE["beta1"]]
        elif h.name in SECOND_VALUE:
            choices[h.name] = [h.default, SECOND_VALUE[h.name]]
    combos = []
    for c in product(**choices):
        check = {**group, **c, "betas": (c.get("beta1", 0.9), 0.999)}
        if spec.combination is None or spec.combination(check) is None:
            combos.append(c)
    return combos


GRID = {kernel: grid(SPECS[kernel]) for kernel in KERNELS}

CASES = [
    pytest.param(kernel, overrides, id=f"{kernel}-{config_id(overrides) or 'plain'}")
    for kernel in KERNELS
    for overrides in GRID[kernel]
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("kernel", "overrides"), CASES)
def test_flag_grid(kernel, overrides, dtype):
    overrides = dict(overrides)
    init = overrides.pop("initial_accumulator_value", 0.0)  # Adagrad's state fill, not an argument
    hp = hyper(kernel, **overrides)
    run_equivalence(
        kernel, hp, SHAPES, dtype, n_steps=STEPS, none_at=NONE_AT, state=init or "zeros"
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("init", [2.5, "random"])
def test_adagrad_nonzero_initial_sums(init, dtype):
    hp = hyper("adagrad", lr_decay=0.01, weight_decay=0.01, maximize=True)
    run_equivalence("adagrad", hp, SHAPES, dtype, none_at=NONE_AT, state=init)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", KERNELS)
def test_resumed_state(kernel, dtype):
    """Random non-zero states, mu_products and step counts from 0 to 10**9 (large t)."""
    start = [0, 1, 7, 1000, 10**6, 10**9]
    run_equivalence(
        kernel,
        hyper(kernel, full=True),
        SHAPES,
        dtype,
        n_steps=4,
        none_at=NONE_AT,
        state="random",
        start_steps=start,
        seed=3,
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_mixed_dtypes_in_one_call(kernel):
    dtypes = [np.float32, np.float64, np.float64, np.float32, np.float32, np.float64]
    run_equivalence(kernel, hyper(kernel, full=True), SHAPES, dtypes, n_steps=4, none_at=NONE_AT)


def test_radam_crosses_rectification_threshold():
    """With beta2 = 0.999, rho_t > 5 from step 6 on: both branches are covered by 10 steps."""
    beta2 = 0.999
    rho_inf = 2 / (1 - beta2) - 1
    rho = [rho_inf - 2 * t * beta2**t / (1 - beta2**t) for t in range(1, STEPS + 1)]
    assert rho[0] <= 5 < rho[-1]
    run_equivalence("radam", hyper("radam", beta2=beta2), SHAPES, np.float32, n_steps=STEPS)


@pytest.mark.parametrize(
    ("kernel", "dtype", "overrides"),
    [
        pytest.param("adam", np.float32, ALL_ON, id="adam-full-float32"),
        pytest.param("adam", np.float64, {"beta1": 0.3}, id="adam-lerp-branch-float64"),
        pytest.param("sgd", np.float32, ALL_ON, id="sgd-nesterov-float32"),
        pytest.param("rmsprop", np.float64, ALL_ON, id="rmsprop-centered-momentum-float64"),
        pytest.param("nadam", np.float32, ALL_ON, id="nadam-float32"),
        pytest.param("radam", np.float64, ALL_ON, id="radam-float64"),
        pytest.param("lion", np.float32, ALL_ON, id="lion-float32"),
    ],
)
def test_huge_tensor(kernel, dtype, overrides):
    """One tensor of 1,000,003 elements (parallel pieces plus a ragged tail) among small ones."""
    shapes = [(HUGE,), (17,), (0,)]
    run_equivalence(kernel, hyper(kernel, **overrides), shapes, dtype, n_steps=3, none_at=(1,))


@pytest.mark.parametrize("kernel", KERNELS)
def test_all_grads_none_changes_nothing(kernel):
    for backend in BACKENDS:
        problem = Problem.build(kernel, hyper(kernel, full=True), SHAPES, state="random", seed=5)
        before = problem.copy()
        problem.step(backend, [None] * len(SHAPES))
        assert_problems_equal(problem, before, backend)


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_lists(kernel):
    for backend in BACKENDS:
        problem = Problem.build(kernel, hyper(kernel, full=True), [])
        problem.step(backend, [])
        assert problem.steps.shape == (0,)


@pytest.mark.parametrize("kernel", KERNELS)
def test_tuples_accepted(kernel):
    """Lists may be tuples; gradients may share memory with each other (they are only read)."""
    results = []
    for backend in BACKENDS:
        problem = Problem.build(kernel, hyper(kernel, full=True), [(9,)] * 3, seed=2)
        shared = np.linspace(-1, 1, 9, dtype=np.float32)
        grads = (shared, shared, shared[::-1].copy())
        problem.params = tuple(problem.params)
        problem.slots = [[k, tuple(v) if isinstance(v, list) else v] for k, v in problem.slots]
        problem.step(backend, grads)
        results.append(problem)
    assert_problems_equal(*results)


def test_sgd_first_step_ignores_buffer_contents():
    """On t == 1 the momentum buffer becomes a copy of g, whatever it held."""
    hp = hyper("sgd", momentum=0.9, dampening=0.5)
    for backend in BACKENDS:
        problem = Problem.build("sgd", hp, [(33,)], np.float64, state="random", seed=4)
        grads = problem.random_grads(np.random.default_rng(0))
        problem.step(backend, grads)
        np.testing.assert_array_equal(problem.slot("momentum_buffers")[0], grads[0])


def test_nadam_mu_product_rounding():
    """mu_products are kept in float32: mu_product = float32(mu_product * float32(mu))."""
    hp = hyper("nadam")
    for backend in BACKENDS:
        problem = Problem.build("nadam", hp, [(3,), (2,)])
        problem.step(backend, [np.ones(3, np.float32), None])
        mu = 0.9 * (1 - 0.5 * 0.96 ** (1 * 4e-3))
        expected = np.array([np.float32(1.0) * np.float32(mu), 1.0], np.float32)
        np.testing.assert_array_equal(problem.slot("mu_products"), expected)
        np.testing.assert_array_equal(problem.steps, [1, 0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n_state", [0, 1, 2, 3])
def test_roofline(n_state, dtype):
    shapes = [(0,), (1,), (17,), (5, 7), ()]
    out = []
    for backend in BACKENDS:
        r = np.random.default_rng(7)
        params = [r.standard_normal(s).astype(dtype) for s in shapes]
        states = [[r.standard_normal(s).astype(dtype) for s in shapes] for _ in range(n_state)]
        rng = np.random.default_rng(8)
        for _ in range(3):
            grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
            grads[1] = None
            BACKENDS[backend].roofline_step(params, grads, *states)
        out.append([*params, *(a for lst in states for a in lst)])
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


def _parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", [f"{k}_step" for k in KERNELS] + ["roofline_step"])
def test_same_signature(name):
    """Same parameter names, order, kinds and no defaults (the optimizer kernels take
    ``(params, grads, *lists, **hypers)`` in both; tests/test_registry.py checks their lists and
    keywords against the registry)."""
    ours = _parameters(getattr(BACKENDS["reference"], name))
    theirs = _parameters(getattr(BACKENDS["native"], name))
    assert ours == theirs
    assert getattr(BACKENDS["reference"], name).__doc__


def test_reference_exports():
    """The reference twins every native step kernel, and exports nothing else (``prepare_step``
    prepares a native kernel's call; it is no kernel)."""
    native_steps = {name for name in dir(BACKENDS["native"]) if "_step" in name}
    native_steps.discard("prepare_step")
    assert {f"{k}_step" for k in KERNELS} | {"roofline_step"} <= native_steps
    assert sorted(BACKENDS["reference"].__all__) == sorted(native_steps)

"""Property tests: for random shapes (0-d to 3-d, empty included), dtypes, flags, hyperparameters,
states, step counts and values (finite, moderate, with zeros of both signs), the native kernels and
the NumPy reference give bit-identical results (NaN-aware)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import KERNELS, NONNEGATIVE_STATES, Problem, assert_problems_equal, hyper

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Moderate finite values, exactly representable in float32, with zeros (hypothesis also draws -0.0).
VALUES = st.one_of(
    st.just(0.0),
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32),
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)

LR = st.one_of(st.sampled_from([0.0, 1e-3, 0.1, 1.0]), st.floats(0.0, 2.0))
UNIT = st.one_of(
    st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.999]), st.floats(0.0, 1.0, exclude_max=True)
)
EPS = st.sampled_from([0.0, 1e-10, 1e-8, 1e-3])
DECAY = st.sampled_from([0.0, 0.01, 0.5])
FLAG = st.booleans()


@st.composite
def hyperparameters(draw, kernel: str) -> dict[str, object]:
    """Valid hyperparameters of ``kernel`` covering every flag and both lerp branches."""
    hp: dict[str, object] = {"lr": draw(LR), "weight_decay": draw(DECAY), "maximize": draw(FLAG)}
    if kernel == "sgd":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and draw(FLAG)
        dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 1.0]))
        hp.update(momentum=momentum, dampening=dampening, nesterov=nesterov)
    elif kernel == "adagrad":
        hp.update(lr_decay=draw(st.sampled_from([0.0, 0.01, 1.0])), eps=draw(EPS))
    elif kernel == "adadelta":
        hp.update(rho=draw(st.floats(0.0, 1.0)), eps=draw(EPS))
    elif kernel == "rmsprop":
        hp.update(
            alpha=draw(st.floats(0.0, 1.5)),
            eps=draw(EPS),
            momentum=draw(st.sampled_from([0.0, 0.9])),
            centered=draw(FLAG),
        )
    else:
        hp.update(beta1=draw(UNIT), beta2=draw(UNIT))
        if kernel != "lion":
            hp["eps"] = draw(EPS)
        if kernel in ("adam", "nadam", "radam"):
            hp["decoupled_weight_decay"] = draw(FLAG)
        if kernel == "adam":
            hp["amsgrad"] = draw(FLAG)
        if kernel == "nadam":
            hp["momentum_decay"] = draw(st.sampled_from([0.0, 4e-3, 0.5]))
    return hyper(kernel, **hp)


def _array(draw, shape, dtype, *, nonnegative=False) -> np.ndarray:
    array = draw(hnp.arrays(dtype, shape, elements=VALUES))
    return np.abs(array) if nonnegative else array


@st.composite
def problems(draw, kernel: str) -> tuple[Problem, list[list]]:
    """A problem with drawn arrays, plus the gradients of each of 1 to 3 steps."""
    hp = draw(hyperparameters(kernel))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(SHAPES, min_size=1, max_size=4))
    n = len(shapes)
    problem = Problem.build(
        kernel,
        hp,
        shapes,
        dtype,
        start_steps=draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)),
    )
    problem.params = [_array(draw, s, dtype) for s in shapes]
    for entry in problem.slots:
        name, value = entry
        if isinstance(value, list):
            entry[1] = [
                np.asarray(_array(draw, s, dtype, nonnegative=name in NONNEGATIVE_STATES), dtype)
                for s in shapes
            ]
        elif isinstance(value, np.ndarray):  # NAdam's mu_products
            entry[1] = draw(hnp.arrays(np.float32, n, elements=st.floats(0.0, 1.0, width=32)))
    step_grads = []
    for _ in range(draw(st.integers(1, 3))):
        skip = draw(st.lists(FLAG, min_size=n, max_size=n))
        step_grads.append(
            [
                None if s else _array(draw, shape, dtype)
                for s, shape in zip(skip, shapes, strict=True)
            ]
        )
    return problem, step_grads


def _check(problem: Problem, step_grads: list[list]) -> None:
    ours, theirs = problem, problem.copy()
    for k, grads in enumerate(step_grads):
        ours.step("native", grads)
        theirs.step("reference", grads)
        assert_problems_equal(ours, theirs, f"{problem.kernel} {problem.hp} step {k}:")


@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(data=st.data())
def test_native_equals_reference(kernel, data):
    problem, step_grads = data.draw(problems(kernel))
    _check(problem, step_grads)


@SETTINGS
@given(
    n_state=st.integers(0, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    shapes=st.lists(SHAPES, min_size=1, max_size=3),
    data=st.data(),
)
def test_roofline_native_equals_reference(n_state, dtype, shapes, data):
    import ferroptim._native as native
    import ferroptim.reference as reference

    def draw_arrays():
        return [_array(data.draw, s, dtype) for s in shapes]

    params, grads = draw_arrays(), draw_arrays()
    states = [draw_arrays() for _ in range(n_state)]
    results = []
    for backend in (native, reference):
        p = [a.copy() for a in params]
        s = [[a.copy() for a in lst] for lst in states]
        backend.roofline_step(p, grads, *s)
        results.append([*p, *(a for lst in s for a in lst)])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))

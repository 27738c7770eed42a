"""Shared helpers for the kernel tests: the two backends, problem builders, exact comparison.

A :class:`Problem` holds everything one optimizer call updates (params, state lists, steps and
NAdam's mu_products) plus its hyperparameters. Copy it, step one copy with ``ferroptim._native``
and the other with ``ferroptim.reference`` on the same gradients, and compare with
:func:`assert_problems_equal`, which demands identical bits (NaN-aware).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import ferroptim._native as native
import ferroptim._registry as registry
import ferroptim.reference as reference

BACKENDS = {"native": native, "reference": reference}
ROOT = Path(__file__).resolve().parent.parent
#: the golden fixtures
DATA_DIR = ROOT / "tests" / "data"


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module: a golden generator shares its case table and builders
    with the test that replays it (the generator imports torch only when run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DTYPES = (np.float32, np.float64)

# Every table below derives from the optimizer registry, so a new optimizer is covered by every
# generic test (tests/test_registry.py checks that no table misses one).
KERNELS = tuple(spec.kernel for spec in registry.SPECS)
SPECS = {spec.kernel: spec for spec in registry.SPECS}

# Test learning rates larger than torch's defaults, so that steps move the params.
_TEST_LR = {"sgd": 0.05, "adagrad": 0.05}


def _kernel_defaults(spec: registry.OptimizerSpec) -> dict[str, object]:
    group = dict(spec.defaults)
    group["lr"] = _TEST_LR.get(spec.kernel, max(group["lr"], 0.01))
    return spec.kernel_kwargs(group)


def _switch_on(hp: dict[str, object], name: str) -> None:
    """Turn option ``name`` on: a flag to True, a real that is 0 by default to a typical value."""
    if isinstance(hp[name], bool):
        hp[name] = True
    elif hp[name] == 0.0:
        hp[name] = 0.9 if name == "momentum" else 0.01


def _full(spec: registry.OptimizerSpec) -> dict[str, object]:
    """Every option on: every flag, every state list, weight decay, lr decay."""
    hp = _kernel_defaults(spec)
    for name in list(hp):
        if isinstance(hp[name], bool) or name in ("weight_decay", "lr_decay"):
            _switch_on(hp, name)
    for state in spec.states:
        if state.optional and not state.used(hp):
            _switch_on(hp, state.condition.split()[0].split("=")[0])
    if spec.combination is not None and spec.combination(hp) is not None:
        raise AssertionError(f"{spec.kernel}: the all-on options are refused")
    return {k: v for k, v in hp.items() if v != _kernel_defaults(spec)[k]}


# Hyperparameters every test starts from (torch's defaults, lr larger).
DEFAULTS: dict[str, dict[str, object]] = {s.kernel: _kernel_defaults(s) for s in registry.SPECS}

# Every option switched on (every state list present): the configs the SIMD and error tests use.
FULL: dict[str, dict[str, object]] = {s.kernel: _full(s) for s in registry.SPECS}

# State lists whose values must be non-negative (squares, maxima of squares).
NONNEGATIVE_STATES = frozenset(
    s.kernel_arg for spec in registry.SPECS for s in spec.states if s.non_negative
)


def class_cases() -> list[tuple[type, dict[str, object]]]:
    """Every optimizer class with constructor options that turn every state on (and fill
    Adagrad-like initial state, and give decoupled-only decay a value)."""
    import ferroptim.optim as optim

    cases = []
    for spec in registry.OPTIMIZERS:
        group = dict(spec.defaults)
        kwargs: dict[str, object] = {}
        for state in spec.states:
            if state.optional and not state.used(group):
                name = state.condition.split()[0].split("=")[0]
                kwargs[name] = True if isinstance(group[name], bool) else 0.5
                group[name] = kwargs[name]
        if spec.state_fill is not None:
            kwargs[spec.state_fill] = 0.1
        if spec.decay == "decoupled":
            kwargs["weight_decay"] = 0.1
        cases.append((optim.OPTIMIZER_CLASSES[spec.name], kwargs))
    return cases


CLASS_CASES = class_cases()
CLASS_IDS = [cls.__name__ for cls, _ in CLASS_CASES]


def hyper(kernel: str, *, full: bool = False, **overrides: object) -> dict[str, object]:
    """The hyperparameters of ``kernel``: DEFAULTS, then FULL (if asked), then ``overrides``."""
    unknown = set(overrides) - set(DEFAULTS[kernel])
    assert not unknown, f"{kernel} has no hyperparameters {unknown}"
    return {**DEFAULTS[kernel], **(FULL[kernel] if full else {}), **overrides}


def slot_layout(kernel: str, hp: dict[str, object]) -> list[tuple[str, str]]:
    """The positional arguments between ``grads`` and ``steps``, as ``(name, kind)`` with kind
    ``"list"`` (a state list), ``"none"`` (an optional list the options do not use) or ``"mu"``
    (a per-tensor float32 scalar array such as NAdam's mu_products)."""
    spec = SPECS[kernel]
    layout = [(s.kernel_arg, "list" if s.used(hp) else "none") for s in spec.states]
    return layout + [(s.kernel_arg, "mu") for s in spec.scalars]


def random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype, *, zeros: float = 0.1):
    """Standard-normal values of ``dtype`` with a fraction ``zeros`` of exact zeros."""
    values = rng.standard_normal(shape)
    values[rng.random(shape) < zeros] = 0.0
    return np.asarray(values, dtype)


@dataclass
class Problem:
    """The arrays and hyperparameters of one optimizer call (everything that call writes)."""

    kernel: str
    hp: dict[str, object]
    params: list
    slots: list  # [name, value]: a state list, None, or the mu_products array
    steps: object

    @classmethod
    def build(
        cls,
        kernel: str,
        hp: dict[str, object],
        shapes: Iterable[tuple[int, ...]],
        dtypes=np.float32,
        *,
        seed: int = 0,
        state: str | float = "zeros",
        start_steps: Iterable[int] | int = 0,
    ) -> Problem:
        """Random params of the given shapes; ``dtypes`` is one dtype or one per tensor.

        ``state`` is ``"zeros"`` (a fresh optimizer), ``"random"`` (a resumed one: random
        states, non-negative where required, mu_products in (0.5, 1]) or a constant fill.
        """
        rng = np.random.default_rng(seed)
        shapes = [tuple(s) for s in shapes]
        n = len(shapes)
        if isinstance(dtypes, list | tuple):
            dtype_list = list(dtypes)
        else:
            dtype_list = [dtypes] * n
        params = [random_values(rng, s, d) for s, d in zip(shapes, dtype_list, strict=True)]
        slots: list = []
        for name, kind in slot_layout(kernel, hp):
            if kind == "none":
                slots.append([name, None])
            elif kind == "mu":
                mu = np.ones(n, np.float32)
                if state == "random":
                    mu = rng.uniform(0.5, 1.0, n).astype(np.float32)
                slots.append([name, mu])
            else:
                arrays = []
                for s, d in zip(shapes, dtype_list, strict=True):
                    if state == "zeros":
                        a = np.zeros(s, d)
                    elif state == "random":
                        a = random_values(rng, s, d)
                        if name in NONNEGATIVE_STATES:
                            a = np.abs(a)
                        elif name == "grad_avgs":
                            a = (a * 0.1).astype(d)
                    else:
                        a = np.full(s, state, d)
                    arrays.append(np.asarray(a, d))  # (0-d arithmetic gives scalars)
                slots.append([name, arrays])
        if isinstance(start_steps, int):
            steps = np.full(n, start_steps, np.int64)
        else:
            steps = np.array(list(start_steps), np.int64)
        return cls(kernel, dict(hp), params, slots, steps)

    def copy(self) -> Problem:
        """A deep copy (new arrays, same values)."""
        return copy.deepcopy(self)

    def slot(self, name: str):
        """The value of the positional argument ``name``."""
        for key, value in self.slots:
            if key == name:
                return value
        raise KeyError(name)

    def set_slot(self, name: str, value: object) -> None:
        """Replace the positional argument ``name``."""
        for entry in self.slots:
            if entry[0] == name:
                entry[1] = value
                return
        raise KeyError(name)

    def state_lists(self) -> list[tuple[str, list]]:
        """``(name, list)`` of every state list passed."""
        return [(k, v) for k, v in self.slots if isinstance(v, list)]

    def args(self, grads: list) -> list:
        """The positional arguments of the kernel call."""
        return [self.params, grads, *(value for _, value in self.slots), self.steps]

    def step(self, backend: str, grads: list) -> None:
        """Run one step of this problem's kernel with ``backend`` ("native" or "reference")."""
        function = getattr(BACKENDS[backend], f"{self.kernel}_step")
        function(*self.args(grads), **self.hp)

    def random_grads(
        self, rng: np.random.Generator, *, none_at: Iterable[int] = (), zeros: float = 0.1
    ) -> list:
        """Fresh random gradients shaped like the params, ``None`` at ``none_at``."""
        skip = set(none_at)
        return [
            None if i in skip else random_values(rng, p.shape, p.dtype, zeros=zeros)
            for i, p in enumerate(self.params)
        ]

    def arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every array this problem's calls write, labelled ``"exp_avgs[2]"`` etc."""
        for i, p in enumerate(self.params):
            yield f"params[{i}]", p
        for name, value in self.slots:
            if isinstance(value, list):
                for i, a in enumerate(value):
                    yield f"{name}[{i}]", a
            elif isinstance(value, np.ndarray):
                yield name, value
        yield "steps", self.steps


def assert_same(actual: np.ndarray, expected: np.ndarray, label: str = "") -> None:
    """Equal dtype, shape and bits (NaNs compare equal to NaNs; +0 and -0 differ)."""
    assert actual.dtype == expected.dtype, f"{label}: dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_array_equal(actual, expected, err_msg=label, strict=True)
    if actual.dtype.kind == "f":
        bits = np.dtype(f"u{actual.dtype.itemsize}")
        keep = ~np.isnan(expected)
        np.testing.assert_array_equal(
            actual[keep].view(bits), expected[keep].view(bits), err_msg=f"{label} (bits)"
        )


def assert_problems_equal(actual: Problem, expected: Problem, context: str = "") -> None:
    """Every array of two problems is bit-identical."""
    pairs = zip(actual.arrays(), expected.arrays(), strict=True)
    for (label, a), (label_b, b) in pairs:
        assert label == label_b
        assert_same(a, b, f"{context} {label}".strip())


def run_equivalence(
    kernel: str,
    hp: dict[str, object],
    shapes: Iterable[tuple[int, ...]],
    dtypes=np.float32,
    *,
    n_steps: int = 10,
    none_at: Iterable[int] = (),
    seed: int = 0,
    state: str | float = "zeros",
    start_steps: Iterable[int] | int = 0,
) -> tuple[Problem, Problem]:
    """Step a problem ``n_steps`` times with both backends on the same fresh random gradients
    (``None`` at ``none_at`` on even steps) and assert bit-identical results after every step.
    The gradients must come back unchanged. Returns the (native, reference) problems."""
    ours = Problem.build(
        kernel, hp, shapes, dtypes, seed=seed, state=state, start_steps=start_steps
    )
    theirs = ours.copy()
    rng = np.random.default_rng(seed + 1)
    none_at = tuple(none_at)
    for k in range(n_steps):
        grads = ours.random_grads(rng, none_at=none_at if k % 2 == 0 else ())
        before = [None if g is None else g.copy() for g in grads]
        ours.step("native", grads)
        theirs.step("reference", grads)
        for g, b in zip(grads, before, strict=True):
            if g is not None:
                assert_same(g, b, "gradient was modified")
        assert_problems_equal(ours, theirs, f"{kernel} {hp} step {k}:")
    return ours, theirs


def random_arrays(shapes: Iterable[tuple[Any, Any]], seed: int, scale: float = 1) -> list:
    """``scale`` times standard normal draws of each ``(shape, dtype)``, from one seeded
    generator."""
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(s)).astype(d) for s, d in shapes]


def load_golden(name: str, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of ``tests/data/<name>`` whose keys start with ``prefix`` (stripped), loaded
    without pickle."""
    with np.load(DATA_DIR / name, allow_pickle=False) as data:
        return {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}


def arrays_in(*objects: object) -> list[np.ndarray]:
    """Every ndarray reachable from ``objects`` through lists, tuples and dict values."""
    found: list[np.ndarray] = []

    def visit(obj: object) -> None:
        if isinstance(obj, np.ndarray):
            found.append(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, list | tuple):
            for item in obj:
                visit(item)

    for obj in objects:
        visit(obj)
    return found


def snapshot(*objects: object) -> list[tuple[np.ndarray, bytes, bool]]:
    """The bytes (and writeable flag) of every ndarray found in ``objects`` (:func:`arrays_in`)."""
    return [(a, a.tobytes(), a.flags.writeable) for a in arrays_in(*objects)]


def assert_unchanged(saved: list[tuple[np.ndarray, bytes, bool]]) -> None:
    """No array of a :func:`snapshot` was modified."""
    for k, (array, data, writeable) in enumerate(saved):
        assert array.tobytes() == data, f"array #{k} ({array.dtype}{array.shape}) was modified"
        assert array.flags.writeable == writeable


def config_id(hp: dict[str, object]) -> str:
    """A short test id for the options that differ from the defaults."""
    parts = []
    for key, value in hp.items():
        if value is True:
            parts.append(key)
        elif value is not False:
            parts.append(f"{key}={value}")
    return "-".join(parts)


def product(**choices: Iterable[object]) -> Iterator[dict[str, object]]:
    """Every combination of the given choices, as dicts."""
    keys = list(choices)
    for values in itertools.product(*(choices[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def _restoring(get: Callable[[], Any], set_: Callable[[Any], None]) -> Iterator[None]:
    """Yield once, then put back the setting ``get()`` returned before."""
    original = get()
    try:
        yield
    finally:
        set_(original)


@pytest.fixture
def restore_simd_level() -> Iterator[None]:
    """Restore the native SIMD level after the test."""
    yield from _restoring(native.simd_level, native.set_simd_level)


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` during the test, as in an interactive session, even
    when the test run was started with SIGINT ignored (a shell's background job: Python then
    leaves it ignored); the handler found is put back afterwards."""
    original = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, original)


@pytest.fixture
def restore_num_threads() -> Iterator[None]:
    """Restore the native thread count after the test."""
    yield from _restoring(native.get_num_threads, native.set_num_threads)


@pytest.fixture(params=native.supported_simd_levels())
def simd_level(request: pytest.FixtureRequest, restore_simd_level: None) -> str:
    """Run the test at each supported SIMD level (restored afterwards)."""
    native.set_simd_level(request.param)
    assert native.simd_level() == request.param
    return str(request.param)


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def num_threads(request: pytest.FixtureRequest, restore_num_threads: None) -> int:
    """Run the test with 1 and 2 kernel threads (restored afterwards)."""
    native.set_num_threads(request.param)
    assert native.get_num_threads() == request.param
    return int(request.param)


def fuzz_settings(default_examples: int) -> settings:
    """Hypothesis settings of the fuzz tests: ``FERROPTIM_FUZZ_EXAMPLES`` examples (else
    ``default_examples``), no deadline, large and slow examples allowed."""
    return settings(
        max_examples=int(os.environ.get("FERROPTIM_FUZZ_EXAMPLES", str(default_examples))),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def dump_outcomes(env: str, outcomes: Mapping[str, int]) -> None:
    """Write a fuzz module's outcome counts as JSON where environment variable ``env`` says (for
    the README); nothing without it."""
    path = os.environ.get(env)
    if path:
        with open(path, "w") as f:
            json.dump(dict(sorted(outcomes.items())), f, indent=1)


def outcome_report(env: str, outcomes: Mapping[str, int]) -> Any:
    """A fuzz module's ``report_counts`` fixture (module scope, autouse): once the module's tests
    ran, :func:`dump_outcomes` writes ``outcomes`` where ``env`` says."""

    @pytest.fixture(scope="module", autouse=True)
    def report_counts() -> Iterator[None]:
        yield
        dump_outcomes(env, outcomes)

    return report_counts


@dataclass(frozen=True)
class FuzzArraySpec:
    """Everything a fuzz test needs to build one array argument again, identically: its shape,
    dtype and layout names, the seed of its values and the ``(flat position, value)`` specials
    written into it. Each fuzz module subclasses it with its own fields and ``build``."""

    shape: tuple[int, ...]
    dtype: str
    layout: str
    seed: int
    specials: tuple[tuple[int, float], ...]


def wait_for_child(pid: int, timeout: float) -> int | None:
    """The exit code of child ``pid``, or None if it is still running after ``timeout`` seconds
    (it is then killed and reaped): a hang is reported instead of hanging the test run."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.001)


def optimizer_configs() -> list[tuple[type, dict[str, object]]]:
    """Every optimizer class with options that switch on its state (for tests that run each
    optimizer once: checkpoints, copies): ``CLASS_CASES``, from the registry."""
    return list(CLASS_CASES)


def functional_case(spec: registry.OptimizerSpec) -> tuple[list[str], dict[str, object]]:
    """``ferroptim.functional``'s call of ``spec`` with every state list given: the state list
    names in call order, and keyword arguments (step 2 where the step counts, the options that
    turn the remaining lists on, some weight decay)."""
    kwargs: dict[str, object] = {"weight_decay": 0.1}
    if spec.steps != "none":
        kwargs["step"] = 2
    for state in spec.states:
        if state.optional and state.flag is None:
            kwargs[state.condition.split()[0]] = 0.9
    return [s.kernel_arg for s in spec.states], kwargs

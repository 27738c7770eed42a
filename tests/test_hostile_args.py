"""Hostile hyperparameters and hostile lists, for every public entry point and both backends.

Every scalar hyperparameter of the functional steps, the optimizer classes, clipping and batch
norm gets each value of :data:`HOSTILE`; every list argument gets each shape of :data:`LISTS`.
The call must either succeed or raise TypeError/ValueError naming the argument (in the message,
or in the PEP 678 note PyO3 adds: "while processing 'max_norm'"), with every array unchanged.
The only other exception allowed is Python's own OverflowError for an int too large for a float.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import ferroptim as fo
from conftest import assert_unchanged, snapshot
from ferroptim import _registry as registry
from ferroptim import batchnorm as bn
from ferroptim import clip
from ferroptim import functional as F

BACKENDS = ("native", "reference")
NAN, INF = float("nan"), float("inf")

# value -> the outcome for a hyperparameter that must be a finite real >= 0
HOSTILE: dict[str, tuple[object, object]] = {
    "nan": (NAN, ValueError),
    "inf": (INF, ValueError),
    "-inf": (-INF, ValueError),
    "negative": (-1.0, ValueError),
    "str": ("0.1", TypeError),
    "None": (None, TypeError),
    "list": ([0.1], TypeError),
    "complex": (0.1 + 0j, TypeError),
    "object": (object(), TypeError),
    "2-elem array": (np.array([0.1, 0.2]), TypeError),
    "np.float32": (np.float32(0.25), "ok"),
    "np.float64": (np.float64(0.25), "ok"),
    "np.int64": (np.int64(0), "ok"),
    # Python's float() raises OverflowError; the native binding names the argument in a note
    "huge int": (10**400, (OverflowError, ValueError)),
    "bool": (True, "bool"),
}

# kernel: (function, its positional state arguments: a state list's name, "none" for a list a flag
# turns on (passed as None), "mu" for a per-tensor scalar array)
FUNCTIONS = {
    s.kernel: (
        getattr(F, s.kernel_name),
        ["none" if st.flag else st.kernel_arg for st in s.states] + ["mu" for _ in s.scalars],
    )
    for s in registry.SPECS
}
CLASSES = tuple(s.name for s in registry.OPTIMIZERS)
BETAS_KERNELS = [s.kernel for s in registry.SPECS if any(h.kind == "betas" for h in s.hypers)]


def real_keywords(function) -> list[str]:
    """Keyword arguments whose default is a float (the real hyperparameters)."""
    sig = inspect.signature(function)
    return [
        n
        for n, p in sig.parameters.items()
        if isinstance(p.default, float) and not isinstance(p.default, bool)
    ]


def flag_keywords(function) -> list[str]:
    sig = inspect.signature(function)
    return [n for n, p in sig.parameters.items() if isinstance(p.default, bool)]


def arrays(n: int = 2, shape=(5,), seed=0, dtype=np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(n)]


def functional_args(name: str) -> tuple[list, dict]:
    _, states = FUNCTIONS[name]
    args = [arrays(seed=1), arrays(seed=2)]
    for k, s in enumerate(states):
        kinds = {"mu": lambda: np.ones(2, np.float32), "none": lambda: None}
        args.append(kinds.get(s, lambda k=k: arrays(seed=3 + k))())
    kwargs = {"step": 2} if "step" in inspect.signature(FUNCTIONS[name][0]).parameters else {}
    for state in registry.by_kernel(name).states:
        if state.optional and state.flag is None:  # with its list (SGD: so that dampening is used)
            kwargs[state.condition.split()[0]] = 0.9
    return args, kwargs


def names_argument(error: BaseException, name: str) -> bool:
    text = " ".join([str(error), *getattr(error, "__notes__", [])])
    return name.split("[")[0] in text


def expect(call, saved, outcome, name: str, *, bool_ok: bool) -> None:
    """Run ``call`` and check ``outcome`` ("ok", an exception type, or "bool")."""
    if outcome == "bool":
        outcome = "ok" if bool_ok else TypeError
    if outcome == "ok":
        call()
        return
    with pytest.raises(outcome) as info:
        call()
    if not isinstance(info.value, OverflowError):  # float(10**400) in Python code: no name
        assert names_argument(info.value, name), f"{info.value!r} does not name {name}"
    assert_unchanged(saved)


def functional_cases():
    for name, (function, _) in FUNCTIONS.items():
        for kw in real_keywords(function):
            yield pytest.param(name, kw, id=f"{name}-{kw}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", list(HOSTILE), ids=str)
@pytest.mark.parametrize(("name", "kw"), list(functional_cases()))
def test_functional_hyperparameter(name, kw, value, backend):
    function, _ = FUNCTIONS[name]
    args, kwargs = functional_args(name)
    kwargs.pop(kw, None)
    v, outcome = HOSTILE[value]
    if kw == "dampening" and value == "negative":
        outcome = "ok"  # torch does not check dampening either
    if kw == "momentum" and outcome == "ok":
        # momentum buffers are passed exactly when the momentum is nonzero
        buffers = arrays(seed=9) if float(v) != 0.0 else None
        args[2 + FUNCTIONS[name][1].index("momentum_buffers")] = buffers
    saved = snapshot(args)
    call = lambda: function(*args, backend=backend, **kwargs, **{kw: v})  # noqa: E731
    expect(call, saved, outcome, kw, bool_ok=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "betas",
    [(NAN, 0.9), (0.9, INF), (1.0, 0.9), (0.9, -0.1), (0.9,), (0.9, 0.9, 0.9), "ab", None, 0.9],
    ids=str,
)
@pytest.mark.parametrize("name", BETAS_KERNELS)
def test_functional_betas(name, betas, backend):
    function, _ = FUNCTIONS[name]
    args, kwargs = functional_args(name)
    saved = snapshot(args)
    with pytest.raises((TypeError, ValueError)) as info:
        function(*args, backend=backend, betas=betas, **kwargs)
    assert "betas" in str(info.value)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", ["yes", 1, None, 1.0, np.array(True)], ids=repr)
@pytest.mark.parametrize(
    ("name", "kw"),
    [(n, kw) for n, (f, _) in FUNCTIONS.items() for kw in flag_keywords(f)],
)
def test_functional_flags_must_be_bools(name, kw, value, backend):
    function, _ = FUNCTIONS[name]
    args, kwargs = functional_args(name)
    saved = snapshot(args)
    with pytest.raises(TypeError) as info:
        function(*args, backend=backend, **kwargs, **{kw: value})
    assert names_argument(info.value, kw)
    assert_unchanged(saved)


@pytest.mark.parametrize(
    "step",
    [0, -1, 1.5, 2.0, "1", None, True, [1, 2, 3], [[1, 1]], 2**63, np.uint64(2**64 - 1)],
    ids=repr,
)
def test_functional_step_counts(step):
    args, _ = functional_args("adam")
    saved = snapshot(args)
    with pytest.raises(ValueError, match="step"):
        F.adam_step(*args, step=step)
    assert_unchanged(saved)


# ------------------------------------------------------------------------------ classes


def class_cases():
    for name in CLASSES:
        cls = getattr(fo.optim, name)
        kws = [*real_keywords(cls.__init__), "max_grad_norm", "clip_value"]
        for kw in kws:
            yield pytest.param(name, kw, id=f"{name}-{kw}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", list(HOSTILE), ids=str)
@pytest.mark.parametrize(("name", "kw"), list(class_cases()))
def test_class_hyperparameter(name, kw, value, backend):
    cls = getattr(fo.optim, name)
    params, grads = arrays(seed=1), arrays(seed=2)
    v, outcome = HOSTILE[value]
    if kw == "dampening" and value == "negative":
        outcome = "ok"  # torch does not check dampening either
    if kw in ("max_grad_norm", "clip_value") and value == "None":
        outcome = "ok"  # the documented "no clipping"
    if kw == "max_grad_norm" and outcome == "ok" and v is not None and float(v) == 0.0:
        outcome = ValueError  # must be > 0
    saved = snapshot(params, grads)

    def call():
        opt = cls(params, backend=backend, **{kw: v})
        opt.step(grads)

    if outcome == "ok":
        call()
        for p in params:
            assert np.all(np.isfinite(p)) or kw == "lr"
        return
    expect(call, saved, outcome, kw, bool_ok=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [NAN, -1.0, "x", [1.0], 2 + 0j], ids=repr)
def test_class_group_option_changed_between_steps(value, backend):
    """A bad value written into ``param_groups`` is refused at the next step, untouched arrays."""
    params, grads = arrays(seed=1), arrays(seed=2)
    opt = fo.optim.Adam(params, backend=backend)
    opt.step(grads)
    opt.param_groups[0]["lr"] = value
    saved = snapshot(params, grads, [a for s in opt.state.values() for a in s.values()])
    with pytest.raises((TypeError, ValueError), match="lr"):
        opt.step(grads)
    assert_unchanged(saved)


# ------------------------------------------------------------------------------ clip, batch norm

CLIP_SCALARS = {
    "max_norm": lambda g, v, b: clip.clip_grad_norm_(g, v, backend=b),
    "max_norm ": lambda g, v, b: clip.clip_grad_norm_per_tensor_(g, v, backend=b),
    "norm_type": lambda g, v, b: clip.clip_grad_norm_(g, 1.0, v, backend=b),
    "clip_value": lambda g, v, b: clip.clip_grad_value_(g, v, backend=b),
    "clip_value ": lambda g, v, b: clip.global_norm(g, 2.0, v, backend=b),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", list(HOSTILE), ids=str)
@pytest.mark.parametrize("kw", list(CLIP_SCALARS))
def test_clip_scalar(kw, value, backend):
    grads = arrays(seed=1)
    v, outcome = HOSTILE[value]
    if kw.strip() in ("max_norm", "norm_type") and outcome == "ok" and float(v) == 0.0:
        outcome = ValueError  # must be > 0
    if kw == "norm_type" and value == "inf":
        outcome = "ok"  # the max norm
    if kw == "clip_value " and value == "None":
        outcome = "ok"  # global_norm's "no clamping"
    saved = snapshot(grads)
    # torch takes any real here, bools included (True == 1.0)
    expect(lambda: CLIP_SCALARS[kw](grads, v, backend), saved, outcome, kw.strip(), bool_ok=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", list(HOSTILE), ids=str)
@pytest.mark.parametrize("kw", ["momentum", "eps"])
def test_batchnorm_scalar(kw, value, backend):
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    running = [np.zeros(3, np.float32), np.ones(3, np.float32)]
    v, outcome = HOSTILE[value]
    if kw == "momentum" and value == "None":
        outcome = ValueError  # cumulative average needs num_batches_tracked
    saved = snapshot(x, running)
    expect(
        lambda: bn.batch_norm_forward(x, *running, backend=backend, **{kw: v}),
        saved,
        outcome,
        kw,
        bool_ok=kw == "eps",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_error_if_nonfinite_must_be_bool(backend):
    grads = arrays(seed=1)
    saved = snapshot(grads)
    with pytest.raises(TypeError) as info:
        clip.clip_grad_norm_(grads, 1.0, 2.0, "yes", backend=backend)
    assert names_argument(info.value, "error_if_nonfinite")
    assert_unchanged(saved)


# ------------------------------------------------------------------------------ lists

LISTS = {
    "generator": (lambda a: (x for x in a), TypeError),
    "dict": (lambda a: dict(enumerate(a)), TypeError),
    "set": (lambda a: {1, 2}, TypeError),
    "nested list": (lambda a: [a], (TypeError, ValueError)),
    "int item": (lambda a: [a[0], 3], TypeError),
    "list item": (lambda a: [a[0], a[1].tolist()], TypeError),
    "short": (lambda a: a[:1], ValueError),
    "long": (lambda a: [*a, a[0].copy()], ValueError),
    "empty": (lambda a: [], ValueError),
    "single ndarray": (lambda a: np.stack(a), TypeError),
    "str": (lambda a: "ab", TypeError),
    "int": (lambda a: 7, TypeError),
    "tuple": (lambda a: tuple(a), "ok"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(LISTS), ids=str)
@pytest.mark.parametrize("role", [0, 1, 2], ids=["params", "grads", "state"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functional_lists(name, role, shape, backend):
    function, _ = FUNCTIONS[name]
    args, kwargs = functional_args(name)
    if name == "sgd":
        args[2] = arrays(seed=9)
        kwargs["momentum"] = 0.9
    make, outcome = LISTS[shape]
    if shape == "empty" and role == 0:
        outcome = ValueError  # two grads for no params
    args[role] = make(args[role])
    saved = snapshot(args)
    if outcome == "ok":
        function(*args, backend=backend, **kwargs)
        return
    with pytest.raises(outcome):
        function(*args, backend=backend, **kwargs)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(LISTS), ids=str)
def test_class_step_lists(shape, backend):
    params, grads = arrays(seed=1), arrays(seed=2)
    opt = fo.optim.Adam(params, backend=backend)
    opt.step(grads)
    make, outcome = LISTS[shape]
    if shape in ("generator", "set", "dict"):
        # step() accepts any iterable of gradients, as torch takes any sequence of tensors;
        # a dict iterates its keys (ints) and a set its ints: refused item by item.
        outcome = "ok" if shape == "generator" else TypeError
    bad = make(grads)
    saved = snapshot(params, grads, [a for s in opt.state.values() for a in s.values()])
    if outcome == "ok":
        opt.step(bad)
        return
    with pytest.raises(outcome):
        opt.step(bad)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(LISTS), ids=str)
def test_clip_lists(shape, backend):
    grads = arrays(seed=1)
    make, outcome = LISTS[shape]
    if shape == "short" or shape == "long":
        outcome = "ok"  # any number of gradients
    bad = make(grads)
    saved = snapshot(grads)
    if outcome == "ok":
        clip.clip_grad_norm_(bad, 0.5, backend=backend)
        return
    with pytest.raises(outcome, match="grads"):
        clip.clip_grad_norm_(bad, 0.5, backend=backend)
    assert_unchanged(saved)


def test_hostile_values_cover_every_category():
    """The table above has the non-finite, wrong-type and numpy-scalar categories."""
    values = [v for v, _ in HOSTILE.values()]
    assert any(isinstance(v, float) and math.isnan(v) for v in values)
    assert {type(v) for v in values} >= {float, str, type(None), list, complex, bool, np.float32}

"""Every kind of array (``array_kinds.KINDS``) in every array role of every public API.

For each (API, role, kind), with the odd array at index 1 of two tensors (so a kernel that wrote
tensor 0 before checking tensor 1 would be caught):

- outcome ``"works"``: the call gives bit for bit the result of the same call on C-contiguous
  copies, and an updated argument is updated *in place*: the caller's object (a view, a memmap,
  a subclass) holds the result, it was not silently copied;
- outcome ``TypeError``/``ValueError``: that exception, with a message naming the argument and
  index (``params[1]``), and every byte of every argument unchanged.

Both backends are held to the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import ferroptim as fo
from array_kinds import KINDS, WORKS, Kind, memmap, raw_bytes, same_bits
from conftest import CLASS_CASES, functional_case
from ferroptim import _registry as registry
from ferroptim import batchnorm as bn
from ferroptim import clip
from ferroptim import functional as F

BACKENDS = ("native", "reference")
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
SHAPE = (3, 4)
Make = Callable[[np.ndarray], object]


def values(shape: tuple[int, ...], seed: int, dtype=np.float32, *, positive=False) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.asarray(np.abs(v) if positive else v, dtype)  # (0-d arithmetic gives scalars)


@dataclass
class Prepared:
    """A call ready to run: ``run()`` returns the call's result; ``outputs`` are every argument
    array, labelled, that must hold the result afterwards (or be unchanged after an error)."""

    run: Callable[[], object]
    outputs: list[tuple[str, object]]


def _arrays(prepared: Prepared, result: object) -> list[tuple[str, object]]:
    out = list(prepared.outputs)
    items = result if isinstance(result, tuple | list) else [result]
    for k, r in enumerate(items):
        if isinstance(r, np.ndarray | float | int):
            out.append((f"result[{k}]", np.asarray(r)))
        elif isinstance(r, bn.BatchNormCache):
            out += [("cache.mean", r.mean), ("cache.invstd", r.invstd)]
    return out


# ------------------------------------------------------------------------------ functional steps

# name: (function, state lists in call order, keyword arguments)
FUNCTIONAL = {
    s.kernel: (getattr(F, s.kernel_name), *functional_case(s), s.scalars) for s in registry.SPECS
}


def functional_call(
    name: str, role: str, make: Make, shape: tuple[int, ...], backend: str
) -> Prepared | None:
    """Two tensors; the array at ``role``[1] is built by ``make``."""
    function, state_names, kwargs, scalars = FUNCTIONAL[name]
    lists = {"params": [values(shape, i) for i in range(2)]}
    lists["grads"] = [values(shape, 10 + i) for i in range(2)]
    for s, state in enumerate(state_names):
        lists[state] = [values(shape, 20 + 2 * s + i, positive=True) for i in range(2)]
    odd = make(lists[role][1])
    if odd is None:
        return None
    lists[role][1] = odd
    args = [lists["params"], lists["grads"], *(lists[s] for s in state_names)]
    outputs = [(f"{r}[{i}]", a) for r, arrays in lists.items() for i, a in enumerate(arrays)]
    for scalar in scalars:
        args.append(np.array([0.9, 0.8], np.float32))
        outputs.append((scalar.kernel_arg, args[-1]))
    return Prepared(lambda: function(*args, backend=backend, **kwargs), outputs)


def functional_cases():
    for name, (_, states, _, _) in FUNCTIONAL.items():
        for role, written in (("params", True), ("grads", False), (states[0], True)):
            yield pytest.param(name, role, written, id=f"{name}-{role}")


# ------------------------------------------------------------------------------ optimizer classes

CLASSES = {cls.__name__: kwargs for cls, kwargs in CLASS_CASES}


def class_call(
    name: str, role: str, make: Make, shape: tuple[int, ...], backend: str
) -> Prepared | None:
    """An optimizer over two params, stepped twice; ``role`` is ``params`` (the kind is given to
    the constructor) or ``grads`` (the kind is the second step's gradient)."""
    params = [values(shape, i) for i in range(2)]
    grads = [values(shape, 10 + i) for i in range(2)]
    odd = make((params if role == "params" else grads)[1])
    if odd is None:
        return None
    if role == "params":
        params[1] = odd
    cls = getattr(fo.optim, name)

    def run():
        opt = cls(params, backend=backend, **CLASSES[name])
        assert all(a is b for a, b in zip(opt.param_groups[0]["params"], params, strict=True))
        opt.step(grads)
        opt.step([grads[0], odd] if role == "grads" else grads)
        return _state_values(opt)

    if role == "grads":
        outputs = [("params[0]", params[0]), ("params[1]", params[1]), ("grads[1]", odd)]
        return Prepared(_second_step_only(cls, params, grads, odd, backend, name), outputs)
    return Prepared(run, [("params[0]", params[0]), ("params[1]", params[1])])


def _second_step_only(cls, params, grads, odd, backend, name):
    """Construct and take a first (valid) step now; the prepared call is the second step, so an
    error must leave the params and the state of the first step unchanged."""
    opt = cls(params, backend=backend, **CLASSES[name])
    opt.step(grads)

    def run():
        before = _state_bytes(opt)
        try:
            opt.step([grads[0], odd])
        except (TypeError, ValueError):
            assert _state_bytes(opt) == before, "optimizer state changed by a refused step"
            raise
        return _state_values(opt)

    return run


def _state_values(opt) -> list[np.ndarray]:
    """Every state value (arrays and step counts) of ``opt``, in a fixed order."""
    state = opt.state_dict()["state"]
    return [np.asarray(state[i][k]) for i in sorted(state) for k in sorted(state[i])]


def _state_bytes(opt) -> list:
    state = opt.state_dict()["state"]
    return [
        (i, k, v.tobytes() if isinstance(v, np.ndarray) else v)
        for i in sorted(state)
        for k, v in sorted(state[i].items())
    ]


# ------------------------------------------------------------------------------ clipping

CLIPS = {
    "clip_grad_norm_": (lambda g, b: clip.clip_grad_norm_(g, 0.5, backend=b), True),
    "clip_grad_norm_per_tensor_": (
        lambda g, b: clip.clip_grad_norm_per_tensor_(g, 0.5, backend=b),
        True,
    ),
    "clip_grad_value_": (lambda g, b: clip.clip_grad_value_(g, 0.3, backend=b), True),
    "global_norm": (lambda g, b: clip.global_norm(g, 3.0, backend=b), False),
    "tensor_norms": (lambda g, b: clip.tensor_norms(g, float("inf"), backend=b), False),
}


def clip_call(
    name: str, role: str, make: Make, shape: tuple[int, ...], backend: str
) -> Prepared | None:
    grads = [values(shape, i) for i in range(2)]
    odd = make(grads[1])
    if odd is None:
        return None
    grads[1] = odd
    function, _ = CLIPS[name]
    return Prepared(lambda: function(grads, backend), [("grads[0]", grads[0]), ("grads[1]", odd)])


# ------------------------------------------------------------------------------ batch norm


def batchnorm_call(
    name: str, role: str, make: Make, shape: tuple[int, ...], backend: str
) -> Prepared | None:
    """Batch norm in training with running statistics and affine weights. ``role`` is ``x``,
    ``running_mean`` or ``weight`` (the call is the forward pass) or ``dy`` (the forward pass runs
    now; the call is the backward pass). ``shape`` is the shape of the ``role`` array."""
    channels = 4
    x_shape = shape if role in ("x", "dy") else SHAPE
    arrays = {
        "x": values(x_shape, 1),
        "running_mean": values((channels,), 2),
        "running_var": values((channels,), 3, positive=True),
        "weight": values((channels,), 4),
        "bias": values((channels,), 5),
    }
    if role != "dy":
        odd = make(arrays[role])
        if odd is None:
            return None
        arrays[role] = odd
    a = arrays

    def forward():
        return bn.batch_norm_forward(
            a["x"], a["running_mean"], a["running_var"], a["weight"], a["bias"], backend=backend
        )

    if role != "dy":
        return Prepared(forward, list(arrays.items()))
    y, cache = forward()
    dy = make(values(x_shape, 6))
    if dy is None:
        return None
    outputs = [*arrays.items(), ("y", y), ("dy", dy)]
    return Prepared(lambda: bn.batch_norm_backward(dy, cache, backend=backend), outputs)


BATCHNORM_ROLES = {"x": False, "running_mean": True, "weight": False, "dy": False}


def shape_of(k: Kind) -> tuple[int, ...]:
    """The shape kind ``k`` is tested with."""
    return SHAPE if k.shape is None else k.shape


def batchnorm_shape(k: Kind, role: str) -> tuple[int, ...] | None:
    """The shape the kind is tried with in ``role`` (None: the kind does not apply there)."""
    if role == "x":
        return shape_of(k)
    return None if k.shape is not None else (SHAPE if role == "dy" else (4,))


def batchnorm_outcome(k: Kind, role: str) -> str | type[Exception]:
    """Batch norm needs at least 2 dimensions and one value per channel in its input."""
    if role == "x" and k.shape is not None:
        return ValueError
    return k.written if BATCHNORM_ROLES[role] else k.read


# ------------------------------------------------------------------------------ the check


def check(prepare, api: str, role: str, k: Kind, outcome, shape, backend: str, label: str) -> None:
    odd = prepare(api, role, k.make, shape, backend)
    if odd is None:
        pytest.skip(f"no {k.name} array of shape {shape}")
    if outcome == WORKS:
        expected = prepare(api, role, np.copy, shape, backend)
        want = _arrays(expected, expected.run())
        got = _arrays(odd, odd.run())
        assert [label for label, _ in got] == [label for label, _ in want]
        for (label, g), (_, w) in zip(got, want, strict=True):
            assert same_bits(g, np.asarray(w)), f"{label} differs from the contiguous case"
        return
    before = [(label, raw_bytes(obj)) for label, obj in odd.outputs]
    with pytest.raises(outcome) as info:
        odd.run()
    assert label in str(info.value), f"the message does not name {label}: {info.value}"
    after = [(label, raw_bytes(obj)) for label, obj in odd.outputs]
    assert after == before, "an argument was modified by a refused call"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(("api", "role", "written"), list(functional_cases()))
def test_functional_step(api, role, written, k, backend):
    outcome = k.written if written else k.read
    check(functional_call, api, role, k, outcome, shape_of(k), backend, f"{role}[1]")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("role", ["params", "grads"])
@pytest.mark.parametrize("api", list(CLASSES))
def test_optimizer_class(api, role, k, backend):
    outcome = k.written if role == "params" else k.read
    check(class_call, api, role, k, outcome, shape_of(k), backend, f"{role}[1]")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("api", list(CLIPS))
def test_clip(api, k, backend):
    outcome = k.written if CLIPS[api][1] else k.read
    check(clip_call, api, "grads", k, outcome, shape_of(k), backend, "grads[1]")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("role", list(BATCHNORM_ROLES))
def test_batchnorm(role, k, backend):
    shape = batchnorm_shape(k, role)
    if shape is None:
        pytest.skip(f"{k.name} is tested on x only (the forward pass refuses it)")
    outcome = batchnorm_outcome(k, role)
    check(batchnorm_call, "batch_norm", role, k, outcome, shape, backend, role)


@pytest.mark.parametrize("backend", BACKENDS)
def test_memmap_param_is_written_to_its_file(backend):
    """A writeable memmap parameter is updated in place: the file holds the new values."""
    start = values(SHAPE, 0)
    mapped = memmap(start)
    opt = fo.optim.Adam([mapped], lr=0.1, backend=backend)
    opt.step([values(SHAPE, 1)])
    mapped.flush()
    on_disk = np.fromfile(mapped.filename, dtype=np.float32).reshape(SHAPE)
    assert not np.array_equal(on_disk, start)
    np.testing.assert_array_equal(on_disk, np.asarray(mapped))
    assert opt.param_groups[0]["params"][0] is mapped


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_array_mask_is_ignored(backend):
    """The mask of a masked parameter is ignored: every element of the data is updated (as
    documented; the optimizers have no notion of masked elements)."""
    p = np.ma.masked_array(np.ones(4, np.float32), mask=[True, False, True, False])
    F.sgd_step([p], [np.ones(4, np.float32)], lr=0.5, backend=backend)
    np.testing.assert_array_equal(p.data, np.full(4, 0.5, np.float32))
    assert list(p.mask) == [True, False, True, False]


@pytest.mark.parametrize("backend", BACKENDS)
def test_view_param_updates_its_base(backend):
    """A contiguous view (a row of a larger array) is updated in place in its base."""
    base = np.ones((3, 4), np.float32)
    row = base[1]
    F.sgd_step([row], [np.ones(4, np.float32)], lr=0.25, backend=backend)
    np.testing.assert_array_equal(base[1], np.full(4, 0.75, np.float32))
    np.testing.assert_array_equal(base[[0, 2]], np.ones((2, 4), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_matrix_output_is_written_in_place(backend):
    """np.matrix input and ``out`` arrays work in both passes: the caller's matrix receives the
    result (no silent copy), bit for bit that of plain arrays."""
    x, dy = values(SHAPE, 1), values(SHAPE, 2)
    y_plain, cache_plain = bn.batch_norm_forward(x, None, None, backend=backend)
    dx_plain, _, _ = bn.batch_norm_backward(dy, cache_plain, backend=backend)

    y_out = np.asmatrix(np.zeros(SHAPE, np.float32))
    y, cache = bn.batch_norm_forward(np.asmatrix(x), None, None, out=y_out, backend=backend)
    assert y is y_out
    assert same_bits(np.asarray(y_out), y_plain)
    dx_out = np.asmatrix(np.zeros(SHAPE, np.float32))
    dx, _, _ = bn.batch_norm_backward(np.asmatrix(dy), cache, out=dx_out, backend=backend)
    assert dx is dx_out
    assert same_bits(np.asarray(dx_out), dx_plain)

"""Hypothesis fuzzing of the Python API: no crash, no undefined behaviour, no partial update.

Each example draws a call of random shape: the function (every optimizer kernel, the optimizer
classes, every clipping function, batch norm), array dtypes (valid and invalid), shapes (0-d and
empty included), memory layouts (strided, transposed, negative strides, misaligned, read-only,
Fortran, plain lists), values (normal, zero, -0, nan, +-inf, huge, subnormal), hyperparameters
(finite and not, negative, huge, wrong types), list lengths and ``None`` gradients. The call is
built twice from the same description and run once per backend. The invariant:

- either both backends succeed and every written array is bit for bit the same (NaN-aware);
- or both raise the same exception, a TypeError or ValueError (OverflowError only for an int too
  large for a float), and every byte of every argument is unchanged.

Any other exception fails the example; a crash would kill the run. ``FERROPTIM_FUZZ_EXAMPLES``
sets the examples per test (default 250); ``FERROPTIM_FUZZ_REPORT`` names a JSON file that gets
the number of examples run and how they ended.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferroptim as fo
import ferroptim._native as native
import ferroptim.reference as reference
from conftest import DEFAULTS, KERNELS, FuzzArraySpec, fuzz_settings, outcome_report, slot_layout
from ferroptim import _registry as registry
from ferroptim import batchnorm as bn
from ferroptim import clip

FUZZ = fuzz_settings(250)
ALLOWED = (TypeError, ValueError, OverflowError)
# NumPy warns about the overflows and NaNs the hostile values produce on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
OUTCOMES: collections.Counter = collections.Counter()
#: writes the example counts where ``FERROPTIM_FUZZ_REPORT`` says (for the README)
report_counts = outcome_report("FERROPTIM_FUZZ_REPORT", OUTCOMES)


# ------------------------------------------------------------------------------ arrays

DTYPES = ("float32", "float64", "float16", "int32", ">f4", ">f8", "object", "bool")
VALID_DTYPES = ("float32", "float64")
LAYOUTS = ("c", "sliced", "transposed", "negative", "misaligned", "readonly", "fortran", "list")
SPECIALS = (0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, 1e-40, 1e300)


@dataclass(frozen=True)
class ArraySpec(FuzzArraySpec):
    """One array argument; ``nonnegative``: take absolute values (an argument that must be >= 0)."""

    nonnegative: bool = False

    def build(self) -> object:
        rng = np.random.default_rng(self.seed)
        values = rng.standard_normal(self.shape)
        flat = values.reshape(-1)
        for position, value in self.specials:
            if flat.size:
                flat[position % flat.size] = value
        if self.nonnegative:
            values = np.abs(values)
        with np.errstate(all="ignore"):
            data = np.asarray(values).astype(self.dtype)
        return lay_out(data, self.layout)


def lay_out(data: np.ndarray, layout: str) -> object:
    """``data`` (C-contiguous) in ``layout``, same values."""
    if layout == "c":
        return data
    if layout == "list":
        return data.tolist()
    if layout == "readonly":
        data.flags.writeable = False
        return data
    if layout == "sliced":
        base = np.zeros((*data.shape, 2), data.dtype)
        view = base[..., 0]
    elif layout == "transposed":
        view = np.zeros(data.shape[::-1], data.dtype).T
    elif layout == "negative" and data.ndim:
        view = np.zeros(data.shape, data.dtype)[(..., slice(None, None, -1))]
    elif layout == "fortran":
        view = np.zeros(data.shape, data.dtype, order="F")
    elif layout == "misaligned" and data.dtype.itemsize > 1 and data.dtype != object:
        buffer = bytearray(data.dtype.itemsize * data.size + 1)
        view = np.ndarray(data.shape, data.dtype, buffer=buffer, offset=1)
    else:
        return data
    view[...] = data
    return view


SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)


def special_lists(specials=SPECIALS):
    return st.lists(st.tuples(st.integers(0, 200), st.sampled_from(specials)), max_size=3)


@st.composite
def array_specs(
    draw, shape, dtype=None, *, nonnegative=False, hostile=0.15, specials=SPECIALS
) -> ArraySpec:
    """An array of ``shape``; with probability about ``hostile`` a bad dtype or layout."""
    bad = draw(st.floats(0, 1)) < hostile
    if dtype is None or bad:
        dtype = draw(st.sampled_from(DTYPES if bad else VALID_DTYPES))
    layout = draw(st.sampled_from(LAYOUTS)) if bad else "c"
    if bad and draw(st.booleans()):
        shape = draw(SHAPES)  # a mismatched shape
    seed = draw(st.integers(0, 2**32 - 1))
    return ArraySpec(shape, dtype, layout, seed, tuple(draw(special_lists(specials))), nonnegative)


# ------------------------------------------------------------------------------ scalars

HOSTILE_SCALARS = (
    np.nan,
    np.inf,
    -np.inf,
    -1.0,
    1e300,
    10**400,
    "0.1",
    None,
    [0.1],
    1j,
    np.float32(0.5),
    np.int64(1),
    True,
)


# How hostile one example is: most are valid (so that results get compared), some have one or two
# bad arguments, some many.
HOSTILITY = st.sampled_from([0.0, 0.0, 0.0, 0.02, 0.05, 0.3])


UNIT_KEYS = ("beta1", "beta2", "rho", "alpha", "momentum", "dampening")


def scalar(default: object, hostile: float = 0.1, key: str = ""):
    """A hyperparameter: usually a sensible value near ``default`` (in [0, 1) for the averaging
    factors named in UNIT_KEYS, nesterov mostly off), sometimes anything (``hostile``)."""
    if isinstance(default, bool):
        sane = st.booleans() if key != "nesterov" else st.sampled_from([False, False, True])
        bad = st.sampled_from([1, None, "yes", np.bool_(True)])
    else:
        values = [0.0, 0.5, 0.9] if key in UNIT_KEYS else [0.0, 0.5, 0.9, 1.0]
        wide = st.floats(0.0, 1.0, exclude_max=True) if key in UNIT_KEYS else st.floats(0.0, 2.0)
        sane = st.one_of(st.just(default), st.sampled_from(values), wide)
        bad = st.sampled_from(HOSTILE_SCALARS)
    return st.floats(0, 1).flatmap(lambda u: bad if u < hostile else sane)


# ------------------------------------------------------------------------------ comparison


def leaves(obj: object) -> list[np.ndarray]:
    """Every ndarray in ``obj`` (lists, tuples and dicts searched), in order."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, list | tuple):
        return [a for item in obj for a in leaves(item)]
    if isinstance(obj, dict):
        return [a for k in sorted(obj, key=str) for a in leaves(obj[k])]
    if isinstance(obj, float | int) and not isinstance(obj, bool):
        return [np.asarray(obj, np.float64)]
    if isinstance(obj, bn.BatchNormCache):
        return [obj.mean, obj.invstd]
    return []


def fingerprint(obj: object) -> list[bytes]:
    """The contents of every array (object arrays by value: their bytes are pointers)."""
    return [repr(a.tolist()).encode() if a.dtype == object else a.tobytes() for a in leaves(obj)]


def assert_bits_equal(a: object, b: object, context: str) -> None:
    xs, ys = leaves(a), leaves(b)
    assert len(xs) == len(ys), context
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{context} #{k}"
        if x.dtype.kind == "f":
            nan = np.isnan(x)
            assert np.array_equal(nan, np.isnan(y)), f"{context} #{k}: NaNs differ"
            bits = f"u{x.dtype.itemsize}"
            assert np.array_equal(x[~nan].view(bits), y[~nan].view(bits)), f"{context} #{k}"
        else:
            assert fingerprint(x) == fingerprint(y), f"{context} #{k}"


def run_both(
    label: str,
    build: Callable[[], object],
    call: Callable[[object, str], object],
    *,
    compare: Callable[[object, object, str], None] = assert_bits_equal,
    allowed: tuple[type[Exception], ...] = ALLOWED,
) -> None:
    """Build the arguments twice, call each backend, and check the invariant."""
    outcomes = []
    for backend in ("native", "reference"):
        args = build()
        before = fingerprint(args)
        try:
            result = call(args, backend)
        except allowed as error:
            if isinstance(error, OverflowError):
                assert "too large" in str(error), repr(error)
            if isinstance(error, RuntimeError):
                assert "non-finite" in str(error), repr(error)
            assert fingerprint(args) == before, f"{label} {backend}: refused call wrote {error!r}"
            outcomes.append((type(error), str(error)))
        else:
            outcomes.append((None, (args, result)))
    (native_error, native_out), (reference_error, reference_out) = outcomes
    assert native_error is reference_error, f"{label}: native {native_error}, ref {reference_error}"
    OUTCOMES[f"{label}: {'ok' if native_error is None else native_error.__name__}"] += 1
    if native_error is None:
        compare(native_out, reference_out, label)


# ------------------------------------------------------------------------------ kernels


def _layout(kernel: str, hp: dict) -> list[tuple[str, str]]:
    try:
        return slot_layout(kernel, hp)
    except TypeError:  # a hostile momentum that cannot be compared with 0
        return slot_layout(kernel, DEFAULTS[kernel])


@st.composite
def kernel_calls(draw):
    kernel = draw(st.sampled_from(KERNELS))
    h = draw(HOSTILITY)
    hp = {k: draw(scalar(v, h, k)) for k, v in DEFAULTS[kernel].items()}
    n = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(VALID_DTYPES))
    shapes = [draw(SHAPES) for _ in range(n)]
    params = [draw(array_specs(s, dtype, hostile=h)) for s in shapes]
    grads = [
        None if draw(st.integers(0, 4)) == 0 else draw(array_specs(s, dtype, hostile=h))
        for s in shapes
    ]
    slots = []
    for _name, kind in _layout(kernel, hp):
        if kind == "none" and draw(st.integers(0, 9)):
            slots.append(None)
        elif kind == "mu":
            slots.append(draw(array_specs((n,), "float32", nonnegative=True, hostile=h)))
        else:
            lst = [draw(array_specs(s, dtype, nonnegative=True, hostile=h)) for s in shapes]
            if h and draw(st.integers(0, 9)) == 0:
                lst = lst[:-1]  # one array short
            slots.append(lst)
    if h and draw(st.integers(0, 9)) == 0:
        grads = grads[:-1] if grads else [None]
    counts = [0, 1, 5, 10**6, 2**62, -1] if h else [0, 1, 5, 10**6]
    start = draw(st.lists(st.sampled_from(counts), min_size=n, max_size=n))
    steps_dtype = "int64" if not h or draw(st.integers(0, 9)) else "int32"
    return kernel, hp, params, grads, slots, (start, steps_dtype)


def build_kernel_args(params, grads, slots, steps) -> list:
    def make(spec):
        if spec is None:
            return None
        if isinstance(spec, list):
            return [make(s) for s in spec]
        return spec.build()

    start, steps_dtype = steps
    counts = np.array(start, np.int64).astype(steps_dtype)  # (wraps for int32: still refused)
    return [make(params), make(grads), *(make(s) for s in slots), counts]


@FUZZ
@given(call=kernel_calls())
def test_fuzz_kernels(call):
    kernel, hp, params, grads, slots, steps = call
    backends = {"native": native, "reference": reference}

    def run(args, backend):
        getattr(backends[backend], f"{kernel}_step")(*args, **hp)

    run_both(f"{kernel}_step", lambda: build_kernel_args(params, grads, slots, steps), run)


# ------------------------------------------------------------------------------ classes

# Every class with its torch defaults (pairs, maximize and decoupled_weight_decay left out).
CLASS_OPTIONS = {
    s.name: {
        h.name: h.default
        for h in s.exposed
        if h.kind != "betas" and h.name not in ("maximize", "decoupled_weight_decay")
    }
    for s in registry.OPTIMIZERS
}


@st.composite
def class_runs(draw):
    name = draw(st.sampled_from(sorted(CLASS_OPTIONS)))
    h = draw(HOSTILITY)
    options = {k: draw(scalar(v, h, k)) for k, v in CLASS_OPTIONS[name].items()}
    if draw(st.booleans()):
        options["max_grad_norm"] = draw(scalar(1.0, h))
    if draw(st.integers(0, 3)) == 0:
        options["clip_value"] = draw(scalar(0.5, h))
    if draw(st.integers(0, 3)) == 0:
        options["skip_nonfinite"] = draw(scalar(False, h))
    dtype = draw(st.sampled_from(VALID_DTYPES))
    shapes = [draw(SHAPES) for _ in range(draw(st.integers(1, 3)))]
    params = [draw(array_specs(s, dtype, hostile=h)) for s in shapes]
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        hg = draw(HOSTILITY)  # bad gradients after a valid construction too
        steps.append(
            [
                None if draw(st.integers(0, 4)) == 0 else draw(array_specs(s, dtype, hostile=hg))
                for s in shapes
            ]
        )
    return name, options, params, steps


@FUZZ
@given(run=class_runs())
def test_fuzz_optimizer_classes(run):
    """Construction, then each step: both backends agree on every outcome, and a refused step
    changes neither the params nor the optimizer's state."""
    name, options, params, steps = run
    cls = getattr(fo.optim, name)

    def build():
        return [p.build() for p in params]

    def construct(args, backend):
        return cls(args, backend=backend, **options)

    ok = []

    def make(args, backend):
        opt = construct(args, backend)
        ok.append((args, opt))
        return None

    run_both(f"{name}()", build, make)
    if len(ok) != 2:
        return
    (p_native, native_opt), (p_ref, ref_opt) = ok
    for k, grad_specs in enumerate(steps):
        outcomes = []
        for p, opt in ((p_native, native_opt), (p_ref, ref_opt)):
            grads = [None if g is None else g.build() for g in grad_specs]
            before = fingerprint([p, opt.state_dict()["state"], grads])
            try:
                opt.step(grads)
            except ALLOWED as error:
                after = fingerprint([p, opt.state_dict()["state"], grads])
                assert after == before, f"{name} step {k}: refused step wrote {error!r}"
                outcomes.append(type(error))
            else:
                outcomes.append(None)
        assert outcomes[0] is outcomes[1], f"{name} step {k}: {outcomes}"
        OUTCOMES[f"{name}.step: {'ok' if outcomes[0] is None else outcomes[0].__name__}"] += 1
        assert_bits_equal(
            [p_native, native_opt.state_dict()["state"]],
            [p_ref, ref_opt.state_dict()["state"]],
            f"{name} step {k}",
        )


# ------------------------------------------------------------------------------ clipping

CLIP_CALLS = {
    "clip_grad_norm_": lambda g, s, b: clip.clip_grad_norm_(g, s[0], s[1], s[3], backend=b),
    "clip_grad_norm_per_tensor_": lambda g, s, b: clip.clip_grad_norm_per_tensor_(
        g, s[0], s[1], backend=b
    ),
    "clip_grad_value_": lambda g, s, b: clip.clip_grad_value_(g, s[2], backend=b),
    "global_norm": lambda g, s, b: clip.global_norm(g, s[1], s[2], backend=b),
    "tensor_norms": lambda g, s, b: clip.tensor_norms(g, s[1], backend=b),
}


def close_results(a: object, b: object, context: str) -> None:
    """Clipping sums in float64 in different orders per backend: equal to rounding, same NaNs
    and infinities, exactly equal arrays where the backends apply the same factor."""
    xs, ys = leaves(a), leaves(b)
    assert len(xs) == len(ys), context
    for x, y in zip(xs, ys, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, context
        rtol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True, err_msg=context)


@st.composite
def clip_calls(draw):
    name = draw(st.sampled_from(sorted(CLIP_CALLS)))
    h = draw(HOSTILITY)
    dtype = draw(st.sampled_from(VALID_DTYPES))
    grads = [
        None if draw(st.integers(0, 5)) == 0 else draw(array_specs(draw(SHAPES), dtype, hostile=h))
        for _ in range(draw(st.integers(1 if not h else 0, 4)))
    ]
    norm_type = draw(st.one_of(st.sampled_from([1.0, 2.0, np.inf, 0.5, 3.0]), scalar(2.0, h)))
    max_norm = draw(st.one_of(st.floats(1e-3, 10.0), scalar(1.0, h)))
    clip_value = draw(st.one_of(st.none(), scalar(0.5, h)))
    return name, grads, (max_norm, norm_type, clip_value, draw(scalar(False, h)))


@FUZZ
@given(call=clip_calls())
def test_fuzz_clip(call):
    name, grads, scalars = call

    def build():
        return [None if g is None else g.build() for g in grads]

    run_both(
        name,
        build,
        lambda g, b: CLIP_CALLS[name](g, scalars, b),
        compare=close_results,
        allowed=(*ALLOWED, RuntimeError),  # torch's error_if_nonfinite=True on a nan/inf norm
    )


# ------------------------------------------------------------------------------ batch norm


BACKWARD_ERRORS = (None, TypeError, ValueError)


@st.composite
def batchnorm_calls(draw):
    dtype = draw(st.sampled_from(VALID_DTYPES))
    h = draw(HOSTILITY)
    sizes = st.integers(0 if h else 1, 4)
    shape = tuple(draw(st.lists(sizes, min_size=1 if h else 2, max_size=5 if h else 4)))
    channels = shape[1] if len(shape) > 1 else 3
    x = draw(array_specs(shape, dtype, hostile=h))

    def optional(nonnegative=False):
        spec = array_specs((channels,), dtype, nonnegative=nonnegative, hostile=h)
        return st.one_of(st.none(), spec)

    def stats(nonnegative=False):
        return array_specs((channels,), dtype, nonnegative=nonnegative, hostile=h)

    # valid calls (h == 0) pass both running statistics or neither, and a counter when needed
    pair = st.tuples(stats(), stats(nonnegative=True))
    loose = st.tuples(optional(), optional(nonnegative=True))
    running = draw(st.one_of(st.none(), loose if h else pair, pair))
    momentum = draw(st.one_of(scalar(0.1, h), st.none()))
    options = dict(training=draw(st.booleans()), momentum=momentum, eps=draw(scalar(1e-5, h)))
    counters = [None, 0, 5, -1] if h else ([0, 5] if momentum is None else [None, 0, 5])
    counter = draw(st.sampled_from(counters))
    dy = draw(array_specs(shape, dtype, hostile=h))
    weight, bias = draw(optional()), draw(optional())
    return x, running, weight, bias, options, counter, dy


@FUZZ
@given(call=batchnorm_calls())
def test_fuzz_batchnorm(call):
    x, running, weight, bias, options, counter, dy = call

    def build():
        def b(spec):
            return None if spec is None else spec.build()

        mean, var = (None, None) if running is None else (b(running[0]), b(running[1]))
        tracked = None if counter is None else np.array(counter, np.int64)
        return [b(x), mean, var, b(weight), b(bias), tracked, b(dy)]

    def run(args, backend):
        x_, mean, var, w, b_, tracked, dy_ = args
        y, cache = bn.batch_norm_forward(
            x_, mean, var, w, b_, num_batches_tracked=tracked, backend=backend, **options
        )
        kept = fingerprint([y, x_, dy_])
        try:
            grads = bn.batch_norm_backward(dy_, cache, backend=backend)
        except (TypeError, ValueError) as error:  # the forward pass stands; backward wrote nothing
            assert fingerprint([y, x_, dy_]) == kept, f"refused backward wrote {error!r}"
            return (y, cache, BACKWARD_ERRORS.index(type(error)))
        return (y, cache, *grads)

    run_both("batch_norm", build, run, compare=close_batchnorm)


def _max_abs(*arrays) -> float:
    finite = [np.abs(a[np.isfinite(a)]).max(initial=0.0) for a in arrays if a is not None]
    return float(max(finite, default=0.0))


def close_batchnorm(a: object, b: object, context: str) -> None:
    """The backends sum in different orders, and batch norm cancels (``x - mean``,
    ``dy - mean(dy) - xhat*mean(dy*xhat)``): each output is compared with an absolute tolerance
    scaled by the magnitudes that cancel in it, everything in float64 rounding units. NaNs and
    infinities must be the same. The running statistics (updated in place) are compared too."""
    (args, out), (ref_args, ref) = a, b
    x, running_mean, running_var, w, bias, _, dy = args
    cache = out[1]
    assert len(out) == len(ref), f"{context}: backward outcome differs"
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    inv = max(1.0, _max_abs(cache.invstd))
    wmax = max(1.0, _max_abs(w))
    compared = [
        ("y", out[0], ref[0], _max_abs(x) * inv * wmax + max(1.0, _max_abs(bias))),
        ("mean", cache.mean, ref[1].mean, max(1.0, _max_abs(x))),
        ("invstd", cache.invstd, ref[1].invstd, inv),
    ]
    if running_mean is not None:
        spread = max(1.0, _max_abs(x, running_mean))
        var_scale = spread * spread + max(1.0, _max_abs(running_var))
        compared += [
            ("running_mean", running_mean, ref_args[1], spread),
            ("running_var", running_var, ref_args[2], var_scale),
        ]
    if len(out) == 5:
        sums = x.size * _max_abs(dy) * inv * _max_abs(x)
        names = ("dx", "dweight", "dbias")
        scales = (4 * _max_abs(dy) * inv * wmax, sums, sums)
        compared += list(zip(names, out[2:], ref[2:], scales, strict=True))
    else:
        assert out[2] == ref[2], f"{context}: backward error differs"
    for name, g, r, scale in compared:
        if g is None or r is None:
            assert g is r, f"{context} {name}"
            continue
        assert np.array_equal(np.isnan(g), np.isnan(r)), f"{context} {name}: NaNs differ"
        both = np.isfinite(g) & np.isfinite(r)
        infinite = ~both & ~np.isnan(g)
        assert np.array_equal(g[infinite], r[infinite]), f"{context} {name}: infinities differ"
        np.testing.assert_allclose(
            g[both], r[both], rtol=rtol, atol=rtol * scale, err_msg=f"{context} {name}"
        )


# ------------------------------------------------------------------------------ known divergences


def infinite_data(dtype) -> np.ndarray:
    """Finite data, shape (3, 5, 600) (several partial sums per channel natively), with +inf in
    channel 0's first value, -inf in channel 1's last, +inf in three samples of channel 2, and
    +inf and -inf in channel 3; channel 4 stays finite."""
    x = np.random.default_rng(0).standard_normal((3, 5, 600)).astype(dtype)
    x[0, 0, 0] = x[0, 2, 0] = x[1, 2, 300] = x[2, 2, -1] = x[0, 3, 7] = np.inf
    x[-1, 1, -1] = x[2, 3, 5] = -np.inf
    return x


@pytest.mark.parametrize("dtype", VALID_DTYPES)
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_batchnorm_statistics_of_infinite_data(backend, dtype):
    """As torch's batch norm (mean = sum/m): the mean of data holding an infinity is that
    infinity, NaN with both signs; the variance is NaN; so the running mean takes the infinity
    and the running variance NaN. The native backend merges partial means, where a shifted
    update would compute inf - inf (a NaN mean, now fixed)."""
    want_mean = [np.inf, -np.inf, np.inf, np.nan]
    mean, var = bn.batch_norm_stats(np.array([[np.inf], [0.5]], dtype), backend=backend)
    assert mean[0] == np.inf and np.isnan(var[0])
    x = infinite_data(dtype)
    mean, var = bn.batch_norm_stats(x, backend=backend)
    np.testing.assert_array_equal(mean[:4], want_mean)
    assert np.isnan(var[:4]).all() and np.isfinite([mean[4], var[4]]).all()
    running_mean, running_var = np.zeros(5, dtype), np.ones(5, dtype)
    bn.batch_norm_forward(x, running_mean, running_var, momentum=0.1, backend=backend)
    np.testing.assert_array_equal(running_mean[:4], want_mean)
    assert np.isnan(running_var[:4]).all()
    assert np.isfinite([running_mean[4], running_var[4]]).all()


@pytest.mark.parametrize("module", [native, reference], ids=["native", "reference"])
def test_list_in_an_unused_slot_with_nothing_to_step_is_refused(module):
    """A momentum-buffer list passed with momentum 0 is refused even when no tensor is stepped."""
    args = ([np.ones(2, np.float32)], [None], [np.zeros(2, np.float32)], np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="momentum_buffers"):
        module.sgd_step(*args, **DEFAULTS["sgd"])


@pytest.mark.parametrize("module", [native, reference], ids=["native", "reference"])
def test_unused_slot_is_checked_before_the_lists(module):
    """A list in an unused slot is reported before a bad list (here grads one short), by both
    backends: the slot check runs first."""
    args = ([np.ones(2, np.float32)], [], [np.zeros(2, np.float32)], np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="momentum_buffers"):
        module.sgd_step(*args, **DEFAULTS["sgd"])


@pytest.mark.parametrize("module", [native, reference], ids=["native", "reference"])
def test_missing_slot_is_checked_before_the_lists(module):
    """A list missing where the options need it (momentum != 0) is reported before a
    non-list params, by both backends."""
    hp = {**DEFAULTS["sgd"], "momentum": 0.9}
    with pytest.raises(ValueError, match="momentum_buffers"):
        module.sgd_step(None, [None], None, np.zeros(1, np.int64), **hp)

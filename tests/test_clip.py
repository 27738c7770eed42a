"""Gradient clipping (torch.nn.utils semantics): ``ferroptim._native`` against its pure-NumPy twin
``ferroptim.reference.clip``, against plain NumPy formulas and a scalar transcription of the
documented accumulation order, NaN/inf behaviour as torch, bad input, and clipping inside the
optimizers (``max_grad_norm`` / ``clip_value``) against clip-then-step.

Norm types 1, 2 and inf must give the same bits on both backends, at every SIMD level and thread
count; other ``p`` agree within 1e-14 relative (NumPy's vectorized power is not libm's ``pow``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
import ferroptim._native as native
import ferroptim.reference.clip as refclip
from conftest import CLASS_CASES, DTYPES, assert_same, assert_unchanged, random_arrays, snapshot

CLIP = {"native": native, "reference": refclip}
BACKENDS = tuple(CLIP)
EXACT_NORMS = (1.0, 2.0, math.inf)
APPROX_NORMS = (3.0, 0.5)
ALL_NORMS = EXACT_NORMS + APPROX_NORMS
APPROX_RTOL = 1e-14
SIZES = (0, 1, 15, 16, 17, 4095, 4096, 4097, 70001)
CHUNK, LANES = 4096, 16
DTYPE_IDS = {"ids": lambda d: np.dtype(d).name}


# ----------------------------------------------------------------------------- helpers


def wide(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Normal values over six decades with 5% exact zeros and both signs: the summation order
    changes the rounding, so equal bits mean the same order."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)
    x = np.where(rng.random(shape) < 0.05, 0.0, x)
    return np.asarray(x, dtype)


def copies(grads: list) -> list:
    return [None if g is None else g.copy() for g in grads]


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def assert_same_float(a: float, b: float, label: str = "") -> None:
    """Identical float64 bits (any NaN equals any NaN)."""
    assert isinstance(a, float) and isinstance(b, float), label
    if math.isnan(a) or math.isnan(b):
        assert math.isnan(a) and math.isnan(b), f"{label}: {a!r} != {b!r}"
    else:
        assert bits(a) == bits(b), f"{label}: {a!r} != {b!r} ({(a - b) / (abs(b) or 1):.3g})"


def assert_norm(a: float, b: float, p: float, label: str = "") -> None:
    """Same bits for p in (1, 2, inf); within APPROX_RTOL otherwise."""
    if p in EXACT_NORMS:
        assert_same_float(a, b, f"{label} p={p}")
    elif math.isnan(b):
        assert math.isnan(a), f"{label} p={p}: {a} != {b}"
    else:
        assert a == pytest.approx(b, rel=APPROX_RTOL, abs=0.0), f"{label} p={p}"


def assert_norms(a: list[float], b: list[float], p: float, label: str = "") -> None:
    assert len(a) == len(b), label
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_norm(x, y, p, f"{label}[{k}]")


def assert_lists_same(a: list, b: list, label: str = "") -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is None or y is None:
            assert x is None and y is None
        else:
            assert_same(x, y, f"{label}[{k}]")


def direct_norm(grads: list, p: float, clip_value: float | None = None) -> float:
    """The norm by plain NumPy in float64 (no particular order)."""
    parts = []
    for g in grads:
        if g is None:
            continue
        if clip_value is not None:
            c = g.dtype.type(clip_value)
            g = np.clip(g, -c, c)
        parts.append(np.abs(g.astype(np.float64)).ravel())
    x = np.concatenate(parts)
    if p == math.inf:
        return float(x.max(initial=0.0))
    if p == 2.0:
        return float(np.sqrt(np.sum(x * x)))
    return float(np.sum(x**p) ** (1.0 / p))


def spec_partial(array: np.ndarray, p: float, clip_value: float | None = None) -> float:
    """One array's partial result, transcribed element by element from the documented order
    (chunks of 4096, 16 lanes, folds from 0.0) with Python floats."""

    def merge(a: float, b: float) -> float:
        if p == math.inf:
            return a if a != a or a > b else b
        return a + b

    def term(x: float) -> float:
        if p == 2.0:
            return x * x
        if p in (1.0, math.inf):
            return abs(x)
        return math.pow(abs(x), p)

    flat = array.ravel()
    if clip_value is not None:
        c = array.dtype.type(clip_value)
        flat = np.where(flat < -c, -c, np.where(flat > c, c, flat))
    values = flat.astype(np.float64).tolist()
    total = 0.0
    for start in range(0, len(values), CHUNK):
        lanes = [0.0] * LANES
        for i, x in enumerate(values[start : start + CHUNK]):
            lanes[i % LANES] = merge(lanes[i % LANES], term(x))
        acc = 0.0
        for lane in lanes:
            acc = merge(acc, lane)
        total = merge(total, acc)
    return total


def spec_finish(partial: float, p: float) -> float:
    if p == 2.0:
        return math.sqrt(partial)
    if p in (1.0, math.inf):
        return partial
    return math.pow(partial, 1.0 / p)


def spec_total(grads: list, p: float, clip_value: float | None = None) -> float:
    acc = 0.0
    for g in grads:
        if g is None:
            continue
        part = spec_partial(g, p, clip_value)
        acc = (acc if acc != acc or acc > part else part) if p == math.inf else acc + part
    return spec_finish(acc, p)


def clip_coef(max_norm: float, total: float) -> float:
    coef = max_norm / (total + 1e-6)
    return 1.0 if coef > 1.0 else coef


# ----------------------------------------------------------------------------- norms


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_norms_native_equals_reference(dtype, size):
    rng = np.random.default_rng(size)
    grads = [wide(rng, size, dtype), None, wide(rng, (3, 5), dtype), wide(rng, (), dtype)]
    for p in ALL_NORMS:
        for clip_value in (None, 0.5):
            got = native.global_norm(grads, p, clip_value)
            want = refclip.global_norm(grads, p, clip_value)
            assert_norm(got, want, p, f"global_norm clip_value={clip_value}")
            assert got == pytest.approx(direct_norm(grads, p, clip_value), rel=1e-12)
        assert_norms(native.tensor_norms(grads, p), refclip.tensor_norms(grads, p), p)


@pytest.mark.parametrize("size", [0, 1, 17, 4095, 4097, 9000])
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_reference_follows_the_documented_order(dtype, size):
    """The reference's vectorized folds equal an element-by-element transcription of the spec
    (so native == reference is native == spec); p=3 within rounding of power."""
    rng = np.random.default_rng(10 + size)
    grads = [wide(rng, size, dtype), None, wide(rng, 33, dtype)]
    for p in ALL_NORMS:
        for clip_value in (None, 0.25):
            got = refclip.global_norm(grads, p, clip_value)
            assert_norm(got, spec_total(grads, p, clip_value), p, f"clip_value={clip_value}")
        want = [spec_finish(spec_partial(g, p), p) for g in grads if g is not None]
        assert_norms(refclip.tensor_norms(grads, p), want, p)


def test_many_arrays_mixed_dtypes_and_none():
    rng = np.random.default_rng(7)
    grads: list = []
    for k in range(48):
        if k % 7 == 3:
            grads.append(None)
            continue
        size = int(rng.choice([0, 1, 15, 16, 17, 100, 4095, 4096, 4097, 9999]))
        dtype = DTYPES[int(rng.integers(2))]
        shape = (size,) if k % 2 else (1, size)
        grads.append(wide(rng, shape, dtype))
    for p in ALL_NORMS:
        for clip_value in (None, 1.5):
            assert_norm(
                native.global_norm(grads, p, clip_value),
                refclip.global_norm(grads, p, clip_value),
                p,
            )
        norms = native.tensor_norms(grads, p)
        assert len(norms) == sum(g is not None for g in grads)
        assert_norms(norms, refclip.tensor_norms(grads, p), p)
    # The total is the in-order fold of the per-array partials.
    total_l1 = 0.0
    for n in native.tensor_norms(grads, 1.0):
        total_l1 += n
    assert_same_float(native.global_norm(grads, 1.0), total_l1)
    assert_same_float(
        native.global_norm(grads, math.inf), max(native.tensor_norms(grads, math.inf))
    )


def test_dtype_order_does_not_matter_beyond_list_order():
    """float32 and float64 arrays are reduced separately natively but folded in list order."""
    rng = np.random.default_rng(3)
    a32, b64, c32 = wide(rng, 5000, np.float32), wide(rng, 77, np.float64), wide(rng, 9, np.float32)
    for order in ([a32, b64, c32], [b64, c32, a32], [c32, a32, b64]):
        for p in EXACT_NORMS:
            assert_same_float(native.global_norm(order, p), refclip.global_norm(order, p))


def test_sequences_and_zero_size():
    g = [np.zeros(0, np.float32), np.zeros((0, 3))]
    for backend in CLIP.values():
        assert backend.global_norm(g) == 0.0
        assert backend.global_norm(tuple(g), math.inf) == 0.0
        assert backend.tensor_norms(g, 1.0) == [0.0, 0.0]
        assert backend.clip_grad_norm_(g, 1.0) == 0.0
        assert backend.clip_grad_norm_per_tensor_(g, 1.0) == [0.0, 0.0]
        backend.clip_grad_value_(g, 1.0)


_IN_PLACE = [
    ("clip_grad_norm_", (1.0,)),
    ("clip_grad_norm_", (1.0, math.inf)),
    ("clip_grad_norm_", (1.0, 1.0)),
    ("clip_grad_norm_", (1.0, 3.0)),
    ("clip_grad_norm_per_tensor_", (0.5,)),
    ("clip_grad_norm_per_tensor_", (0.5, math.inf)),
    ("clip_grad_value_", (0.01,)),
]


def reference_norms(grads: list, norms: tuple[float, ...]) -> dict:
    """The reference's global norms (plain and clamped to 0.5) and per-array norms of ``grads``
    for each norm type, keyed as :func:`assert_reference_norms` reads them."""
    want: dict = {}
    for p in norms:
        for clip_value in (None, 0.5):
            want[("global", p, clip_value)] = refclip.global_norm(grads, p, clip_value)
        want[("tensor", p)] = refclip.tensor_norms(grads, p)
    return want


def assert_reference_norms(grads: list, want: dict, norms: tuple[float, ...]) -> None:
    """The native norms of ``grads`` equal :func:`reference_norms`'s (bits for p in 1, 2, inf)."""
    for p in norms:
        for clip_value in (None, 0.5):
            got = native.global_norm(grads, p, clip_value)
            assert_norm(got, want[("global", p, clip_value)], p, f"clip_value={clip_value}")
        assert_norms(native.tensor_norms(grads, p), want[("tensor", p)], p)


@pytest.fixture(scope="module")
def level_case() -> tuple[list, dict]:
    """Work above the parallel threshold with a chunk tail in every array, mixed dtypes and a
    None; and the reference results for it (computed once)."""
    rng = np.random.default_rng(5)
    grads: list = []
    for k, s in enumerate([300_001, 17, 4097, (64, 1025), 70001]):
        grads.append(wide(rng, s, DTYPES[k % 2]))
        if k == 1:
            grads.append(None)
    assert sum(g.size for g in grads if g is not None) > native.PARALLEL_MIN_ELEMENTS
    want = reference_norms(grads, ALL_NORMS)
    for name, args in _IN_PLACE:
        mine = copies(grads)
        want[(name, args)] = (getattr(refclip, name)(mine, *args), mine)
    return grads, want


def test_every_simd_level_and_thread_count(level_case, simd_level, num_threads):
    """The reference's bits at each level and thread count, norms and in-place results."""
    grads, want = level_case
    assert_reference_norms(grads, want, ALL_NORMS)
    for name, args in _IN_PLACE:
        p = args[1] if len(args) > 1 else 2.0
        mine = copies(grads)
        result = getattr(native, name)(mine, *args)
        ref_result, ref_grads = want[(name, args)]
        if isinstance(result, float):
            assert_norm(result, ref_result, p, name)
        elif result is not None:
            assert_norms(result, ref_result, p, name)
        if p in EXACT_NORMS:
            assert_lists_same(mine, ref_grads, f"{name}{args}")


@pytest.fixture(scope="module")
def huge_and_tiny_case() -> tuple[list, dict]:
    """One array of many chunks ending in a short chunk, then 150 tiny and empty arrays of both
    dtypes, then another multi-chunk array: chunks are summed four at a time over the list, so
    groups straddle array boundaries at every offset, group a full chunk with tiny ones, and
    skip empty arrays; above the parallel threshold, so the threads split the groups. The
    reference results, computed once."""
    rng = np.random.default_rng(11)
    grads: list = [wide(rng, 21 * CHUNK + 5, np.float32)]
    for k in range(150):
        grads.append(wide(rng, (0, 1, 3, 16, 17, 384, 0, 4095)[k % 8], DTYPES[(k // 3) % 2]))
    grads.append(wide(rng, (3, CHUNK + 1), np.float32))
    assert sum(g.size for g in grads) > native.PARALLEL_MIN_ELEMENTS
    return grads, reference_norms(grads, EXACT_NORMS)


def test_one_huge_and_many_tiny_arrays_at_every_level_and_thread_count(
    huge_and_tiny_case, simd_level, num_threads
):
    """The reference's bits for a list mixing one large array with many tiny and empty ones."""
    grads, want = huge_and_tiny_case
    assert_reference_norms(grads, want, EXACT_NORMS)


# ----------------------------------------------------------------------------- in place


def _grad_list(dtype, seed: int = 0, scale: float = 1.0) -> list:
    rng = np.random.default_rng(seed)
    return [
        wide(rng, 70001, dtype) * dtype(scale),
        None,
        wide(rng, (3, 5), dtype) * dtype(scale),
        wide(rng, 4097, dtype) * dtype(scale),
        np.zeros(0, dtype),
    ]


@pytest.mark.parametrize("p", ALL_NORMS)
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_clip_grad_norm_in_place(dtype, p):
    for max_norm in (1e-3, 1.0, 1e12):  # clipped hard, clipped, unchanged (coef 1)
        grads = _grad_list(dtype)
        original = copies(grads)
        results = {}
        for name, backend in CLIP.items():
            mine = copies(grads)
            results[name] = (backend.clip_grad_norm_(mine, max_norm, p), mine)
        (total, ours), (ref_total, theirs) = results["native"], results["reference"]
        assert_norm(total, ref_total, p, "total")
        assert total == pytest.approx(direct_norm(original, p), rel=1e-12)
        if p in EXACT_NORMS:
            assert_lists_same(ours, theirs, "grads")
        coef = clip_coef(max_norm, direct_norm(original, p))
        rtol = 4e-7 if dtype == np.float32 else 1e-12
        for g, g0 in zip(ours, original, strict=True):
            if g is None:
                assert g0 is None
                continue
            np.testing.assert_allclose(g, g0.astype(np.float64) * coef, rtol=rtol, atol=0)
            if max_norm == 1e12:
                assert_same(g, g0)
        if max_norm < 1e12:
            assert direct_norm(ours, p) <= max_norm * (1 + 1e-5)


@pytest.mark.parametrize("p", ALL_NORMS)
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_clip_grad_norm_per_tensor_in_place(dtype, p):
    grads = _grad_list(dtype, seed=1)
    grads.append(np.full(4, 1e-4, dtype))  # small: left unchanged
    original = copies(grads)
    out = {}
    for name, backend in CLIP.items():
        mine = copies(grads)
        out[name] = (backend.clip_grad_norm_per_tensor_(mine, 2.0, p), mine)
    (norms, ours), (ref_norms, theirs) = out["native"], out["reference"]
    assert_norms(norms, ref_norms, p)
    if p in EXACT_NORMS:
        assert_lists_same(ours, theirs)
    present = [g for g in original if g is not None]
    assert len(norms) == len(present)
    rtol = 4e-7 if dtype == np.float32 else 1e-12
    mine_present = [g for g in ours if g is not None]
    for n, g, g0 in zip(norms, mine_present, present, strict=True):
        want = direct_norm([g0], p)
        assert n == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(g, g0.astype(np.float64) * clip_coef(2.0, want), rtol=rtol)
    assert_same(ours[-1], original[-1])


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_clip_grad_value_in_place(dtype):
    grads = _grad_list(dtype, seed=2)
    grads.append(np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 0.3, -0.3, 0.1], dtype))
    for clip_value in (0.0, 0.1, 1e30):
        results = {}
        for name, backend in CLIP.items():
            mine = copies(grads)
            assert backend.clip_grad_value_(mine, clip_value) is None
            results[name] = mine
        assert_lists_same(results["native"], results["reference"])
        c = dtype(clip_value)
        for g, g0 in zip(results["native"], grads, strict=True):
            if g is not None:
                # np.clip: NaN stays NaN, the bound rounded to the dtype (+0 and -0 compare equal).
                np.testing.assert_array_equal(g, np.clip(g0, -c, c))
        last = results["native"][-1]
        if clip_value == 0.0:  # the bound -0.0 is accepted too, with the same bits
            out = [copies(grads) for _ in BACKENDS]
            for mine, clip in zip(out, CLIP.values(), strict=True):
                clip.clip_grad_value_(mine, -0.0)
            assert_lists_same(out[0], out[1])
        assert np.isnan(last[0]) and last[1] == c and last[2] == -c
        if clip_value == 0.1:
            assert last[-1] == dtype(0.1)  # 0.1 rounded to the dtype is within the bound
    # global_norm with clip_value is the norm of the clamped copy, bit for bit.
    clamped = copies(grads)
    native.clip_grad_value_(clamped, 0.1)
    for p in ALL_NORMS:
        for backend in CLIP.values():
            assert_norm(backend.global_norm(grads, p, 0.1), backend.global_norm(clamped, p), p)


# ----------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_nan_gradient_makes_everything_nan(dtype, backend):
    """torch: the total norm is NaN, the coefficient NaN, and every gradient becomes NaN."""
    clip = CLIP[backend]
    for p in ALL_NORMS:
        grads = [np.arange(5, dtype=dtype), np.array([1.0, np.nan, 2.0], dtype), None]
        assert math.isnan(clip.global_norm(grads, p))
        assert math.isnan(clip.tensor_norms(grads, p)[1])
        assert not math.isnan(clip.tensor_norms(grads, p)[0])
        total = clip.clip_grad_norm_(grads, 1.0, p)
        assert math.isnan(total)
        assert np.isnan(grads[0]).all() and np.isnan(grads[1]).all()
    # Per tensor, only the NaN array is affected.
    grads = [np.full(4, 3.0, dtype), np.array([np.nan, 1.0], dtype)]
    norms = clip.clip_grad_norm_per_tensor_(grads, 1.0)
    assert norms[0] == 6.0 and math.isnan(norms[1])
    assert np.isnan(grads[1]).all()
    np.testing.assert_allclose(grads[0], 3.0 / (6.0 + 1e-6), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_inf_gradient_scales_by_zero(dtype, backend):
    """torch: the norm is inf, the coefficient 0: finite values become (signed) zeros and
    infinities NaN (inf * 0)."""
    clip = CLIP[backend]
    for p in ALL_NORMS:
        grads = [np.array([1.0, -2.0, 0.0], dtype), np.array([np.inf, -1.0], dtype)]
        assert clip.global_norm(grads, p) == math.inf
        assert clip.tensor_norms(grads, p) == [pytest.approx(direct_norm(grads[:1], p)), math.inf]
        assert clip.clip_grad_norm_(grads, 1.0, p) == math.inf
        assert_same(grads[0], np.array([0.0, -0.0, 0.0], dtype))
        assert np.isnan(grads[1][0]) and grads[1][1] == 0.0 and np.signbit(grads[1][1])
    # A value clamp bounds the infinity first.
    grads = [np.array([np.inf, -np.inf], dtype)]
    assert clip.global_norm(grads, 2.0, 3.0) == pytest.approx(math.sqrt(18.0))
    assert clip.global_norm(grads, 1.0, 3.0) == 6.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_if_nonfinite_raises_and_changes_nothing(backend, bad):
    clip = CLIP[backend]
    for p in ALL_NORMS:
        grads = [np.full(100, 5.0, np.float32), np.array([1.0, bad, 2.0])]
        saved = snapshot(grads)
        with pytest.raises(RuntimeError, match="non-finite"):
            clip.clip_grad_norm_(grads, 1.0, p, True)
        assert_unchanged(saved)
    # Finite norms are clipped as usual with the flag on.
    grads = [np.full(100, 5.0, np.float32)]
    assert clip.clip_grad_norm_(grads, 1.0, 2.0, error_if_nonfinite=True) == 50.0
    np.testing.assert_allclose(grads[0], 0.1, rtol=1e-6)


def test_nan_results_agree_between_backends():
    grads = _grad_list(np.float32, seed=4)
    grads[0][1234] = np.nan
    grads[3][-1] = np.inf
    for p in ALL_NORMS:
        for name in ("clip_grad_norm_", "clip_grad_norm_per_tensor_"):
            out = {}
            for backend, clip in CLIP.items():
                mine = copies(grads)
                out[backend] = (getattr(clip, name)(mine, 1.0, p), mine)
            assert_lists_same(out["native"][1], out["reference"][1], name)


# ----------------------------------------------------------------------------- bad input


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _misaligned() -> np.ndarray:
    buffer = bytearray(4 * 18)
    return np.ndarray((17,), np.float32, buffer=buffer, offset=1)


# (name, grads -> grads, kwargs, exception, pattern, functions it applies to)
WRITERS = ("clip_grad_norm_", "clip_grad_norm_per_tensor_", "clip_grad_value_")
READERS = ("global_norm", "tensor_norms")
ALL_FUNCS = WRITERS + READERS
NORMED = ("clip_grad_norm_", "clip_grad_norm_per_tensor_", *READERS)
_ARRAY_CASES: list[tuple[str, Callable[[list], list], type[Exception], str, tuple]] = [
    ("empty", lambda g: [], ValueError, r"\bgrads\b", ALL_FUNCS),
    ("all_none", lambda g: [None, None], ValueError, r"\bgrads\b", ALL_FUNCS),
    ("not_a_list", lambda g: g[0], TypeError, r"\bgrads\b", ALL_FUNCS),
    ("none_list", lambda g: None, TypeError, r"\bgrads\b", ALL_FUNCS),
    ("not_array", lambda g: [*g, [1.0, 2.0]], TypeError, r"grads\[4\]", ALL_FUNCS),
    ("int_dtype", lambda g: [*g, np.ones(3, np.int32)], TypeError, r"grads\[4\]", ALL_FUNCS),
    ("float16", lambda g: [*g, np.ones(3, np.float16)], TypeError, r"grads\[4\]", ALL_FUNCS),
    ("big_endian", lambda g: [*g, np.ones(3, ">f8")], TypeError, r"grads\[4\]", ALL_FUNCS),
    (
        "non_contiguous",
        lambda g: [*g, np.ones((4, 6), np.float32)[:, ::2]],
        ValueError,
        r"grads\[4\]",
        ALL_FUNCS,
    ),
    ("misaligned", lambda g: [*g, _misaligned()], ValueError, r"grads\[4\]", ALL_FUNCS),
    (
        "read_only",
        lambda g: [*g, _readonly(np.ones(3, np.float32))],
        ValueError,
        r"grads\[4\]",
        WRITERS,
    ),
    ("listed_twice", lambda g: [*g, g[0]], ValueError, r"grads\[(0|4)\]", WRITERS),
    (
        "overlapping_views",
        lambda g: [*g, g[3][1:]],
        ValueError,
        r"grads\[(3|4)\] shares memory",
        WRITERS,
    ),
]


def _valid_grads() -> list:
    rng = np.random.default_rng(9)
    return [
        wide(rng, 100, np.float32) * np.float32(100),
        None,
        wide(rng, (3, 4), np.float64) * 100,
        wide(rng, 50, np.float32) * np.float32(100),
    ]


def _call(backend: str, func: str, grads: list, **kwargs) -> object:
    defaults = {
        "clip_grad_norm_": {"max_norm": 1.0},
        "clip_grad_norm_per_tensor_": {"max_norm": 1.0},
        "clip_grad_value_": {"clip_value": 0.5},
        "global_norm": {},
        "tensor_norms": {},
    }[func]
    return getattr(CLIP[backend], func)(grads, **{**defaults, **kwargs})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", _ARRAY_CASES, ids=lambda c: c[0])
def test_bad_arrays_refused_before_anything_changes(case, backend):
    _, make, exc, pattern, funcs = case
    for func in funcs:
        grads = make(_valid_grads())
        saved = snapshot(grads)
        with pytest.raises(exc, match=pattern):
            _call(backend, func, grads)
        assert_unchanged(saved)


def test_read_only_and_shared_arrays_are_fine_to_measure():
    g = _valid_grads()
    ro = _readonly(g[0].copy())
    for backend in BACKENDS:
        for func in READERS:
            assert _call(backend, func, [ro, g[0], g[0][10:]]) is not None


VALUE_FUNCS = ("clip_grad_value_", "global_norm")
MAX_NORM_FUNCS = ("clip_grad_norm_", "clip_grad_norm_per_tensor_")


def _arg_case(name: str, kwargs: dict, exc: type[Exception], funcs: tuple, named: bool = True):
    """A bad keyword argument; ``named``: the native message names it too (PyO3's own
    conversion errors, "must be real number, not str", name no argument)."""
    return pytest.param(kwargs, exc, rf"\b{next(iter(kwargs))}\b", funcs, named, id=name)


_ARG_CASES = [
    _arg_case("max_norm_zero", {"max_norm": 0.0}, ValueError, MAX_NORM_FUNCS),
    _arg_case("max_norm_negative", {"max_norm": -1.0}, ValueError, MAX_NORM_FUNCS),
    _arg_case("max_norm_nan", {"max_norm": math.nan}, ValueError, MAX_NORM_FUNCS),
    _arg_case("max_norm_inf", {"max_norm": math.inf}, ValueError, MAX_NORM_FUNCS),
    _arg_case("max_norm_str", {"max_norm": "1"}, TypeError, MAX_NORM_FUNCS, named=False),
    _arg_case("norm_type_zero", {"norm_type": 0.0}, ValueError, NORMED),
    _arg_case("norm_type_negative", {"norm_type": -2.0}, ValueError, NORMED),
    _arg_case("norm_type_nan", {"norm_type": math.nan}, ValueError, NORMED),
    _arg_case("norm_type_minus_inf", {"norm_type": -math.inf}, ValueError, NORMED),
    _arg_case("norm_type_str", {"norm_type": "2"}, TypeError, NORMED, named=False),
    _arg_case("clip_value_negative", {"clip_value": -0.5}, ValueError, VALUE_FUNCS),
    _arg_case("clip_value_nan", {"clip_value": math.nan}, ValueError, VALUE_FUNCS),
    _arg_case("clip_value_inf", {"clip_value": math.inf}, ValueError, VALUE_FUNCS),
    _arg_case("clip_value_str", {"clip_value": "1"}, TypeError, VALUE_FUNCS, named=False),
    _arg_case(
        "flag_not_bool", {"error_if_nonfinite": 1}, TypeError, ("clip_grad_norm_",), named=False
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kwargs", "exc", "pattern", "funcs", "native_names_it"), _ARG_CASES)
def test_bad_arguments_refused_before_anything_changes(
    kwargs, exc, pattern, funcs, native_names_it, backend
):
    for func in funcs:
        grads = _valid_grads()
        saved = snapshot(grads)
        with pytest.raises(exc) as info:
            _call(backend, func, grads, **kwargs)
        if backend == "reference" or native_names_it:
            assert info.match(pattern)
        assert_unchanged(saved)


def test_argument_checks_come_before_array_checks():
    """A bad max_norm is reported even with an empty list (both backends, same order)."""
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="max_norm"):
            CLIP[backend].clip_grad_norm_([], -1.0)
        with pytest.raises(ValueError, match="clip_value"):
            CLIP[backend].global_norm([], 2.0, -1.0)
        with pytest.raises(ValueError, match="norm_type"):
            CLIP[backend].tensor_norms([np.ones(3, np.int32)], 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_module_selects_backend(backend):
    grads = _valid_grads()
    for p in EXACT_NORMS:
        assert_same_float(
            fo.clip.global_norm(grads, p, backend=backend), CLIP[backend].global_norm(grads, p)
        )
        assert fo.clip.tensor_norms(grads, p, backend=backend) == CLIP[backend].tensor_norms(
            grads, p
        )
    mine, theirs = copies(grads), copies(grads)
    assert_same_float(
        fo.clip.clip_grad_norm_(mine, 1.0, backend=backend),
        CLIP[backend].clip_grad_norm_(theirs, 1.0),
    )
    assert_lists_same(mine, theirs)
    fo.clip.clip_grad_norm_per_tensor_(mine, 0.01, backend=backend)
    CLIP[backend].clip_grad_norm_per_tensor_(theirs, 0.01)
    fo.clip.clip_grad_value_(mine, 1e-3, backend=backend)
    CLIP[backend].clip_grad_value_(theirs, 1e-3)
    assert_lists_same(mine, theirs)
    with pytest.raises(ValueError, match="backend"):
        fo.clip.global_norm(grads, backend="torch")


# ----------------------------------------------------------------------------- optimizers

OPTIMIZERS = [(cls.__name__, kwargs) for cls, kwargs in CLASS_CASES]
MODES = {
    "max_grad_norm": {"max_grad_norm": 1.0},
    "clip_value": {"clip_value": 0.5},
    "both": {"max_grad_norm": 1.0, "clip_value": 0.5},
}
# Mixed dtypes, a 0-size array, one above a chunk; the gradient norm is far above 1.
OPT_SHAPES = [((5, 3), np.float32), ((7,), np.float64), ((0,), np.float32), ((33,), np.float64),
              ((4097,), np.float32)]  # fmt: skip


def _opt_params(seed: int = 0) -> list[np.ndarray]:
    return random_arrays(OPT_SHAPES, seed)


def _opt_grads(step: int) -> list:
    grads = random_arrays(OPT_SHAPES, 100 + step, scale=3)
    if step == 1:
        grads[3] = None
    return grads


def _groups(params: list, multi: bool) -> object:
    if not multi:
        return params
    return [{"params": params[:2], "lr": 0.05}, {"params": params[2:]}]


def _optimizer_arrays(opt, params: list) -> list[np.ndarray]:
    arrays = list(params)
    for _, entry in sorted(opt.state_dict()["state"].items()):
        for _, value in sorted(entry.items()):
            arrays.append(np.asarray(value))
    return arrays


def _clip_then_step(grads: list, mode: dict, backend: str) -> tuple[list, float | None]:
    clipped = copies(grads)
    if "clip_value" in mode:
        fo.clip.clip_grad_value_(clipped, mode["clip_value"], backend=backend)
    norm = None
    if "max_grad_norm" in mode:
        norm = fo.clip.clip_grad_norm_(clipped, mode["max_grad_norm"], backend=backend)
    return clipped, norm


def _run_clipped(name: str, kw: dict, mode: dict, backend: str, *, maximize: bool, multi: bool):
    """Step an optimizer with in-step clipping and one without on pre-clipped gradients; assert
    identical bits after every step. Returns the clipped optimizer's arrays."""
    cls = getattr(fo.optim, name)
    ours, theirs = _opt_params(), _opt_params()
    opt = cls(_groups(ours, multi), **kw, maximize=maximize, backend=backend, **mode)
    plain = cls(_groups(theirs, multi), **kw, maximize=maximize, backend=backend)
    assert opt.last_grad_norm is None
    for step in range(3):
        grads = _opt_grads(step)
        before = copies(grads)
        opt.step(grads)
        assert_lists_same(grads, before, "the caller's grads were written")
        clipped, norm = _clip_then_step(grads, mode, backend)
        plain.step(clipped)
        label = f"{name} {mode} {backend} maximize={maximize} multi={multi} step {step}"
        if norm is None:
            assert opt.last_grad_norm is None, label
        else:
            assert_same_float(opt.last_grad_norm, norm, label)
            assert norm > mode["max_grad_norm"], "the test should actually clip"
        mine, want = _optimizer_arrays(opt, ours), _optimizer_arrays(plain, theirs)
        assert_lists_same(mine, want, label)
    return _optimizer_arrays(opt, ours)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizer_clipping_equals_clip_then_step(name, kw, mode):
    results = {}
    for backend in BACKENDS:
        for maximize in (False, True):
            for multi in (False, True):
                arrays = _run_clipped(
                    name, kw, MODES[mode], backend, maximize=maximize, multi=multi
                )
                results[(backend, maximize, multi)] = arrays
    for maximize in (False, True):
        for multi in (False, True):
            assert_lists_same(
                results[("native", maximize, multi)], results[("reference", maximize, multi)]
            )


@pytest.mark.parametrize("backend", BACKENDS)
def test_multiple_groups_use_the_global_norm(backend):
    params = _opt_params()
    opt = fo.optim.SGD(_groups(params, True), lr=0.1, max_grad_norm=1.0, backend=backend)
    grads = _opt_grads(0)
    opt.step(grads)
    assert_same_float(opt.last_grad_norm, fo.clip.global_norm(grads, backend=backend))
    # Not the norm of either group alone.
    assert opt.last_grad_norm > fo.clip.global_norm(grads[:2], backend=backend)
    assert opt.last_grad_norm > fo.clip.global_norm(grads[2:], backend=backend)
    with_clamp = fo.optim.SGD(
        _groups(_opt_params(), True), lr=0.1, max_grad_norm=1.0, clip_value=0.5, backend=backend
    )
    with_clamp.step(grads)
    assert_same_float(with_clamp.last_grad_norm, fo.clip.global_norm(grads, 2.0, 0.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_nan_gradient_with_max_grad_norm(backend):
    """A NaN clipping norm skips the step (torch would scale by NaN and corrupt every parameter):
    parameters and state untouched, the norm reported, the skip counted."""
    params = _opt_params()
    before = [p.copy() for p in params]
    opt = fo.optim.Adam(params, max_grad_norm=1.0, backend=backend)
    grads = _opt_grads(0)
    grads[0][0, 0] = np.nan
    opt.step(grads)
    assert math.isnan(opt.last_grad_norm)
    assert opt.last_step_skipped and opt.skipped_steps == 1
    assert_lists_same(params, before)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_with_clipping_checks_before_writing(backend):
    params = _opt_params()
    opt = fo.optim.Adam(_groups(params, True), max_grad_norm=1.0, clip_value=0.5, backend=backend)
    opt.step(_opt_grads(0))
    grads = _opt_grads(1)
    grads[-1] = grads[-1].astype(np.float64)  # wrong dtype in the last group
    saved = snapshot(params, _optimizer_arrays(opt, params), grads)
    norm = opt.last_grad_norm
    with pytest.raises(TypeError, match=r"grads\[4\]"):
        opt.step(grads)
    assert_unchanged(saved)
    assert norm is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_all_none_grads_with_clipping(backend):
    params = _opt_params()
    before = copies(params)
    opt = fo.optim.Adam(params, max_grad_norm=1.0, clip_value=0.5, backend=backend)
    opt.step([None] * len(params))
    assert_lists_same(params, before)


@pytest.mark.parametrize("cls_name", ["Adam", "SGD"])
def test_optimizer_clipping_arguments_validated(cls_name):
    cls = getattr(fo.optim, cls_name)
    params = _opt_params()
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_grad_norm"):
            cls(params, max_grad_norm=bad)
    with pytest.raises(ValueError, match="clip_value"):
        cls(params, clip_value=-1.0)


@pytest.mark.parametrize("value", [-1e-7, -1e20, -0.0, -123.456, -math.inf, math.nan])
def test_value_error_messages_are_identical(value):
    grads = [np.ones(3)]
    bound = -1.0 if value == 0 else value  # clip_value -0.0 is valid (-0.0 >= 0)
    calls = [
        lambda clip: clip.clip_grad_norm_(grads, value),
        lambda clip: clip.clip_grad_norm_per_tensor_(grads, 1.0, value),
        lambda clip: clip.global_norm(grads, 2.0, bound),
        lambda clip: clip.tensor_norms(grads, value),
        lambda clip: clip.clip_grad_value_(grads, bound),
    ]
    for call in calls:
        messages = []
        for clip in CLIP.values():
            with pytest.raises(ValueError) as info:
                call(clip)
            messages.append(str(info.value))
        assert messages[0] == messages[1]
    messages = []
    for clip in CLIP.values():
        with pytest.raises(RuntimeError) as info:
            clip.clip_grad_norm_([np.array([np.inf])], 1.0, 2.5, True)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_roofline_read_reads_every_element_once_and_writes_nothing(dtype):
    """The benchmarks' one-read limit folds every element's bits with XOR: a list holding each
    array twice folds to 0 bits, one element gives its own bits, and nothing is written."""
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(n).astype(dtype) for n in (1, 4095, 4097, 70_001)]
    before = snapshot(arrays)
    assert native.roofline_read(arrays + arrays) == 0.0
    assert math.copysign(1.0, native.roofline_read(arrays + arrays)) == 1.0
    one = np.array([-2.5], dtype)
    assert native.roofline_read([one, None]) == -2.5
    assert_unchanged(before)
    with pytest.raises(TypeError, match="arrays"):
        native.roofline_read([np.zeros(3, np.int32)])


def test_every_public_clipping_function_has_both_backends():
    """``ferroptim.clip``'s public functions each have a native kernel and a reference twin of
    the same name (the backends are chosen by that name)."""
    for name in fo.clip.__all__:
        assert callable(getattr(native, name)), name
        assert callable(getattr(refclip, name)), name

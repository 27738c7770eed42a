"""Batch normalization: native kernels against the NumPy reference, against independent formulas
and finite differences, at every SIMD level and thread count, and on bad input.

Tolerances (see ``ferroptim.reference.batchnorm``): elementwise results from the same statistics
are bit-identical; statistics and parameter gradients (float64 sums in different orders) agree
within 1e-12 relative to the scale of the summed terms; end to end, float32 outputs within 1 ulp
(2 for gradients) and float64 outputs within 1e-12 relative to the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim._native as native
from conftest import assert_unchanged, snapshot
from ferroptim import batchnorm as bn
from ferroptim.reference import batchnorm as ref

DTYPES = (np.float32, np.float64)
BACKENDS = {"native": native, "reference": ref}

# (N, C), (N, C, L), (N, C, H, W): odd sizes, both reduction plans (runs of >= 512 contiguous
# elements or not), tiles wider than 256 columns, one channel, several row groups with a short
# last block, and totals above the pool's parallel threshold (65,536 elements).
SHAPES = [
    (2, 3),
    (64, 7),
    (1100, 64),
    (4, 3, 5),
    (5, 7, 33),
    (3, 1, 70),
    (2, 3, 600),
    (9, 129, 70),
    (2, 3, 4, 5),
    (3, 5, 7, 9),
    (2, 4, 24, 24),
    (6, 3, 64, 64),
    (33 * 128 + 5, 256),
]
BIG = [(1100, 64), (9, 129, 70), (6, 3, 64, 64), (33 * 128 + 5, 256)]


def data(shape, dtype, seed=0, offset=0.5, scale=2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


def channel_params(c, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return (1 + 0.5 * rng.standard_normal(c)).astype(dtype), rng.standard_normal(c).astype(dtype)


def ulp_close(a: np.ndarray, b: np.ndarray, ulps: float, label: str = "") -> None:
    """``|a - b| <= ulps`` units in the last place of the larger magnitude (float32), or
    1e-12 relative to the array's scale (float64)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a.dtype == np.float32:
        tol = ulps * np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32))
        tol = tol.astype(np.float64) + 1e-7 * np.spacing(np.float32(np.abs(b64).max() + 1))
    else:
        tol = 1e-12 * (np.abs(b64).max() + 1e-300)
    bad = np.abs(a64 - b64) > tol
    assert not bad.any(), f"{label}: {bad.sum()} elements differ, max {np.abs(a64 - b64).max()}"


def channel_view(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_stats_native_vs_reference_and_truth(shape, dtype):
    x = data(shape, dtype)
    m, v = native.batch_norm_stats(x)
    rm, rv = ref.batch_norm_stats(x)
    assert m.dtype == v.dtype == np.float64 and m.shape == v.shape == (shape[1],)
    std = np.sqrt(rv)
    assert np.all(np.abs(m - rm) <= 1e-12 * (np.abs(rm) + std))
    assert np.all(np.abs(v - rv) <= 1e-12 * rv)
    x3 = channel_view(x)
    np.testing.assert_allclose(m, x3.mean(axis=(0, 2)), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(v, x3.var(axis=(0, 2)), rtol=1e-12)


@pytest.mark.parametrize("shape", [(4096, 8), (16, 4, 32, 32), (9, 3, 20)], ids=str)
def test_stats_large_mean_float32(shape):
    """float32 data with mean 1e4 and unit variance: the variance is exact to ~1e-12 (the
    requirement is 1e-3), where float32 E[x^2] - E[x]^2 would lose every digit."""
    x = data(shape, np.float32, offset=1e4, scale=1.0)
    m, v = native.batch_norm_stats(x)
    x3 = channel_view(x)
    truth = x3.var(axis=(0, 2))
    assert np.all(np.abs(v / truth - 1) < 1e-3)
    assert np.all(np.abs(v / truth - 1) < 1e-9)
    np.testing.assert_allclose(m, x3.mean(axis=(0, 2)), rtol=1e-12)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9), (2, 3, 600), (2, 5, 3, 3)], ids=str)
def test_kernels_bit_identical_from_same_statistics(shape, dtype):
    """The elementwise kernels (forward, running update) give the same bits as the reference when
    fed the same statistics; backward's dx from the same statistics agrees to 1 ulp."""
    x, dy = data(shape, dtype), data(shape, dtype, seed=5)
    c = shape[1]
    w, b = channel_params(c, dtype)
    mean, var = ref.batch_norm_stats(x)
    for training, ww, bb in [(True, w, b), (False, w, None), (True, None, None)]:
        outs = []
        for k in BACKENDS.values():
            y = np.empty_like(x)
            invstd = k.batch_norm_forward(x, y, mean, var, ww, bb, eps=1e-5, training=training)
            rm, rv = np.linspace(-1, 1, c).astype(dtype), np.linspace(1, 2, c).astype(dtype)
            k.batch_norm_update_running(rm, rv, mean, var, x.size // c, 0.1)
            dx = np.empty_like(x)
            dw, db = k.batch_norm_backward(dy, x, mean, invstd, ww, dx, training=training)
            outs.append(((y, invstd, rm, rv), (dx, dw, db)))
        (exact, grads), (exact_ref, grads_ref) = outs
        for a, r in zip(exact, exact_ref, strict=True):
            np.testing.assert_array_equal(a, r)
        ulp_close(grads[0], grads_ref[0], 2, "dx")
        np.testing.assert_allclose(grads[1], grads_ref[1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grads[2], grads_ref[2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["train", "train-momentum-None", "eval", "train-no-affine"])
def test_forward_native_vs_reference(shape, dtype, mode):
    x = data(shape, dtype)
    c = shape[1]
    w, b = channel_params(c, dtype) if mode != "train-no-affine" else (None, None)
    results = {}
    for name in BACKENDS:
        rm, rv = np.linspace(-1, 1, c).astype(dtype), np.linspace(1, 2, c).astype(dtype)
        nbt = np.array(4, dtype=np.int64)
        y, cache = bn.batch_norm_forward(
            x,
            rm,
            rv,
            w,
            b,
            training=mode != "eval",
            momentum=None if "None" in mode else 0.1,
            num_batches_tracked=nbt,
            backend=name,
        )
        results[name] = (y, rm, rv, nbt, cache)
    (y, rm, rv, nbt, cache), (y2, rm2, rv2, nbt2, cache2) = results.values()
    ulp_close(y, y2, 1, "y")
    ulp_close(rm, rm2, 1, "running_mean")
    ulp_close(rv, rv2, 1, "running_var")
    assert int(nbt) == int(nbt2) == (4 if mode == "eval" else 5)
    np.testing.assert_allclose(cache.invstd, cache2.invstd, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 10), (2, 3, 5, 7), (3, 2, 600)], ids=str)
def test_forward_matches_torch_formulas(shape, dtype):
    """y = (x - mean)/sqrt(var + eps)*w + b with the biased batch variance; running_var takes the
    unbiased one; momentum=None is the cumulative average over num_batches_tracked."""
    x = data(shape, dtype)
    c, eps = shape[1], 1e-3
    w, b = channel_params(c, dtype)
    x3 = channel_view(x)
    mean, var = x3.mean(axis=(0, 2)), x3.var(axis=(0, 2))
    m = x3.shape[0] * x3.shape[2]
    rm0, rv0 = np.full(c, 0.5, dtype), np.full(c, 2.0, dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, _ = bn.batch_norm_forward(x, rm, rv, w, b, momentum=0.25, eps=eps)
    want = (x3 - mean[:, None]) / np.sqrt(var[:, None] + eps) * w[:, None] + b[:, None]
    np.testing.assert_allclose(
        y,
        want.reshape(shape),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-5 if dtype == np.float32 else 1e-12,
    )
    np.testing.assert_allclose(rm, 0.75 * 0.5 + 0.25 * mean, rtol=1e-6)
    np.testing.assert_allclose(rv, 0.75 * 2.0 + 0.25 * var * m / (m - 1), rtol=1e-6)
    # Cumulative average: after batches 1..3 with num_batches_tracked counting them.
    rm, rv, nbt = rm0.copy(), rv0.copy(), np.zeros((1,), np.int64)
    batches = [data(shape, dtype, seed=s) for s in range(3)]
    for xb in batches:
        bn.batch_norm_forward(xb, rm, rv, momentum=None, num_batches_tracked=nbt)
    assert nbt[0] == 3
    means = [channel_view(xb).mean(axis=(0, 2)) for xb in batches]
    np.testing.assert_allclose(rm, np.mean(means, axis=0), rtol=1e-5)
    # Eval: the running statistics normalize, nothing is updated.
    before = snapshot(rm, rv, nbt)
    y, _ = bn.batch_norm_forward(x, rm, rv, w, b, training=False, eps=eps, num_batches_tracked=nbt)
    assert_unchanged(before)
    want = (x3 - rm[:, None]) / np.sqrt(rv.astype(np.float64)[:, None] + eps) * w[:, None]
    np.testing.assert_allclose(y, (want + b[:, None]).reshape(shape), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("shape", [(1, 5), (1, 3, 1), (1, 2, 1, 1)], ids=str)
def test_one_value_per_channel(shape, backend):
    """N*S == 1: fine in eval, refused in training with torch's message (nothing modified)."""
    x = data(shape, np.float32)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    y, cache = bn.batch_norm_forward(x, rm, rv, training=False, backend=backend)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-5), rtol=1e-6)
    dx, _, _ = bn.batch_norm_backward(np.ones_like(x), cache, backend=backend)
    np.testing.assert_allclose(dx, np.full(shape, 1 / np.sqrt(1 + 1e-5)), rtol=1e-6)
    before = snapshot(rm, rv)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        bn.batch_norm_forward(x, rm, rv, training=True, backend=backend)
    assert_unchanged(before)


# ----------------------------------------------------------------------------- backward


def loss_and_grads(x, w, b, g, training, backend="native"):
    y, cache = bn.batch_norm_forward(
        x,
        np.zeros(x.shape[1]),
        np.ones(x.shape[1]) * 1.5,
        w,
        b,
        training=training,
        eps=1e-3,
        backend=backend,
    )
    return float(np.sum(y * g)), bn.batch_norm_backward(g, cache, backend=backend)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(5, 2), (3, 2, 4), (2, 2, 2, 3)], ids=str)
def test_backward_finite_differences(shape, training, backend):
    """Analytic gradients of sum(y * g) against float64 central differences."""
    x = data(shape, np.float64)
    w, b = channel_params(shape[1], np.float64)
    g = data(shape, np.float64, seed=9, offset=0.0, scale=1.0)
    _, (dx, dw, db) = loss_and_grads(x, w, b, g, training, backend)
    h = 1e-6

    def numeric(arr):
        out = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            plus = loss_and_grads(x, w, b, g, training, backend)[0]
            arr[i] = old - h
            minus = loss_and_grads(x, w, b, g, training, backend)[0]
            arr[i] = old
            out[i] = (plus - minus) / (2 * h)
        return out

    np.testing.assert_allclose(dx, numeric(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric(w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["train", "eval", "train-no-affine"])
def test_backward_native_vs_reference(shape, dtype, mode):
    x, dy = data(shape, dtype), data(shape, dtype, seed=3, offset=0.1, scale=1.0)
    c = shape[1]
    w, b = channel_params(c, dtype) if mode != "train-no-affine" else (None, None)
    out = {}
    for name in BACKENDS:
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        _, cache = bn.batch_norm_forward(x, rm, rv, w, b, training=mode != "eval", backend=name)
        out[name] = bn.batch_norm_backward(dy, cache, backend=name)
    (dx, dw, db), (dx2, dw2, db2) = out.values()
    assert dx.dtype == dtype and dx.shape == shape
    ulp_close(dx, dx2, 2, "dx")
    if w is None:
        assert dw is dw2 is None and db is db2 is None
        return
    assert dw.dtype == db.dtype == dtype
    g3, x3 = channel_view(dy), channel_view(x)
    scale_b = np.abs(g3).sum(axis=(0, 2))
    xhat = (x3 - x3.mean(axis=(0, 2))[:, None]) / np.sqrt(x3.var(axis=(0, 2))[:, None] + 1e-5)
    scale_w = np.abs(g3 * xhat).sum(axis=(0, 2))
    tol = 1e-12 if dtype == np.float64 else 1e-7
    assert np.all(np.abs(db.astype(float) - db2) <= tol * scale_b + 1e-300)
    assert np.all(np.abs(dw.astype(float) - dw2) <= tol * scale_w + 1e-300)


# ----------------------------------------------------------------------------- levels, threads


def everything(x, dy, w, b):
    """Stats, training forward and backward, and eval backward, natively."""
    mean, var = native.batch_norm_stats(x)
    y = np.empty_like(x)
    invstd = native.batch_norm_forward(x, y, mean, var, w, b, eps=1e-5, training=True)
    dx, dx_eval = np.empty_like(x), np.empty_like(x)
    dw, db = native.batch_norm_backward(dy, x, mean, invstd, w, dx, training=True)
    native.batch_norm_backward(dy, x, mean, invstd, w, dx_eval, training=False)
    return [mean, var, y, invstd, dx, dw, db, dx_eval]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_same_bits_every_level_and_thread_count(dtype, restore_simd_level, restore_num_threads):
    for shape in [*BIG, (5, 7, 33), (3, 1, 70)]:
        x, dy = data(shape, dtype), data(shape, dtype, seed=2)
        w, b = channel_params(shape[1], dtype)
        base = None
        for level in native.supported_simd_levels():
            native.set_simd_level(level)
            for threads in (1, 2):
                native.set_num_threads(threads)
                got = everything(x, dy, w, b)
                if base is None:
                    base = got
                    continue
                for k, (g, e) in enumerate(zip(got, base, strict=True)):
                    assert g.tobytes() == e.tobytes(), f"{shape} {level} {threads}: output {k}"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def problem():
    x = data((6, 3, 5), np.float32)
    w, b = channel_params(3, np.float32)
    return {
        "x": x,
        "out": np.zeros_like(x),
        "mean": np.zeros(3),
        "var": np.ones(3),
        "w": w,
        "b": b,
        "rm": np.zeros(3, np.float32),
        "rv": np.ones(3, np.float32),
    }


def forward_call(p, **changes):
    args = {**p, **changes}
    return lambda k: k.batch_norm_forward(
        args["x"],
        args["out"],
        args["mean"],
        args["var"],
        args["w"],
        args["b"],
        eps=args.get("eps", 1e-5),
        training=args.get("training", True),
    )


BAD_FORWARD = [
    # (name, changes, exception, message fragment)
    ("weight channels", {"w": np.ones(4, np.float32)}, ValueError, "weight has shape (4,)"),
    ("bias 2-d", {"b": np.ones((3, 1))}, ValueError, "bias has shape (3, 1)"),
    ("mean channels", {"mean": np.zeros(2)}, ValueError, "mean has shape (2,)"),
    ("x 1-d", {"x": np.ones(5, np.float32)}, ValueError, "x must have 2 to 4 dimensions"),
    ("x 5-d", {"x": np.ones((1, 1, 1, 1, 2))}, ValueError, "x must have 2 to 4 dimensions"),
    ("x int", {"x": np.ones((6, 3, 5), np.int64)}, TypeError, "x has dtype int64"),
    ("x float16", {"x": np.ones((6, 3, 5), np.float16)}, TypeError, "x has dtype float16"),
    ("x big-endian", {"x": np.ones((6, 3, 5), ">f4")}, TypeError, "native byte order"),
    ("x list", {"x": [[1.0, 2.0]]}, TypeError, "x must be a numpy.ndarray"),
    ("out dtype", {"out": np.zeros((6, 3, 5))}, TypeError, "out has dtype float64"),
    ("out shape", {"out": np.zeros((6, 15), np.float32)}, ValueError, "out has shape (6, 15)"),
    ("out read-only", {"out": np.zeros((6, 3, 5), np.float32)}, ValueError, "out is read-only"),
    ("weight int", {"w": np.ones(3, np.int32)}, TypeError, "weight has dtype int32"),
    ("eps < 0", {"eps": -1e-5}, ValueError, "eps"),
    ("eps nan", {"eps": float("nan")}, ValueError, "eps"),
    (
        "one value",
        {"x": np.ones((1, 3), np.float32), "out": np.zeros((1, 3), np.float32)},
        ValueError,
        "Expected more than 1 value per channel when training",
    ),
]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize(
    ("name", "changes", "exc", "msg"), BAD_FORWARD, ids=[c[0] for c in BAD_FORWARD]
)
def test_forward_errors(problem, backend, name, changes, exc, msg):
    if name == "out read-only":
        changes["out"].flags.writeable = False
    saved = snapshot(list(problem.values()), list(changes.values()))
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        forward_call(problem, **changes)(BACKENDS[backend])
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_non_contiguous_and_aliasing(problem, backend):
    k = BACKENDS[backend]
    p = problem
    saved = snapshot(list(p.values()))
    wide = np.zeros((6, 3, 10), np.float32)
    with pytest.raises(ValueError, match="x is not C-contiguous"):
        forward_call(p, x=wide[:, :, ::2])(k)
    with pytest.raises(ValueError, match="x is not C-contiguous"):
        k.batch_norm_stats(np.zeros((5, 6), np.float32).T)
    with pytest.raises(ValueError, match="out shares memory with x"):
        forward_call(p, out=p["x"])(k)
    with pytest.raises(ValueError, match="shares memory"):
        forward_call(p, w=p["out"].reshape(-1)[:3])(k)
    dx = np.zeros_like(p["x"])
    with pytest.raises(ValueError, match="dx shares memory with dy"):
        k.batch_norm_backward(dx, p["x"], p["mean"], p["var"], None, dx, training=True)
    with pytest.raises(ValueError, match="running_var shares memory with running_mean"):
        k.batch_norm_update_running(p["rm"], p["rm"], p["mean"], p["var"], 30, 0.1)
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backward_and_running_errors(problem, backend):
    k = BACKENDS[backend]
    p = problem
    dx = np.full_like(p["x"], 7)
    saved = snapshot(list(p.values()), dx)
    bad = [
        (
            TypeError,
            "x has dtype float64",
            lambda: k.batch_norm_backward(
                p["x"], p["x"].astype(np.float64), p["mean"], p["var"], None, dx, training=True
            ),
        ),
        (
            ValueError,
            "dx has shape",
            lambda: k.batch_norm_backward(
                p["x"], p["x"], p["mean"], p["var"], None, dx[:3], training=True
            ),
        ),
        (
            ValueError,
            "invstd has shape",
            lambda: k.batch_norm_backward(
                p["x"], p["x"], p["mean"], p["var"][:2], None, dx, training=True
            ),
        ),
        (
            ValueError,
            "Expected more than 1",
            lambda: k.batch_norm_backward(
                p["x"][:1, :, :1].copy(),
                p["x"][:1, :, :1].copy(),
                p["mean"],
                p["var"],
                None,
                dx[:1, :, :1].copy(),
                training=True,
            ),
        ),
        (
            ValueError,
            "running_var has shape",
            lambda: k.batch_norm_update_running(
                p["rm"], np.ones(4, np.float32), p["mean"], p["var"], 30, 0.1
            ),
        ),
        (
            TypeError,
            "running_var has dtype float64",
            lambda: k.batch_norm_update_running(p["rm"], np.ones(3), p["mean"], p["var"], 30, 0.1),
        ),
        (
            ValueError,
            "count",
            lambda: k.batch_norm_update_running(p["rm"], p["rv"], p["mean"], p["var"], 1, 0.1),
        ),
        (
            ValueError,
            "momentum",
            lambda: k.batch_norm_update_running(p["rm"], p["rv"], p["mean"], p["var"], 30, 1.5),
        ),
        (
            TypeError,
            "integer",
            lambda: k.batch_norm_update_running(p["rm"], p["rv"], p["mean"], p["var"], 30.0, 0.1),
        ),
        (
            ValueError,
            "x has no values per channel",
            lambda: k.batch_norm_stats(np.zeros((0, 3), np.float32)),
        ),
    ]
    for exc, msg, call in bad:
        with pytest.raises(exc, match=msg):
            call()
    assert_unchanged(saved)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_public_api_errors_change_nothing(problem, backend):
    p = problem
    nbt = np.array([3], np.int64)
    ro = p["rv"].copy()
    ro.flags.writeable = False
    saved = snapshot(list(p.values()), nbt, ro)
    cases = [
        (ValueError, "both", dict(running_var=None)),
        (
            ValueError,
            "required when training is False",
            dict(running_mean=None, running_var=None, training=False),
        ),
        (ValueError, "num_batches_tracked is required", dict(momentum=None)),
        (
            TypeError,
            "num_batches_tracked must be an int64",
            dict(num_batches_tracked=np.zeros(1, np.int32)),
        ),
        (ValueError, "momentum must be in", dict(momentum=2.0)),
        (ValueError, "running_var is read-only", dict(running_var=ro, num_batches_tracked=nbt)),
        (
            ValueError,
            "weight has shape",
            dict(weight=np.ones(2, np.float32), num_batches_tracked=nbt),
        ),
        (ValueError, "backend", dict(backend="cuda")),
    ]
    for exc, msg, changes in cases:
        args = dict(x=p["x"], running_mean=p["rm"], running_var=p["rv"], weight=p["w"], bias=p["b"])
        args.update({"backend": backend, **changes})
        with pytest.raises(exc, match=msg):
            bn.batch_norm_forward(**args)
    assert_unchanged(saved)
    _, cache = bn.batch_norm_forward(p["x"], p["rm"], p["rv"], backend=backend)
    with pytest.raises(ValueError, match="has shape"):
        bn.batch_norm_backward(np.ones((6, 15), np.float32), cache, backend=backend)
    with pytest.raises(TypeError, match="cache"):
        bn.batch_norm_backward(p["x"], (1, 2), backend=backend)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_out_buffers(problem, backend):
    p = problem
    y = np.empty_like(p["x"])
    args = (p["x"], p["rm"].copy(), p["rv"].copy(), p["w"], p["b"])
    got, cache = bn.batch_norm_forward(*args, out=y, backend=backend)
    assert got is y
    want, _ = bn.batch_norm_forward(p["x"], p["rm"].copy(), p["rv"].copy(), p["w"], p["b"])
    np.testing.assert_array_equal(y, want)
    dx = np.empty_like(p["x"])
    got_dx, _, _ = bn.batch_norm_backward(p["x"], cache, out=dx, backend=backend)
    assert got_dx is dx
    saved = snapshot(list(p.values()))
    with pytest.raises(ValueError, match="out shares memory with x"):
        bn.batch_norm_forward(p["x"], p["rm"], p["rv"], out=p["x"], backend=backend)
    with pytest.raises(ValueError, match="dx shares memory with dy"):
        bn.batch_norm_backward(dx, cache, out=dx, backend=backend)
    assert_unchanged(saved)

"""Batch-normalization benchmarks (rows for the ``bench`` command).

(a) Per-channel statistics of a float32 input, three ways, timed interleaved in the same run:

* ``native``: :func:`ferroptim._native.batch_norm_stats` (one read of ``x``; float64 mean and
  biased variance);
* ``numpy``: ``x.mean(axes)`` and ``x.var(axes)`` over every axis but 1 (what a NumPy user
  writes; float32 accumulation);
* ``one read``: :func:`ferroptim._native.roofline_read` on ``x`` (every element read once, bits
  folded with XOR, no arithmetic, same threads): the time of reading ``x`` once, the limit of a
  one-read kernel (``one_read_ms``).

(b) A training step of the layer, native against the NumPy reference: forward (statistics,
normalization, running-statistics update) and backward (parameter gradients and ``dx``), writing
into preallocated ``y`` and ``dx`` (``out=``; a fresh 64 MB array costs page faults worth about
as much as the kernel).

Each function is warmed up, then timed per call in blocks interleaved with the other functions'
blocks; numbers are medians.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim import _native
from ferroptim import batchnorm as bn
from ferroptim.bench.table import fmt_ratio, fmt_time, markdown_table
from ferroptim.bench.timing import Budget, Timing, kernel_threads, measure

__all__ = ["SHAPES", "batchnorm_markdown", "run_batchnorm_bench"]

#: BatchNorm1d on (N, C) features (64 MB) and BatchNorm2d on an NCHW activation (51 MB), float32.
SHAPES: tuple[tuple[int, ...], ...] = ((65536, 256), (64, 64, 56, 56))

FULL_BUDGET = Budget(seconds=0.5, min_n=10, max_n=2000, warmup=3, warmup_s=0.1, blocks=10)
REFERENCE_BUDGET = Budget(seconds=1.0, min_n=3, max_n=20, warmup=1, warmup_s=0.0, blocks=3)
QUICK_BUDGET = Budget(seconds=0.02, min_n=2, max_n=10, warmup=1, warmup_s=0.0, blocks=2)
QUICK_REFERENCE = Budget(seconds=0.0, min_n=1, max_n=1, warmup=1, warmup_s=0.0, blocks=1)


def numpy_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy statistics the native kernel is compared with."""
    axes = (0, *range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes)


def _row(section: str, variant: str, shape: tuple[int, ...], nbytes: int, t: Timing) -> dict:
    return {
        "section": section,
        "variant": variant,
        "shape": shape,
        "dtype": "float32",
        "mbytes": nbytes / 1e6,
        "median_ms": t.median_ns / 1e6,
        "p25_ms": t.p25_ns / 1e6,
        "p75_ms": t.p75_ns / 1e6,
        "n": t.n,
        "gbps": nbytes / t.median_ns,  # bytes/ns == GB/s
    }


def _stats_rows(x: np.ndarray, budget: Budget) -> list[dict[str, Any]]:
    fns: dict[str, Callable[[], object]] = {
        "native": lambda: _native.batch_norm_stats(x),
        "numpy": lambda: numpy_stats(x),
        "one read": lambda: _native.roofline_read([x]),
    }
    timings = measure(fns, budget)
    native_ns = timings["native"].median_ns
    one_read_ns = timings["one read"].median_ns
    rows = []
    for variant, timing in timings.items():
        row = _row("batch_norm_stats", variant, x.shape, x.nbytes, timing)
        row["vs_native"] = timing.median_ns / native_ns
        row["one_read_ms"] = one_read_ns / 1e6
        row["pct_of_one_read"] = one_read_ns / timing.median_ns * 100.0
        rows.append(row)
    return rows


def _layer_rows(x: np.ndarray, budget: Budget, ref_budget: Budget) -> list[dict[str, Any]]:
    c = x.shape[1]
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    weight = (1 + 0.1 * rng.standard_normal((c,))).astype(np.float32)
    bias = (0.1 * rng.standard_normal((c,))).astype(np.float32)
    state = {name: (np.zeros(c, np.float32), np.ones(c, np.float32)) for name in ("n", "r")}
    y, dx = np.empty_like(x), np.empty_like(x)

    def forward(backend: str) -> bn.BatchNormCache:
        rm, rv = state[backend[0]]
        return bn.batch_norm_forward(x, rm, rv, weight, bias, out=y, backend=backend)[1]

    def step(backend: str) -> object:
        return bn.batch_norm_backward(dy, forward(backend), out=dx, backend=backend)

    cache = forward("native")
    native = measure(
        {
            "native forward": lambda: forward("native"),
            "native backward": lambda: bn.batch_norm_backward(dy, cache, out=dx),
            "native forward+backward": lambda: step("native"),
        },
        budget,
    )
    reference = measure({"reference forward+backward": lambda: step("reference")}, ref_budget)
    # Bytes a fused implementation must move: forward reads x (stats) and reads x, writes y;
    # backward reads dy and x (sums), then reads dy and x and writes dx.
    n = x.nbytes
    moved = {"forward": 3 * n, "backward": 5 * n, "forward+backward": 8 * n}
    step_ns = native["native forward+backward"].median_ns
    rows = []
    for variant, timing in {**native, **reference}.items():
        row = _row("forward+backward", variant, x.shape, moved[variant.split()[-1]], timing)
        row["vs_native_step"] = timing.median_ns / step_ns
        rows.append(row)
    return rows


def run_batchnorm_bench(
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    *,
    threads: int = 2,
    quick: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time (a) batch-norm statistics native / NumPy / roofline and (b) a forward+backward step
    native / reference on float32 inputs of each shape; return one dict per timed function.

    Every row has ``section`` (``"batch_norm_stats"`` or ``"forward+backward"``), ``variant``,
    ``shape``, ``dtype``, ``mbytes`` (bytes the variant moves, in MB), ``median_ms``, ``p25_ms``,
    ``p75_ms``, ``n`` (timed calls) and ``gbps`` (``mbytes`` per median time). Statistics rows add
    ``vs_native`` (time over native's), ``one_read_ms`` (the ``one read`` time) and
    ``pct_of_one_read``; step rows add ``vs_native_step`` (time over the native
    forward+backward time). The kernel thread count is set to ``threads`` for the run and
    restored afterwards.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    ref_budget = QUICK_REFERENCE if quick else REFERENCE_BUDGET
    with kernel_threads(threads):
        rows: list[dict[str, Any]] = []
        for shape in shapes:
            if len(shape) < 2 or math.prod(shape) == 0:
                raise ValueError(f"shape must be (N, C, ...) with elements, got {shape}")
            x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
            rows += _stats_rows(x, budget)
            rows += _layer_rows(x, budget, ref_budget)
            del x
            gc.collect()
        return rows


def batchnorm_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`run_batchnorm_bench` as markdown tables, one per section and shape."""
    out = []
    for section in ("batch_norm_stats", "forward+backward"):
        picked = [r for r in rows if r["section"] == section]
        for shape in dict.fromkeys(r["shape"] for r in picked):
            group = [r for r in picked if r["shape"] == shape]
            if section == "batch_norm_stats":
                one_read = group[0]["one_read_ms"]
                out.append(
                    f"\nbatch_norm_stats, float32 {shape} ({group[0]['mbytes']:.0f} MB; one read "
                    f"of x: {fmt_time(one_read)} ms)\n"
                )
                cells = [
                    [
                        r["variant"],
                        fmt_time(r["median_ms"]),
                        f"{r['gbps']:.1f}",
                        fmt_ratio(r["vs_native"]),
                        f"{r['pct_of_one_read']:.0f}%",
                    ]
                    for r in group
                ]
                header = ["variant", "ms", "GB/s", "time / native", "one read / time"]
            else:
                out.append(f"\nBatchNorm training step, float32 {shape}\n")
                cells = [
                    [
                        r["variant"],
                        fmt_time(r["median_ms"]),
                        f"{r['gbps']:.1f}",
                        fmt_ratio(r["vs_native_step"]),
                    ]
                    for r in group
                ]
                header = ["variant", "ms", "GB/s (fused bytes)", "time / native step"]
            out.append(markdown_table(cells, header))
    return "\n".join(out).lstrip("\n")

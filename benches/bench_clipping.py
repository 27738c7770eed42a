"""Gradient clipping benchmarks (see :mod:`ferroptim.bench.clipping`).

``test_clip_grad_norm``: ``clip_grad_norm_`` native, the straightforward NumPy version, and the
roofline moving the same 12 bytes per float32 element (``roofline_step`` with no state on a
separate list: read p, read g, write p). Every call scales: ``max_norm`` is set just below the
norm the previous call returned. ``test_adam_max_grad_norm``: native Adam with and without
``max_grad_norm=1.0``. ``extra_info`` records bytes per element and GB/s of the median call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from ferroptim.bench.clipping import (
    CLIP_BYTES_PER_ELEM,
    MAX_NORM,
    numpy_clip_grad_norm_,
    shrinking_clip,
)
from ferroptim.bench.workloads import WORKLOADS

CLIP_WORKLOADS = ["transformer", "single"]
WARMUP_CALLS = 3


def _record(benchmark, workload: str, bytes_per_elem: int, variant: str) -> None:
    n_params = WORKLOADS[workload].n_params
    benchmark.extra_info.update(
        {"n_params": n_params, "bytes_per_elem": bytes_per_elem, "variant": variant}
    )
    if benchmark.stats:  # None/empty when run with --benchmark-disable
        median_s = benchmark.stats.stats.median
        benchmark.extra_info["gbps"] = round(bytes_per_elem * n_params / median_s / 1e9, 2)


def _clip_call(variant: str, grads: list[np.ndarray]) -> Callable[[], object]:
    if variant == "roofline":
        params = [g.copy() for g in grads]  # written; grads are only read
        return lambda: _native.roofline_step(params, grads)
    mine = [g.copy() for g in grads]
    clip = _native.clip_grad_norm_ if variant == "native" else numpy_clip_grad_norm_
    return shrinking_clip(clip, mine, _native.global_norm(mine))


@pytest.mark.parametrize("variant", ["native", "numpy", "roofline"])
@pytest.mark.parametrize("workload", CLIP_WORKLOADS)
def test_clip_grad_norm(benchmark, workload_arrays, workload: str, variant: str) -> None:
    _, grads = workload_arrays[workload]
    call = _clip_call(variant, grads)
    for _ in range(WARMUP_CALLS):
        call()
    benchmark.group = f"{workload} clip_grad_norm_"
    benchmark(call)
    _record(benchmark, workload, CLIP_BYTES_PER_ELEM * grads[0].itemsize // 4, variant)


@pytest.mark.parametrize("max_grad_norm", [None, MAX_NORM], ids=["plain", "max_grad_norm"])
def test_adam_max_grad_norm(benchmark, workload_arrays, max_grad_norm: float | None) -> None:
    params, grads = workload_arrays["transformer"]
    opt = fo.optim.Adam([p.copy() for p in params], max_grad_norm=max_grad_norm)
    step = lambda: opt.step(grads)  # noqa: E731
    for _ in range(WARMUP_CALLS):
        step()  # allocates state, faults pages in
    benchmark.group = "transformer Adam max_grad_norm"
    benchmark(step)
    extra_reads = 0 if max_grad_norm is None else 1  # the norm pass reads every gradient once
    bpe = params[0].itemsize * (3 + 2 * 2 + extra_reads)
    _record(benchmark, "transformer", bpe, "plain" if max_grad_norm is None else "max_grad_norm")

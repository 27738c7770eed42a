"""Optimizer step benchmarks: workload x optimizer x backend (native, reference, roofline).

``roofline`` is :func:`ferroptim._native.roofline_step` with the optimizer's number of state arrays:
it moves the same bytes and does no arithmetic. ``extra_info`` records bytes per element and the
effective GB/s of the median step.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from ferroptim import _native
from ferroptim.bench.configs import CONFIGS, bytes_per_element, state_arrays
from ferroptim.bench.workloads import WORKLOADS

OPTIMIZERS = ["SGD", "SGD-momentum", "Adagrad", "RMSprop-centered-momentum", "Adam", "AMSGrad",
              "Lion"]  # fmt: skip
BACKENDS = ["native", "reference", "roofline"]
WARMUP_STEPS = 3


def _reference_enabled(workload: str) -> bool:
    return WORKLOADS[workload].latency or os.environ.get("FERROPTIM_BENCH_REFERENCE") == "1"


def _make_step(
    backend: str, optimizer: str, params: list[np.ndarray], grads: list[np.ndarray]
) -> tuple[Callable[[], object], int]:
    """A zero-argument step on private copies of ``params``, and its state arrays per param."""
    config = CONFIGS[optimizer]
    params = [p.copy() for p in params]
    if backend == "roofline":
        n_state = state_arrays(config.build(params, "native"))
        states = [[np.zeros_like(p) for p in params] for _ in range(n_state)]
        return (lambda: _native.roofline_step(params, grads, *states)), n_state
    opt = config.build(params, backend)
    return (lambda: opt.step(grads)), state_arrays(opt)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step(benchmark, workload_arrays, workload: str, optimizer: str, backend: str) -> None:
    if backend == "reference" and not _reference_enabled(workload):
        pytest.skip("reference backend on a large workload: set FERROPTIM_BENCH_REFERENCE=1")
    params, grads = workload_arrays[workload]
    step, n_state = _make_step(backend, optimizer, params, grads)
    for _ in range(WARMUP_STEPS):
        step()  # allocates state, faults pages in

    benchmark.group = f"{workload} {optimizer}"
    if backend == "reference" and not WORKLOADS[workload].latency:
        benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=0)
    else:
        benchmark(step)

    n_params = WORKLOADS[workload].n_params
    bpe = bytes_per_element(n_state, params[0].itemsize)
    benchmark.extra_info.update(
        {"n_params": n_params, "n_state": n_state, "bytes_per_elem": bpe, "backend": backend}
    )
    if benchmark.stats:  # None/empty when run with --benchmark-disable
        median_s = benchmark.stats.stats.median
        benchmark.extra_info["gbps"] = round(bpe * n_params / median_s / 1e9, 2)

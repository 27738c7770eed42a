"""Optimizer step benchmarks: workload x optimizer x backend (native, reference, roofline).

``roofline`` is :func:`ferroptim._native.roofline_step` with the optimizer's number of state arrays:
it moves the same bytes and does no arithmetic. The calls are the ones ``python -m ferroptim
bench`` times (:mod:`ferroptim.bench.configs`). ``extra_info`` records bytes per element and the
effective GB/s of the median step.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from ferroptim.bench.configs import (
    CONFIGS,
    Roofline,
    bytes_per_element,
    optimizer_step,
    state_arrays,
)
from ferroptim.bench.workloads import WORKLOADS

OPTIMIZERS = ["SGD", "SGD-momentum", "Adagrad", "RMSprop-centered-momentum", "Adam", "AMSGrad",
              "Lion"]  # fmt: skip
BACKENDS = ["native", "reference", "roofline"]


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
        return Roofline(params, grads).step_fn(n_state), n_state
    return optimizer_step(config.build(params, backend), grads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step(timed, workload_arrays, workload: str, optimizer: str, backend: str) -> None:
    if backend == "reference" and not _reference_enabled(workload):
        pytest.skip("reference backend on a large workload: set FERROPTIM_BENCH_REFERENCE=1")
    params, grads = workload_arrays[workload]
    step, n_state = _make_step(backend, optimizer, params, grads)
    slow = backend == "reference" and not WORKLOADS[workload].latency
    timed(
        step,
        group=f"{workload} {optimizer}",
        workload=workload,
        bytes_per_elem=bytes_per_element(n_state, params[0].itemsize),
        rounds=3 if slow else None,
        n_state=n_state,
        backend=backend,
    )

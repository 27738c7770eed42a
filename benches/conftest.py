"""pytest-benchmark suite for ferroptim; run it explicitly::

    .venv/bin/python -m pytest benches --benchmark-enable          # everything
    .venv/bin/python -m pytest benches --benchmark-enable -k mlp    # one workload

The default ``pytest`` run (``testpaths = ["tests"]``) never loads this directory. Environment:

- ``FERROPTIM_BENCH_THREADS``: kernel threads (default 2).
- ``FERROPTIM_BENCH_REFERENCE=1``: also time the slow NumPy reference backend on the large
  workloads (it always runs on the small ``mlp`` workload).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.bench.workloads import WORKLOADS

#: calls before timing: allocate optimizer state, fault pages in
WARMUP_CALLS = 3


def pytest_configure(config: pytest.Config) -> None:
    # Collect bench_*.py files (only reached when this directory is on the command line).
    config.addinivalue_line("python_files", "bench_*.py")


@pytest.fixture(scope="session", autouse=True)
def bench_threads() -> Iterator[int]:
    """Run every benchmark with ``FERROPTIM_BENCH_THREADS`` kernel threads (default 2)."""
    threads = int(os.environ.get("FERROPTIM_BENCH_THREADS", "2"))
    old = fo.get_num_threads()
    fo.set_num_threads(threads)
    yield threads
    fo.set_num_threads(old)


@pytest.fixture(scope="session")
def workload_arrays() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Pristine (params, grads) per workload, created on first use and shared; do not modify."""
    cache: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
            cache[name] = WORKLOADS[name].make_arrays(seed=0)
            return cache[name]

    return Lazy()


@pytest.fixture
def timed(benchmark: Any) -> Callable[..., None]:
    """``timed(call, group=, workload=, bytes_per_elem=, rounds=None, **info)``: warm ``call`` up,
    time it with pytest-benchmark in ``group`` (``rounds`` single calls if given), and record in
    ``extra_info`` the workload's parameter count, the bytes moved per element, ``info`` and the
    effective GB/s of the median call (as :class:`ferroptim.bench.cells.CellResult` computes it)."""

    def run(
        call: Callable[[], object],
        *,
        group: str,
        workload: str,
        bytes_per_elem: int,
        rounds: int | None = None,
        **info: object,
    ) -> None:
        for _ in range(WARMUP_CALLS):
            call()
        benchmark.group = group
        if rounds is None:
            benchmark(call)
        else:
            benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
        n_params = WORKLOADS[workload].n_params
        benchmark.extra_info.update(
            {"n_params": n_params, "bytes_per_elem": bytes_per_elem, **info}
        )
        if benchmark.stats:  # None/empty when run with --benchmark-disable
            median_s = benchmark.stats.stats.median
            benchmark.extra_info["gbps"] = round(bytes_per_elem * n_params / median_s / 1e9, 2)

    return run

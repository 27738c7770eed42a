"""``bench --sections distributed``: DistributedOptimizer's gradient allreduce against one raw
``Allreduce`` of the same bytes, and ZeRO's state bytes and step phases, at N = 1, 2 and 4 ranks
on one machine (each N one ``mpiexec`` of :mod:`ferroptim.bench.distributed_worker`, one kernel
thread per rank so that the kernel times compare across N)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ferroptim.bench.table import markdown_table
from ferroptim.distributed._comm import INSTALL_HINT, find_mpiexec

RANKS = (1, 2, 4)


def _mpiexec() -> str:
    found = find_mpiexec()
    if found is None:
        raise ValueError(f"the distributed section needs mpiexec: {INSTALL_HINT}")
    return found


def run_distributed_bench(
    workload: str = "transformer", *, quick: bool = False, ranks: Sequence[int] = RANKS
) -> list[dict[str, Any]]:
    """One row per world size (see :mod:`ferroptim.bench.distributed_worker` for the fields)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ValueError(f"the distributed section needs mpi4py: {INSTALL_HINT}") from None
    repeats = 3 if quick else 15
    rows = []
    env = {**os.environ, "FERROPTIM_NUM_THREADS": "1"}
    for n in ranks:
        command = [_mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", "-m"]
        command += ["ferroptim.bench.distributed_worker", workload, str(repeats)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH-ROW ")]
        if proc.returncode != 0 or not lines:
            raise ValueError(
                f"mpiexec -n {n} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        rows.append({"section": "distributed", "workload": workload, **json.loads(lines[0][10:])})
    return rows


def distributed_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Two tables: the gradient allreduce, and ZeRO's memory and step phases."""
    if not rows:
        return ""
    allreduce = [
        [
            str(r["ranks"]),
            str(r["buckets"]),
            f"{r['ddp_ms']:.2f}",
            f"{r['raw_ms']:.2f}",
            "-" if r["ranks"] == 1 else f"{r['ddp_ms'] / r['raw_ms']:.2f}x",
            f"{r['agree_ms']:.2f}",
            f"{r['pack_ms']:.2f}",
            f"{r['buckets_ms']:.2f}",
            "-" if r["ranks"] == 1 else f"{r['busbw_gbps']:.2f}",
        ]
        for r in rows
    ]
    zero = [
        [
            str(r["ranks"]),
            f"{r['zero_state_bytes'] / 2**20:.1f}",
            f"{r['zero_state_bytes'] / r['single_state_bytes']:.4f} (1/N = {1 / r['ranks']:.4f})",
            f"{r['reduce_scatter_ms']:.2f}",
            f"{r['kernel_ms']:.2f}",
            f"{r['kernel_cpu_ms']:.2f}",
            f"{r['allgather_ms']:.2f}",
            f"{r['zero_step_ms']:.2f}",
        ]
        for r in rows
    ]
    name = rows[0]["workload"]
    return (
        f"### Distributed: gradient allreduce ({name}, float32, ms, median, slowest rank)\n\n"
        + markdown_table(
            allreduce,
            [
                "ranks",
                "buckets",
                "DistributedOptimizer",
                "raw Allreduce",
                "ratio",
                "agreement alone",
                "packing alone",
                "bucket collectives alone",
                "bus GB/s",
            ],
        )
        + f"\n### Distributed: ZeRO AdamW ({name}; state per rank; step phases in ms)\n\n"
        + markdown_table(
            zero,
            [
                "ranks",
                "state MiB/rank",
                "state / one process",
                "reduce-scatter",
                "kernel",
                "kernel CPU",
                "allgather",
                "step",
            ],
        )
    )

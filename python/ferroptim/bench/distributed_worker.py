"""The MPI side of ``bench --sections distributed``: run under ``mpiexec -n N python -m mpi4py -m
ferroptim.bench.distributed_worker WORKLOAD REPEATS``; rank 0 prints one JSON line of results.

Every timed call starts after a barrier and its time is the slowest rank's (an allreduce of the
per-rank times with MAX); the reported time is the median over ``REPEATS`` calls, DDP and raw
allreduce calls alternating so that both see the same machine load.

* ``ddp_ms``: :meth:`DistributedOptimizer.allreduce_gradients` on the workload's gradients
  (the agreement allreduce, packing into the buckets, one ``Iallreduce`` per 25 MiB bucket);
* ``raw_ms``: one ``comm.Allreduce(IN_PLACE)`` of a single buffer of the same bytes;
* where ``ddp_ms`` goes, each part timed alone: ``agree_ms`` (the agreement allreduce and the
  gradient checks), ``pack_ms`` (the packing copy: the caller's gradients into the buckets,
  scaled by the rank's weight on the way), ``buckets_ms`` (the buckets' ``Iallreduce`` calls
  and ``Waitall`` on already packed buffers); the rest of ``ddp_ms`` is Python glue;
* ``busbw_gbps``: ``2 (N-1)/N * bytes / raw time`` (the bus bandwidth of a ring allreduce);
* ZeRO (AdamW): state bytes on this rank against one process's, and the median step split into
  reduce-scatter (packing included), kernel (the shard's fused step and the clipping norm) and
  allgather (copy into the user's arrays included); ``kernel_cpu_ms`` is the kernel's CPU time
  (one thread), which shows the 1/N of the work even when N ranks share fewer cores.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist
from ferroptim.bench.workloads import WORKLOADS
from ferroptim.distributed._signature import agree_on_step, check_grads


def _timed(comm, fn: Callable[[], object]) -> float:
    """Seconds of one collective call, the slowest rank's."""
    from mpi4py import MPI

    comm.Barrier()
    start = time.perf_counter()
    fn()
    return comm.allreduce(time.perf_counter() - start, op=MPI.MAX)


def _allreduce_rows(comm, params, grads, repeats: int) -> dict[str, float]:
    from mpi4py import MPI

    ddp = dist.DistributedOptimizer(fo.optim.AdamW(params))
    raw = np.concatenate([g.reshape(-1) for g in grads])
    present = np.ones(len(params), dtype=bool)

    def agree() -> None:
        checked, problem = check_grads(ddp.optimizer, params, grads)
        agree_on_step(comm, len(checked), problem, present, None)

    calls = {
        "ddp": lambda: ddp.allreduce_gradients(grads),
        "raw": lambda: comm.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM),
        "agree": agree,
        "pack": lambda: ddp._buckets.pack(grads, 0.5, accumulate=False),
        "buckets": lambda: MPI.Request.Waitall(ddp._buckets.start_sum(comm)),
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for k in range(repeats + 2):
        for name, call in calls.items():
            seconds = _timed(comm, call)
            if k >= 2:  # two warm-up rounds
                samples[name].append(seconds)
    size = comm.Get_size()
    ddp_s, raw_s = statistics.median(samples["ddp"]), statistics.median(samples["raw"])
    return {
        "buckets": len(ddp.bucket_sizes),
        "ddp_ms": ddp_s * 1e3,
        "raw_ms": raw_s * 1e3,
        "agree_ms": statistics.median(samples["agree"]) * 1e3,
        "pack_ms": statistics.median(samples["pack"]) * 1e3,
        "buckets_ms": statistics.median(samples["buckets"]) * 1e3,
        "busbw_gbps": 2 * (size - 1) / size * raw.nbytes / raw_s / 1e9,
        "ddp_busbw_gbps": 2 * (size - 1) / size * raw.nbytes / ddp_s / 1e9,
    }


def _zero_rows(comm, params, grads, repeats: int) -> dict[str, float]:
    single = fo.optim.AdamW([p.copy() for p in params])
    single.step(grads)
    single_bytes = sum(
        a.nbytes for entry in single.state.values() for a in entry.values() if hasattr(a, "nbytes")
    )
    del single
    zero = dist.ZeroRedundancyOptimizer(params, max_grad_norm=1.0)
    phases: dict[str, list[float]] = {
        "reduce_scatter": [],
        "kernel": [],
        "allgather": [],
        "kernel_cpu": [],
    }
    totals = []
    for k in range(repeats + 1):
        totals.append(_timed(comm, lambda: zero.step(grads)))
        slowest = np.array([zero.last_timings[p] for p in phases])
        comm.Allreduce(_in_place(), slowest, op=_max())
        if k >= 1:
            for name, value in zip(phases, slowest, strict=True):
                phases[name].append(float(value))
    state = comm.allreduce(zero.state_nbytes(), op=_max())
    return {
        "zero_state_bytes": state,
        "single_state_bytes": single_bytes,
        "zero_step_ms": statistics.median(totals[1:]) * 1e3,
        **{f"{name}_ms": statistics.median(v) * 1e3 for name, v in phases.items()},
    }


def _max():
    from mpi4py import MPI

    return MPI.MAX


def _in_place():
    from mpi4py import MPI

    return MPI.IN_PLACE


def main(argv: list[str]) -> None:
    workload_name, repeats = argv[0], int(argv[1])
    comm = dist.init()
    params, grads = WORKLOADS[workload_name].make_arrays(0)
    row: dict[str, object] = {"ranks": comm.Get_size(), "threads": fo.get_num_threads()}
    row.update(_allreduce_rows(comm, params, grads, repeats))
    row.update(_zero_rows(comm, params, grads, repeats))
    if comm.Get_rank() == 0:
        print("BENCH-ROW " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

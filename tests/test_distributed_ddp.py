"""DistributedOptimizer and the broadcasts under mpiexec (tests/mpi/mpi_ddp.py): every
optimizer and dtype against one process on the global batch, groups, clipping, schedules,
nan on one rank, None gradients, uneven batches, no_sync, small buckets and split collectives,
refusals on every rank, mismatched models."""

import pytest

from mpi_launch import run_mpi


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_distributed_optimizer_matches_one_process(nprocs):
    run_mpi("mpi_ddp.py", nprocs, "all")

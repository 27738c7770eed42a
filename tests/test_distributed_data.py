"""DistributedSampler and SyncBatchNorm under mpiexec (tests/mpi/mpi_data.py): every rank's share,
and SyncBatchNorm on uneven (and empty) slices equal to BatchNorm on the whole batch."""

import pytest

from mpi_launch import run_mpi


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_sampler_and_sync_batchnorm(nprocs):
    run_mpi("mpi_data.py", nprocs, "all")

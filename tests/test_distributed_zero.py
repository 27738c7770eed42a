"""ZeroRedundancyOptimizer under mpiexec (tests/mpi/mpi_zero.py): every optimizer and dtype
against one process on the global batch, replicas bitwise equal, consolidated state equal to
one process's, state bytes 1/N, groups, clipping, nan on one rank, split collectives,
refusals; a checkpoint saved at N=2 resumed at N=1, 3 and 4."""

import pytest

from mpi_launch import run_mpi


@pytest.fixture(scope="module")
def checkpoint_at_two_ranks(tmp_path_factory):
    path = tmp_path_factory.mktemp("zero") / "zero.ckpt"
    run_mpi("mpi_zero.py", 2, "all", f"save={path}")
    return path


def test_zero_at_two_ranks_and_save(checkpoint_at_two_ranks):
    assert checkpoint_at_two_ranks.with_name("zero.ckpt.float32").exists()


@pytest.mark.parametrize("nprocs", [1, 3, 4])
def test_zero_resumes_a_two_rank_checkpoint(checkpoint_at_two_ranks, nprocs):
    run_mpi("mpi_zero.py", nprocs, "all", f"resume={checkpoint_at_two_ranks}")

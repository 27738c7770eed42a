"""fit over MPI ranks (tests/mpi/mpi_fit.py): the same parameters and logs as one process on the
same global batches (uneven slices, SyncBatchNorm, accumulation, augmentation, clipping), global
logs, rank-0-only files, bars and plots, and one stopping decision on every rank."""

import os
import subprocess
import sys

import pytest

from mpi_launch import MPI_SCRIPTS, mpiexec, run_mpi


@pytest.mark.parametrize("nprocs", [2, 3])
def test_fit_over_ranks_equals_one_process(nprocs, tmp_path):
    run_mpi("mpi_fit.py", nprocs, "all", str(tmp_path))


def test_a_rank_raising_inside_fit_ends_the_job_with_nonzero_status():
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py"]
    command += [str(MPI_SCRIPTS / "mpi_fit.py"), "raise_in_fit"]
    env = {**os.environ, "FERROPTIM_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode != 0
    assert "deliberate failure inside fit on one rank" in proc.stdout + proc.stderr

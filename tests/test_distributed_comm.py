"""ferroptim.distributed's communicator, run under mpiexec (tests/mpi_launch.py)."""

import os
import subprocess
import sys

import pytest

from mpi_launch import mpiexec, run_mpi


@pytest.mark.parametrize("nprocs", [1, 2, 4])
def test_init_rank_size(nprocs):
    run_mpi("mpi_comm.py", nprocs, "world")


def test_threads_default_to_cores_per_rank():
    cores = os.cpu_count() or 1
    env = {"FERROPTIM_NUM_THREADS": ""}
    run_mpi("mpi_comm.py", 1, "threads", str(cores), env=env)
    run_mpi("mpi_comm.py", 2, "threads", str(max(1, cores // 2)), env=env)
    run_mpi("mpi_comm.py", 2, "threads", "1", env={"FERROPTIM_NUM_THREADS": "1"})


def test_a_raising_rank_ends_the_job_with_nonzero_status():
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py"]
    command += [os.path.join(os.path.dirname(__file__), "mpi", "mpi_comm.py"), "raise_on_rank", "1"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "deliberate failure on one rank" in proc.stdout + proc.stderr


def test_import_ferroptim_does_not_import_mpi4py():
    code = "import sys, ferroptim; assert 'mpi4py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

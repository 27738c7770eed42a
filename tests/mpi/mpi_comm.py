"""Cases for tests/test_distributed_comm.py: the communicator, rank/size and thread defaults."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _case import run_cases

import ferroptim as fo
from ferroptim import distributed as dist


def world() -> None:
    from mpi4py import MPI

    comm = dist.init()
    assert comm is MPI.COMM_WORLD and dist.init() is comm
    assert dist.rank() == MPI.COMM_WORLD.Get_rank() and dist.size() == MPI.COMM_WORLD.Get_size()


def threads(expected: str) -> None:
    dist.init()
    assert fo.get_num_threads() == int(expected), (fo.get_num_threads(), expected)


def raise_on_rank(bad: str) -> None:
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == int(bad):
        raise RuntimeError("deliberate failure on one rank")
    MPI.COMM_WORLD.Barrier()  # the other ranks would wait here forever without -m mpi4py


run_cases({"world": world, "threads": threads, "raise_on_rank": raise_on_rank})

"""Data-parallel training and ZeRO-sharded optimizer state over MPI (mpi4py).

Launch with ``mpiexec -n 4 python -m mpi4py my_script.py``: ``-m mpi4py`` aborts the whole job when
one rank raises instead of leaving the others waiting in a collective. ``import ferroptim`` never
imports mpi4py; this package does so on first use.
"""

from ferroptim.distributed._comm import init, rank, size
from ferroptim.distributed.broadcast import broadcast_optimizer_state, broadcast_parameters
from ferroptim.distributed.ddp import DistributedOptimizer
from ferroptim.distributed.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from ferroptim.distributed.zero import ZeroRedundancyOptimizer

__all__ = [
    "DistributedOptimizer",
    "SyncBatchNorm",
    "ZeroRedundancyOptimizer",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "convert_sync_batchnorm",
    "init",
    "rank",
    "size",
]

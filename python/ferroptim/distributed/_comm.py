"""The MPI communicator ferroptim's distributed layer runs on.

mpi4py is imported on first use only, so ``import ferroptim`` never needs it. :func:`init` picks the
communicator once (mpi4py's ``COMM_WORLD`` unless one is given) and, unless
``FERROPTIM_NUM_THREADS`` is set, gives each rank ``cores // ranks_on_this_node`` kernel threads so
that N ranks on one machine do not oversubscribe its cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"comm": None}

INSTALL_HINT = (
    "ferroptim.distributed needs mpi4py and an MPI library: pip install 'ferroptim[distributed]' "
    "(mpi4py plus the MPICH wheel), or mpi4py built against your cluster's MPI"
)


def mpi() -> Any:
    """The ``mpi4py.MPI`` module, or an ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return MPI


def find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this interpreter (the MPICH wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def init(comm: Any = None) -> Any:
    """Return the communicator in use, choosing it on the first call (idempotent).

    ``comm=None`` means the one already chosen, or mpi4py's ``COMM_WORLD`` on the first call. A
    communicator passed on a later call replaces the default for calls that give none.
    """
    with _lock:
        if comm is not None:
            _check_comm(comm)
            _state["comm"] = comm
        elif _state["comm"] is None:
            _state["comm"] = mpi().COMM_WORLD
        chosen = _state["comm"]
        if not _state.get("threads_set"):
            _state["threads_set"] = True
            _default_threads(chosen)
        return chosen


def resolve(comm: Any = None) -> Any:
    """``comm`` itself when given (checked), else :func:`init`'s communicator."""
    if comm is None:
        return init()
    _check_comm(comm)
    return comm


def rank(comm: Any = None) -> int:
    """This process's rank in ``comm`` (default: the communicator in use)."""
    return int(resolve(comm).Get_rank())


def size(comm: Any = None) -> int:
    """The number of ranks in ``comm`` (default: the communicator in use)."""
    return int(resolve(comm).Get_size())


def _check_comm(comm: Any) -> None:
    if not isinstance(comm, mpi().Comm):
        raise TypeError(f"comm must be an mpi4py.MPI.Comm, got {type(comm).__name__}")


def _default_threads(comm: Any) -> None:
    """Kernel threads per rank: cores // ranks on this node, unless FERROPTIM_NUM_THREADS is set."""
    if os.environ.get("FERROPTIM_NUM_THREADS"):
        return
    from ferroptim._native import set_num_threads

    node = comm.Split_type(mpi().COMM_TYPE_SHARED)
    try:
        ranks_here = node.Get_size()
    finally:
        node.Free()
    set_num_threads(max(1, (os.cpu_count() or 1) // ranks_here))

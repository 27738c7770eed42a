"""Buffer-based MPI collectives on NumPy arrays, split so that no call passes more than
:data:`MAX_COUNT` elements (MPI counts are C ints: at most ``2**31 - 1``).

Every function here is collective: all ranks of ``comm`` call it with the same sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim.distributed._comm import mpi

#: the largest element count one MPI call is given (tests lower it to force splitting)
MAX_COUNT = 2**31 - 1

#: shards and bucket buffers start on this many bytes (a cache line, an AVX-512 vector)
ALIGN_BYTES = 64


def max_count() -> int:
    """The element limit in force (read at call time, so tests can lower :data:`MAX_COUNT`)."""
    return MAX_COUNT


def spans(n: int, limit: int | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` pieces of ``range(n)``, each at most ``limit`` long (one empty piece for
    ``n == 0``, so that every rank still takes part in the call)."""
    limit = max_count() if limit is None else limit
    if n == 0:
        return [(0, 0)]
    return [(a, min(a + limit, n)) for a in range(0, n, limit)]


def aligned_zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed 1-d array of ``n`` elements whose data starts on an :data:`ALIGN_BYTES` boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + ALIGN_BYTES, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGN_BYTES
    return raw[offset : offset + n * dtype.itemsize].view(dtype)


def iallreduce_sum(comm: Any, buffer: np.ndarray) -> list[Any]:
    """Start in-place sums of the 1-d contiguous ``buffer`` over all ranks; return the requests."""
    MPI = mpi()
    return [comm.Iallreduce(MPI.IN_PLACE, buffer[a:b], op=MPI.SUM) for a, b in spans(buffer.size)]


def allreduce_sum(comm: Any, buffer: np.ndarray) -> None:
    """Sum the 1-d contiguous ``buffer`` over all ranks, in place."""
    mpi().Request.Waitall(iallreduce_sum(comm, buffer))


def reduce_scatter_block(comm: Any, flat: np.ndarray, shard: np.ndarray) -> None:
    """``shard`` (``flat.size // size`` elements) = this rank's block of the sum of every rank's
    ``flat``. Pieces of a block that is too long go through a contiguous scratch copy."""
    MPI = mpi()
    n, block = comm.Get_size(), shard.size
    pieces = spans(block)
    if len(pieces) == 1:
        comm.Reduce_scatter_block(flat, shard, op=MPI.SUM)
        return
    blocks = flat.reshape(n, block)
    for a, b in pieces:
        send = np.ascontiguousarray(blocks[:, a:b])
        comm.Reduce_scatter_block(send, shard[a:b], op=MPI.SUM)


def allgather_in_place(comm: Any, flat: np.ndarray) -> None:
    """Every rank's block of ``flat`` (``flat.size // size`` elements each) to every rank."""
    MPI = mpi()
    n = comm.Get_size()
    block = flat.size // n
    pieces = spans(block)
    if len(pieces) == 1:
        comm.Allgather(MPI.IN_PLACE, flat)
        return
    blocks = flat.reshape(n, block)
    mine = comm.Get_rank()
    for a, b in pieces:
        recv = np.empty((n, b - a), dtype=flat.dtype)
        comm.Allgather(np.ascontiguousarray(blocks[mine, a:b]), recv)
        blocks[:, a:b] = recv


def gather_blocks(comm: Any, block: np.ndarray, root: int) -> np.ndarray | None:
    """Every rank's 1-d ``block`` (same length everywhere) stacked as ``(size, len)`` on ``root``
    (None elsewhere)."""
    n, mine = comm.Get_size(), comm.Get_rank()
    out = np.empty((n, block.size), dtype=block.dtype) if mine == root else None
    for a, b in spans(block.size):
        recv = np.empty((n, b - a), dtype=block.dtype) if mine == root else None
        comm.Gather(np.ascontiguousarray(block[a:b]), recv, root=root)
        if out is not None:
            out[:, a:b] = recv
    return out


def bcast_array(comm: Any, array: np.ndarray, root: int) -> None:
    """Overwrite the contiguous ``array`` on every rank with ``root``'s, in place."""
    flat = array.reshape(-1)
    for a, b in spans(flat.size):
        comm.Bcast(flat[a:b], root=root)


def reduce_sum_to(comm: Any, array: np.ndarray, root: int) -> np.ndarray | None:
    """The sum over ranks of the contiguous ``array`` on ``root`` (None elsewhere)."""
    MPI = mpi()
    flat = np.ascontiguousarray(array).reshape(-1)
    out = np.empty_like(flat) if comm.Get_rank() == root else None
    for a, b in spans(flat.size):
        comm.Reduce(flat[a:b], None if out is None else out[a:b], op=MPI.SUM, root=root)
    return None if out is None else out.reshape(array.shape)

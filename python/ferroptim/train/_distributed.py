"""fit's data-parallel side: which ranks train, each rank's slice of a batch, global logs.

A distributed optimizer announces itself with two attributes (the protocol fit relies on):
``is_distributed = True`` and ``comm`` (its mpi4py communicator); its ``step(grads)`` averages
the ranks' gradients (sum / world size) before updating, so every replica stays identical.
``ferroptim.distributed.DistributedOptimizer`` and ``ZeroRedundancyOptimizer`` do.

Each global batch ``b`` (the single-process batch of ``batch_size`` indices, from the same
seeded order) is split over the ``R`` ranks with the ``DistributedSampler`` interleave
``b[rank::R]``, without padding, so the ranks together see exactly the single-process batch.
Rank ``r`` scales its loss gradient by ``R * |b_r| / |b|``: after the optimizer's average over
ranks the gradient is that of the mean loss over the whole batch, also when the slices are
uneven (the last batch) and through SyncBatchNorm (whose backward sums every rank's ``dy``, so
all ranks must use the same scale of the global loss, which per-rank sample weighting of the
averaged gradients would not give).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._seed import new_generator
from ferroptim.train._data import MeanTracker


def fit_comm(optimizer: Any, distributed: bool | None) -> Any:
    """The communicator fit trains over, or None for one process.

    ``distributed=None`` follows the optimizer (its ``comm`` when ``is_distributed``);
    ``True`` forces the data-parallel path (the optimizer's ``comm``, else
    ``ferroptim.distributed.init()``'s, with :func:`averaging`); ``False`` trains every rank on
    all the data.
    """
    if distributed is not None and not isinstance(distributed, (bool, np.bool_)):
        raise TypeError(f"distributed must be a bool or None, got {distributed!r}")
    announced = getattr(optimizer, "is_distributed", False) is True
    if distributed is False or (distributed is None and not announced):
        return None
    from ferroptim.distributed import _comm

    return _comm.resolve(getattr(optimizer, "comm", None) if announced else None)


def averaging(optimizer: Any, comm: Any) -> Any:
    """``optimizer`` if it averages gradients over ranks itself, else a
    ``DistributedOptimizer`` wrapping it on ``comm`` (for ``fit(..., distributed=True)``)."""
    if getattr(optimizer, "is_distributed", False) is True:
        return optimizer
    from ferroptim.distributed import DistributedOptimizer

    return DistributedOptimizer(optimizer, comm=comm)


def shared_seed(comm: Any, seed: int | None) -> int | None:
    """``seed``, or (``None``) one that rank 0 draws from its ``ferroptim.manual_seed`` stream
    (fresh entropy without one) and sends to every rank, so that all ranks shuffle the same."""
    if comm is None or seed is not None:
        return seed
    drawn = int(new_generator().integers(2**63)) if comm.Get_rank() == 0 else None
    return comm.bcast(drawn, root=0)


def rank_slice(comm: Any, index: np.ndarray) -> np.ndarray:
    """This rank's part of a global batch of indices (every ``size``-th from ``rank``)."""
    return index[comm.Get_rank() :: comm.Get_size()]


def gradient_scale(comm: Any, local: int, whole: int) -> float:
    """``R * |b_r| / |b|``: see the module docstring."""
    return comm.Get_size() * local / whole


def global_means(comm: Any, tracker: MeanTracker, names: list[str]) -> dict[str, float]:
    """The sample-weighted means of ``names`` over every rank's ``tracker``: one ``Allgather``
    of (sum, ..., count) per rank, added in rank order, so every rank gets the same bits."""
    local = np.array([tracker.sums.get(name, 0.0) for name in names] + [tracker.count], float)
    everyone = np.empty((comm.Get_size(), len(local)))
    comm.Allgather(local, everyone)
    totals = everyone.sum(axis=0)
    count = totals[-1]
    return {name: (totals[i] / count if count else float("nan")) for i, name in enumerate(names)}


def any_rank(comm: Any, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on some rank (a callback stopping training)."""
    from ferroptim.distributed._comm import mpi

    return bool(comm.allreduce(bool(flag), op=mpi().LOR))


def consolidation(comm: Any, optimizer: Any, callbacks: list) -> Any:
    """``optimizer.consolidate_state_dict`` (collective: every rank calls it, rank 0 receives)
    when a callback saves the optimizer state of a sharded optimizer, else None. Decided from
    every callback (rank-0-only ones included) so all ranks agree."""
    gather = getattr(optimizer, "consolidate_state_dict", None)
    if comm is None or gather is None:
        return None
    if not any(getattr(c, "saves_optimizer_state", False) for c in callbacks):
        return None
    return gather


def runs_on_empty_share(model: Any) -> bool:
    """Whether a rank whose share of a batch is empty (a last batch with fewer samples than
    ranks) must still run forward and backward (on no samples, with a zero gradient): with
    SyncBatchNorm (collectives every rank joins) or Dropout (a generator every rank advances
    alike). Other models skip the empty share."""
    from ferroptim.distributed.sync_batchnorm import SyncBatchNorm
    from ferroptim.nn.dropout import Dropout

    return any(isinstance(m, (SyncBatchNorm, Dropout)) for m in model.modules())

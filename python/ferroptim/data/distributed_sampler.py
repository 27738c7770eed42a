"""DistributedSampler: each rank's share of a dataset's indices (``torch.utils.data.distributed``).

Every rank builds the same epoch order (one permutation from ``seed + epoch``, or ``0..n-1``),
extends it to ``total_size = num_samples * num_replicas`` by repeating its head (or cuts it to
``total_size`` with ``drop_last``), and keeps every ``num_replicas``-th index starting at its rank::

    num_samples = ceil(n / R)                    (drop_last=False)
    num_samples = ceil((n - R) / R)              (drop_last=True and R does not divide n)
    indices     = (order + order[:pad])[rank : total_size : R]

These are torch's rules; the permutation itself is ferroptim's
(``np.random.default_rng(seed + epoch).permutation(n)``), not the bits of torch's ``randperm``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim._checks import check_flag, check_int

__all__ = ["DistributedSampler", "epoch_order", "rank_share"]


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The epoch's order of ``0..n-1`` (int64): ``default_rng(seed + epoch).permutation(n)``
    when shuffling, else ``arange(n)``; the same on every rank."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng(seed + epoch).permutation(n).astype(np.int64, copy=False)


def rank_share(order: np.ndarray, num_replicas: int, rank: int, drop_last: bool) -> np.ndarray:
    """torch's split of an epoch ``order`` (length ``n``): padded by repeating ``order`` from
    its start up to a multiple of ``num_replicas`` (cut down to one with ``drop_last``), then
    every ``num_replicas``-th index from ``rank`` on."""
    n = len(order)
    num_samples = _num_samples(n, num_replicas, drop_last)
    total = num_samples * num_replicas
    if total > n and n > 0:
        order = np.resize(order, total)  # np.resize repeats the array from its start
    return order[rank:total:num_replicas]


def _num_samples(n: int, num_replicas: int, drop_last: bool) -> int:
    if drop_last and n % num_replicas != 0:
        return math.ceil((n - num_replicas) / num_replicas)
    return math.ceil(n / num_replicas)


class DistributedSampler:
    """The indices of a dataset that one rank of a data-parallel job reads each epoch.

    Iterating yields this rank's ``len(sampler)`` indices (Python ints) of the current epoch;
    call :meth:`set_epoch` before each epoch so that every epoch has a new order (the same on
    every rank, since all ranks use the same ``seed``). Together the ranks cover every index;
    without ``drop_last`` up to ``num_replicas - 1`` indices are repeated so that every rank has
    the same count, with ``drop_last`` the tail is dropped instead. See the module docstring for
    the formulas (torch's ``DistributedSampler``; the permutation is ferroptim's own).

    Parameters
    ----------
    n : int or sized
        The dataset size, or an object with ``len()``.
    num_replicas : int, optional
        The number of ranks (default: ``ferroptim.distributed.size()``, which needs mpi4py).
    rank : int, optional
        This rank, in ``[0, num_replicas)`` (default: ``ferroptim.distributed.rank()``).
    shuffle : bool
        Permute the indices every epoch (default True); ``False`` keeps ``0..n-1``.
    seed : int
        Non-negative; the epoch's permutation is drawn from ``seed + epoch``.
    drop_last : bool
        Drop the tail instead of padding (default False).

    Raises
    ------
    TypeError
        ``n`` without a length, non-integer ``num_replicas``/``rank``/``seed``/epoch.
    ValueError
        ``n < 0``, ``num_replicas < 1``, ``rank`` outside ``[0, num_replicas)``, negative
        ``seed`` or epoch.
    """

    def __init__(
        self,
        n: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        size = _dataset_size(n)
        if num_replicas is None or rank is None:
            from ferroptim import distributed as dist

            num_replicas = dist.size() if num_replicas is None else num_replicas
            rank = dist.rank() if rank is None else rank
        num_replicas = check_int("num_replicas", num_replicas, low=1)
        rank = check_int("rank", rank)
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.n = size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = check_flag("shuffle", shuffle)
        self.seed = check_int("seed", seed, low=0)
        self.drop_last = check_flag("drop_last", drop_last)
        self.epoch = 0
        #: indices this rank yields per epoch
        self.num_samples = _num_samples(size, num_replicas, self.drop_last)
        #: indices yielded by all ranks together per epoch
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (a non-negative int) from now on."""
        self.epoch = check_int("epoch", epoch, low=0)

    def indices(self) -> np.ndarray:
        """This rank's indices of the current epoch as an int64 array."""
        order = epoch_order(self.n, self.shuffle, self.seed, self.epoch)
        return rank_share(order, self.num_replicas, self.rank, self.drop_last)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, rank={self.rank}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})"
        )


def _dataset_size(n: Any) -> int:
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        size = int(n)
    elif hasattr(n, "__len__") and not isinstance(n, (str, bytes)):
        size = len(n)
    else:
        raise TypeError(f"n must be an int or have a length, got {type(n).__name__}")
    if size < 0:
        raise ValueError(f"n must be >= 0, got {size}")
    return size

"""SyncBatchNorm: batch normalization whose training statistics span every rank's batch.

Rank ``r`` holds ``m_r`` values per channel (``m_r = N_r * S``; ``N_r`` may differ between ranks,
even be 0). Forward gathers every rank's float64 ``(mean_r, var_r, m_r)`` (one ``Allgather``) and
combines them, in rank order and so bit-identically on every rank::

    M    = sum_r m_r
    mean = sum_r m_r * mean_r / M
    var  = sum_r m_r * (var_r + (mean_r - mean)**2) / M          (biased, as BatchNorm)

then normalizes its own slice with them (the native kernel) and updates the running statistics
with ``M`` values (unbiased ``var * M / (M - 1)``). Backward allreduces the two per-channel sums
``sum dy`` and ``sum dy * xhat`` (one ``Allreduce`` of ``2C`` float64) and computes::

    dx = (M * dy - sum dy - xhat * sum(dy * xhat)) * weight * invstd / M

The weight and bias gradients are this rank's own sums (as in torch): a data-parallel optimizer
that averages gradients over ranks then gives those of one process on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ferroptim import _native
from ferroptim.distributed._comm import mpi, resolve
from ferroptim.nn._checks import check_upstream, require_cache
from ferroptim.nn.module import Module
from ferroptim.nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["SyncBatchNorm", "combine_batch_stats", "convert_sync_batchnorm"]


def combine_batch_stats(
    means: np.ndarray, variances: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """The mean and biased variance of the union of ranks' batches, from each rank's.

    ``means``/``variances`` are float64 ``(R, C)``, ``counts`` ``(R,)``; rows with count 0 add
    nothing. Returns ``(mean, var, M)`` with the formulas of the module docstring.
    """
    total = int(counts.sum())
    weights = counts.astype(np.float64)[:, None]
    mean = (weights * means).sum(axis=0) / total
    var = (weights * (variances + np.square(means - mean))).sum(axis=0) / total
    return mean, var, total


@dataclass(frozen=True)
class _SyncCache:
    x: np.ndarray
    mean: np.ndarray
    invstd: np.ndarray
    count: int  # values per channel over all ranks
    comm: Any


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over axis 1 with statistics of the whole batch across ranks
    (``torch.nn.SyncBatchNorm``).

    Same parameters, buffers, state_dict keys and formulas as :class:`~ferroptim.nn.BatchNorm1d`
    / ``BatchNorm2d`` (inputs ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``); in training the
    batch is the union of every rank's batch (see :mod:`ferroptim.distributed.sync_batchnorm`).
    Every rank must call ``forward`` and ``backward`` in training together (collectives), with
    the same ``C``; a rank may pass an empty batch (``N = 0``). Running statistics stay
    bit-identical on every rank. In eval mode, or on a single rank, it is exactly BatchNorm.

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, dtype
        As for BatchNorm.
    comm : mpi4py.MPI.Comm, optional (keyword)
        The ranks to synchronize (default: ``ferroptim.distributed.init()``'s, looked up at the
        first forward, so building the layer needs no MPI).

    Raises
    ------
    ValueError
        Wrong rank or channel count, or one value per channel over all ranks in training
        (raised on every rank). Nothing is modified when a call fails.
    """

    layer = "SyncBatchNorm"
    ndims = (2, 3, 4)

    def __init__(self, num_features: int, *args: Any, comm: Any = None, **kwargs: Any) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.comm = comm

    def _communicator(self) -> Any:
        """The communicator when this forward must synchronize (training with batch
        statistics on more than one rank), else None."""
        if not self.training:
            return None
        comm = resolve(self.comm)
        return comm if comm.Get_size() > 1 else None

    def forward(self, x: Any) -> np.ndarray:
        comm = self._communicator()
        if comm is None:
            return super().forward(x)
        x = self.checked_input(x)
        mean, var, count = self._global_stats(x, comm)
        y = np.empty_like(x)
        if x.size:  # training=False: the count check is the global one above
            invstd = _native.batch_norm_forward(
                x, y, mean, var, self.weight, self.bias, eps=self.eps, training=False
            )
        else:
            invstd = 1.0 / np.sqrt(var + self.eps)
        if self.track_running_stats:
            # track_running_stats: the three buffers exist (narrowed for the type checker)
            assert self.running_mean is not None and self.running_var is not None
            assert self.num_batches_tracked is not None
            tracked = int(self.num_batches_tracked) + 1
            factor = 1.0 / tracked if self.momentum is None else self.momentum
            _native.batch_norm_update_running(
                self.running_mean, self.running_var, mean, var, count, factor
            )
            self.num_batches_tracked[...] = tracked
        self._cache = _SyncCache(x=x, mean=mean, invstd=invstd, count=count, comm=comm)
        return y

    def _global_stats(self, x: np.ndarray, comm: Any) -> tuple[np.ndarray, np.ndarray, int]:
        c = self.num_features
        local = np.zeros(2 * c + 1)
        local[2 * c] = x.size // c
        if x.size:
            local[:c], local[c : 2 * c] = _native.batch_norm_stats(x)
        gathered = np.empty((comm.Get_size(), 2 * c + 1))
        comm.Allgather(local, gathered)
        mean, var, count = combine_batch_stats(
            gathered[:, :c], gathered[:, c : 2 * c], gathered[:, 2 * c]
        )
        if count <= 1:
            raise ValueError(
                f"{self.layer}: Expected more than 1 value per channel when training, got "
                f"{count} over all ranks (input size {x.shape} on this rank)"
            )
        return mean, var, count

    def backward(self, dy: Any) -> np.ndarray:
        cache = require_cache(self._cache, self.layer)
        if not isinstance(cache, _SyncCache):
            return super().backward(dy)
        x = cache.x
        dy = check_upstream(dy, x.shape, self.dtype, self.layer)
        c = self.num_features
        dx = np.empty_like(x)
        sums = np.zeros(2 * c)  # [sum dy, sum dy * xhat] over this rank's values
        if x.size:  # training=False writes dy*weight*invstd into dx, replaced below
            dweight, dbias = _native.batch_norm_backward(
                dy, x, cache.mean, cache.invstd, self.weight, dx, training=False
            )
            sums[:c], sums[c:] = dbias, dweight
        local = sums.copy()
        cache.comm.Allreduce(mpi().IN_PLACE, sums, op=mpi().SUM)
        if x.size:
            dx[...] = _input_gradient(dy, x, cache, sums[:c], sums[c:], self.weight)
        if self.affine:
            self.grad("weight")[...] += local[c:].astype(self.dtype)
            self.grad("bias")[...] += local[:c].astype(self.dtype)
        self._cache = None
        return dx


def _input_gradient(
    dy: np.ndarray,
    x: np.ndarray,
    cache: _SyncCache,
    sum_dy: np.ndarray,
    sum_dy_xhat: np.ndarray,
    weight: np.ndarray | None,
) -> np.ndarray:
    """``(M dy - sum dy - xhat sum(dy xhat)) * weight * invstd / M`` in float64 (the reference
    kernel's expression and order), as an array of ``x``'s shape."""
    n, c = x.shape[0], x.shape[1]
    shape = (n, c, -1)
    col = (None, slice(None), None)  # a per-channel vector as (1, C, 1)
    count = float(cache.count)
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    scale = w * cache.invstd / count
    g3 = dy.reshape(shape).astype(np.float64)
    xhat = (x.reshape(shape).astype(np.float64) - cache.mean[col]) * cache.invstd[col]
    out = ((count * g3 - sum_dy[col]) - xhat * sum_dy_xhat[col]) * scale[col]
    return out.reshape(x.shape)


def convert_sync_batchnorm(module: Module, comm: Any = None) -> Module:
    """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` by a :class:`SyncBatchNorm`
    (recursively; ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``).

    The replacement keeps the same parameter, gradient and buffer arrays (so an optimizer built
    earlier still steps them), frozen flags, training mode and state_dict keys. Returns the
    converted module: ``module`` itself, changed in place, unless it is a BatchNorm.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module must be a ferroptim.nn.Module, got {type(module).__name__}")
    if isinstance(module, _BatchNorm) and type(module) in (BatchNorm1d, BatchNorm2d):
        return _sync_copy(module, comm)
    for name, child in list(module._modules.items()):
        converted = convert_sync_batchnorm(child, comm)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _sync_copy(bn: _BatchNorm, comm: Any) -> SyncBatchNorm:
    sync = SyncBatchNorm(
        bn.num_features,
        bn.eps,
        bn.momentum,
        bn.affine,
        bn.track_running_stats,
        comm=comm,
        dtype=bn.dtype,
    )
    for name in list(sync._parameters):
        setattr(sync, name, bn._parameters[name])
        sync._gradients[name] = bn._gradients[name]
    for name in list(sync._buffers):
        setattr(sync, name, bn._buffers[name])
    sync._frozen.update(bn._frozen)
    sync.training = bn.training
    return sync

"""Batch normalization with torch.nn.BatchNorm1d / BatchNorm2d semantics, as fused kernels.

Inputs have channels on axis 1: ``(N, C)`` or ``(N, C, L)`` (BatchNorm1d), ``(N, C, H, W)``
(BatchNorm2d); float32 or float64, C-contiguous. Channel ``k`` holds the ``m = N*S`` values
``x[:, k, ...]`` (``S`` = product of the spatial dimensions). ::

    import ferroptim as fo
    y, cache = fo.batchnorm.batch_norm_forward(x, running_mean, running_var, weight, bias)
    dx, dweight, dbias = fo.batchnorm.batch_norm_backward(dy, cache)

Each function takes ``backend="native"`` (the Rust kernels: one read of ``x`` for the
statistics, one pass for the normalization, one reduction and one elementwise pass for the
gradients, spread over ``ferroptim.set_num_threads`` threads) or ``backend="reference"`` (the
pure-NumPy twin in :mod:`ferroptim.reference.batchnorm`). The backends agree bit for bit on
elementwise results computed from the same statistics, and to about 1e-15 relative on the
statistics and parameter gradients (float64 sums in different orders); see the reference module
for the exact tolerances. Native statistics are the same bits at every SIMD level and thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ferroptim._backends import BATCH_NORM, backend_module

__all__ = ["BatchNormCache", "batch_norm_backward", "batch_norm_forward", "batch_norm_stats"]


def _backend(backend: str) -> ModuleType:
    return backend_module(backend, BATCH_NORM)


@dataclass(frozen=True)
class BatchNormCache:
    """What :func:`batch_norm_backward` needs from a forward pass.

    ``x`` is the forward input itself (not a copy): do not modify it before the backward pass.
    ``mean`` and ``invstd`` are float64 ``(C,)``: the batch statistics in training, the running
    statistics (as they were at the forward pass) in eval.
    """

    x: np.ndarray
    mean: np.ndarray
    invstd: np.ndarray
    weight: np.ndarray | None
    bias_dtype: np.dtype | None
    training: bool


def batch_norm_stats(x: np.ndarray, *, backend: str = "native") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance.

    .. math::

        \\mu_k = \\frac{1}{m} \\sum_{i,j} x_{i,k,j}, \\qquad
        \\sigma^2_k = \\frac{1}{m} \\sum_{i,j} (x_{i,k,j} - \\mu_k)^2, \\qquad m = N S

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, float32 or float64, C-contiguous.
    backend : {"native", "reference"}

    Returns
    -------
    mean, var : numpy.ndarray
        float64 arrays of shape ``(C,)``. Accumulated in float64 with a stable two-pass method
        (the variance of float32 data with mean 1e4 and unit variance is exact to ~1e-12).

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray.
    ValueError
        ``x`` is not C-contiguous, has fewer than 2 or more than 4 dimensions, or no values per
        channel.
    """
    return _backend(backend).batch_norm_stats(x)


def _momentum(momentum: float | None) -> float | None:
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, int | float | np.number):
        raise TypeError(f"momentum must be a float or None, got {type(momentum).__name__}")
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
    return m


def _counter(num_batches_tracked: object) -> np.ndarray:
    """torch's ``num_batches_tracked`` buffer: an int64 array of one element, updated in place."""
    a = num_batches_tracked
    if not isinstance(a, np.ndarray) or a.dtype != np.int64:
        raise TypeError(
            "num_batches_tracked must be an int64 numpy array of one element (shape () or (1,)), "
            f"got {type(a).__name__}"
            + (f" of dtype {a.dtype}" if isinstance(a, np.ndarray) else "")
        )
    if a.size != 1 or a.ndim > 1:
        raise ValueError(f"num_batches_tracked must have one element, got shape {a.shape}")
    if not a.flags.writeable:
        raise ValueError("num_batches_tracked is read-only; it must be writeable")
    if int(a.reshape(())) < 0:
        raise ValueError(f"num_batches_tracked must be >= 0, got {int(a.reshape(()))}")
    return a


def batch_norm_forward(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = True,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
    backend: str = "native",
) -> tuple[np.ndarray, BatchNormCache]:
    """Batch normalization forward (``torch.nn.functional.batch_norm``).

    .. math::

        y = \\frac{x - \\mu_k}{\\sqrt{\\sigma^2_k + \\epsilon}} \\, w_k + b_k

    computed as ``(x - mean) * (invstd * weight) + bias`` in float64 and rounded once to the
    dtype of ``x``. In training, ``mean`` and ``var`` are the batch statistics
    (:func:`batch_norm_stats`, biased variance) and the running statistics, when given, are
    updated in place::

        running_mean = (1 - f) * running_mean + f * mean
        running_var  = (1 - f) * running_var  + f * var * m / (m - 1)     (unbiased, m = N*S)

    with ``f = momentum``, or ``f = 1 / num_batches_tracked`` (after its increment) when
    ``momentum is None`` (cumulative average). ``num_batches_tracked`` is incremented in place in
    training whenever running statistics are given. In eval the running statistics normalize.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, float32 or float64, C-contiguous.
    running_mean, running_var : numpy.ndarray or None
        ``(C,)`` float32 or float64 (both the same dtype), updated in place in training. Both
        ``None``: no running statistics (training only).
    weight, bias : numpy.ndarray or None
        ``(C,)`` float32 or float64; ``None`` means ``affine=False`` (weight 1, bias 0).
    training : bool
        Batch statistics (True) or running statistics (False).
    momentum : float or None
        In ``[0, 1]``; ``None`` for the cumulative moving average.
    eps : float
        Added to the variance, ``>= 0``.
    num_batches_tracked : numpy.ndarray or None
        int64 array with one element (torch's buffer); required when ``momentum is None`` in
        training with running statistics.
    out : numpy.ndarray or None
        Where to write ``y`` (``x``'s shape and dtype, C-contiguous, not overlapping any input).
        Reusing a buffer avoids the page faults of a fresh allocation, which for large arrays
        cost about as much as the kernel itself.
    backend : {"native", "reference"}

    Returns
    -------
    y : numpy.ndarray
        ``out``, or a new array of ``x``'s shape and dtype.
    cache : BatchNormCache
        For :func:`batch_norm_backward`.

    Raises
    ------
    TypeError
        An array of the wrong kind or dtype, ``momentum`` or ``num_batches_tracked`` of the wrong
        type.
    ValueError
        Shapes or channel counts that do not match, non-contiguous or read-only arrays, an
        output sharing memory with an input, ``eps < 0``, ``momentum`` outside ``[0, 1]``, only
        one of the running statistics, eval without running statistics, or training with one
        value per channel ("Expected more than 1 value per channel when training").
        Nothing is modified when an exception is raised.
    """
    kernels = _backend(backend)
    momentum = _momentum(momentum)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be arrays or both be None")
    tracking = running_mean is not None
    counter = None
    if num_batches_tracked is not None:
        counter = _counter(num_batches_tracked)
    if training and tracking and momentum is None and counter is None:
        raise ValueError("num_batches_tracked is required when momentum is None")
    if out is not None:
        y = out
    else:
        y = np.empty_like(x, order="C") if isinstance(x, np.ndarray) else x
    if training:
        mean, var = kernels.batch_norm_stats(x)
        invstd = kernels.batch_norm_forward(x, y, mean, var, weight, bias, eps=eps, training=True)
        if tracking:
            count = math.prod(x.shape) // max(x.shape[1], 1)
            if momentum is None:
                factor = 1.0 / float(int(counter.reshape(())) + 1)  # type: ignore[union-attr]
            else:
                factor = momentum
            kernels.batch_norm_update_running(running_mean, running_var, mean, var, count, factor)
        if tracking and counter is not None:
            counter[...] += 1
    else:
        if not tracking:
            raise ValueError("running_mean and running_var are required when training is False")
        invstd = kernels.batch_norm_forward(
            x, y, running_mean, running_var, weight, bias, eps=eps, training=False
        )
        mean = np.array(running_mean, dtype=np.float64)
    cache = BatchNormCache(
        x=x,
        mean=mean,
        invstd=invstd,
        weight=weight,
        bias_dtype=None if bias is None else bias.dtype,
        training=bool(training),
    )
    return y, cache


def batch_norm_backward(
    dy: np.ndarray,
    cache: BatchNormCache,
    *,
    out: np.ndarray | None = None,
    backend: str = "native",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`batch_norm_forward`.

    Per channel, with ``m = N*S`` values and ``xhat = (x - mean) * invstd``:

    .. math::

        \\frac{\\partial L}{\\partial b_k} = \\sum dy, \\qquad
        \\frac{\\partial L}{\\partial w_k} = \\sum dy \\, \\hat x, \\qquad
        dx = \\frac{w_k \\, \\mathrm{invstd}_k}{m}
             \\Big(m \\, dy - \\sum dy - \\hat x \\sum dy \\, \\hat x\\Big)

    in training (the statistics depend on ``x``); in eval ``dx = dy * weight * invstd``. One
    float64 reduction pass over ``dy`` and ``x``, one elementwise pass writing ``dx``.

    Parameters
    ----------
    dy : numpy.ndarray
        Gradient of the loss with respect to ``y``: ``x``'s shape and dtype, C-contiguous.
    cache : BatchNormCache
        From :func:`batch_norm_forward`.
    out : numpy.ndarray or None
        Where to write ``dx`` (``x``'s shape and dtype, C-contiguous, not overlapping ``dy`` or
        ``x``).
    backend : {"native", "reference"}

    Returns
    -------
    dx : numpy.ndarray
        ``out``, or a new array of ``x``'s shape and dtype.
    dweight, dbias : numpy.ndarray or None
        ``(C,)`` in the dtype of ``weight`` / ``bias``; ``None`` when the forward pass had no
        weight / bias.

    Raises
    ------
    TypeError, ValueError
        ``dy`` of another dtype or shape than ``x``, or not contiguous.
    """
    kernels = _backend(backend)
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"cache must be a BatchNormCache, got {type(cache).__name__}")
    dx = np.empty_like(cache.x, order="C") if out is None else out
    dweight, dbias = kernels.batch_norm_backward(
        dy, cache.x, cache.mean, cache.invstd, cache.weight, dx, training=cache.training
    )
    dw = None if cache.weight is None else dweight.astype(cache.weight.dtype)
    db = None if cache.bias_dtype is None else dbias.astype(cache.bias_dtype)
    return dx, dw, db

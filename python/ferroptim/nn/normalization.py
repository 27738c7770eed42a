"""BatchNorm1d and BatchNorm2d (``torch.nn``) on the native kernels of
:mod:`ferroptim.batchnorm`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim import batchnorm as _kernels
from ferroptim._checks import CLOSED_UNIT, check_flag, check_int, check_real
from ferroptim.nn._checks import check_input, check_upstream, require_cache
from ferroptim.nn.module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared body; subclasses set ``layer`` and the accepted ranks ``ndims``."""

    layer = "BatchNorm"
    ndims: tuple[int, ...] = ()

    weight: np.ndarray | None
    bias: np.ndarray | None
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None
    momentum: float | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        self.num_features = check_int("num_features", num_features, low=1)
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.layer}: eps must be a float, got {eps!r}")
        if not eps >= 0:
            raise ValueError(f"{self.layer}: eps must be >= 0, got {eps}")
        if momentum is not None:
            momentum = check_real(f"{self.layer}: momentum", momentum, CLOSED_UNIT)
        for name, flag in (("affine", affine), ("track_running_stats", track_running_stats)):
            check_flag(f"{self.layer}: {name}", flag)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        if self.affine:
            self.register_parameter("weight", np.ones(c))
            self.register_parameter("bias", np.zeros(c))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, self.dtype))
            self.register_buffer("running_var", np.ones(c, self.dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
            # register_buffer makes arrays at least 1-d; torch's counter is 0-d.
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache: Any = None  # a BatchNormCache (SyncBatchNorm keeps its own kind)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, counter 0 (in place)."""
        if self.running_mean is not None and self.running_var is not None:
            self.running_mean.fill(0)
            self.running_var.fill(1)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.fill(0)

    def checked_input(self, x: Any) -> np.ndarray:
        """``x`` as a C-contiguous array of the module dtype with ``num_features`` channels."""
        x = check_input(x, self.dtype, ndim=self.ndims, layer=self.layer)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.layer}: input must have {self.num_features} channels on axis 1, "
                f"got shape {x.shape}"
            )
        return x

    def forward(self, x: Any) -> np.ndarray:
        x = self.checked_input(x)
        use_batch_stats = self.training or not self.track_running_stats
        y, cache = _kernels.batch_norm_forward(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=use_batch_stats,
            momentum=self.momentum,
            eps=self.eps,
            num_batches_tracked=self.num_batches_tracked,
        )
        self._cache = cache
        return y

    def backward(self, dy: Any) -> np.ndarray:
        cache = require_cache(self._cache, self.layer)
        dy = check_upstream(dy, cache.x.shape, self.dtype, self.layer)
        dx, dweight, dbias = _kernels.batch_norm_backward(dy, cache)
        if self.affine:
            self.grad("weight")[...] += dweight
            self.grad("bias")[...] += dbias
        self._cache = None
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


_DOC = """Batch normalization over axis 1 of {shapes}.

    .. math::

        y = \\frac{{x - \\mu_c}}{{\\sqrt{{\\sigma^2_c + \\epsilon}}}} \\, w_c + b_c

    In training ``mu`` and ``sigma^2`` are the batch mean and biased variance over every axis
    but 1, and the running statistics are updated in place:
    ``running = (1 - momentum) * running + momentum * batch`` (the unbiased variance
    ``n/(n-1) sigma^2`` for ``running_var``; ``momentum=None`` is the cumulative average
    ``1/num_batches_tracked``). In eval the running statistics normalize (batch statistics when
    ``track_running_stats=False``). Forward and backward run the native kernels of
    :mod:`ferroptim.batchnorm`.

    Parameters
    ----------
    num_features : int
        ``C``, the size of axis 1.
    eps : float
        Added to the variance (default 1e-5).
    momentum : float or None
        Running-average factor in ``[0, 1]`` (default 0.1), or None.
    affine : bool
        Learn ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool
        Keep the buffers ``running_mean`` (0), ``running_var`` (1) and ``num_batches_tracked``
        (int64, 0-d) under torch's state_dict keys.
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.

    Raises
    ------
    ValueError
        Wrong rank or channel count (named with the shape), or one value per channel in
        training ("Expected more than 1 value per channel when training"). Nothing is
        modified when a call fails.
    """


class BatchNorm1d(_BatchNorm):
    __doc__ = _DOC.format(shapes="``(N, C)`` or ``(N, C, L)`` inputs")
    layer = "BatchNorm1d"
    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    __doc__ = _DOC.format(shapes="``(N, C, H, W)`` inputs")
    layer = "BatchNorm2d"
    ndims = (4,)

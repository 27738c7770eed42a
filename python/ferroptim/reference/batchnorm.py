"""Reference batch-normalization kernels: the pure-NumPy twin of ``ferroptim._native``'s
``batch_norm_stats``, ``batch_norm_update_running``, ``batch_norm_forward`` and
``batch_norm_backward``, with the same signatures, checks and exception types.

Layout: ``x`` of shape ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` is viewed as ``(N, C, S)``;
channel ``k`` holds the ``m = N*S`` values ``x[:, k, ...]``. All arithmetic is float64.

How closely the two backends agree:

- Elementwise results (``out`` of ``batch_norm_forward`` for given ``mean``/``var``, the running
  statistics of ``batch_norm_update_running`` for given ``mean``/``var``) are **bit-identical**:
  the same float64 operations in the same order, rounded once to the array dtype.
- Reductions (``mean``, ``var``, ``dweight``, ``dbias``) are float64 sums in a different order
  (NumPy's pairwise two-pass here; natively one read, per-chunk sums about a shift near the
  chunk's mean combined with Chan's formula in a fixed order, see ``rust/core/src/batchnorm``): they
  agree to about 1e-15 relative, and within 1e-12 relative to the scale of the summed terms
  (``|mean| + std`` for the mean, ``var`` for the variance, ``sum(|dy|)`` and
  ``sum(|dy * xhat|)`` for the parameter gradients).
- So end to end (statistics, then normalization; or the backward pass) float32 results agree to
  within 1 ulp and float64 results to about 1e-12 relative to the values' scale.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ferroptim._checks import kernel_flag as flag
from ferroptim._checks import kernel_real as real

__all__ = [
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_stats",
    "batch_norm_update_running",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------- checks


def _shape(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"


def _array(obj: object, name: str, written: bool) -> np.ndarray:
    """An ndarray of float32/float64 in native byte order, C-contiguous, aligned, writeable if
    written (the native binding's rules and exception types), returned as a plain ndarray view
    of the caller's memory: a subclass (``np.matrix``, a memmap, a masked array's data) is
    computed on as an ndarray, and a written array is written in place, never copied."""
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype not in _FLOATS or not obj.dtype.isnative:
        raise TypeError(
            f"{name} has dtype {obj.dtype}; expected float32 or float64 in native byte order"
        )
    if not obj.flags.c_contiguous:
        raise ValueError(
            f"{name} is not C-contiguous; pass a contiguous array (np.ascontiguousarray)"
        )
    if obj.size > 0 and not obj.flags.aligned:
        raise ValueError(f"{name} is not aligned for its dtype")
    if written and not obj.flags.writeable:
        raise ValueError(f"{name} is read-only; it must be writeable")
    return np.asarray(obj)


def _data(obj: object, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A data array with 2 to 4 dimensions and its ``(n, c, s)`` layout."""
    a = _array(obj, name, False)
    if not 2 <= a.ndim <= 4:
        raise ValueError(
            f"{name} must have 2 to 4 dimensions (N, C), (N, C, L) or (N, C, H, W), "
            f"got shape {_shape(a.shape)}"
        )
    return a, (a.shape[0], a.shape[1], math.prod(a.shape[2:]))


def _same_as(obj: object, name: str, written: bool, like: np.ndarray, like_name: str):
    a = _array(obj, name, written)
    if a.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {like_name} has dtype {like.dtype}")
    if a.shape != like.shape:
        raise ValueError(
            f"{name} has shape {_shape(a.shape)} but {like_name} has shape {_shape(like.shape)}"
        )
    return a


def _per_channel(obj: object, name: str, written: bool, c: int) -> np.ndarray:
    a = _array(obj, name, written)
    if a.shape != (c,):
        raise ValueError(
            f"{name} has shape {_shape(a.shape)} but the input has {c} channels; "
            f"expected shape ({c},)"
        )
    return a


def _optional(obj: object, name: str, c: int) -> np.ndarray | None:
    return None if obj is None else _per_channel(obj, name, False, c)


def _check_overlaps(arrays: list[tuple[str, np.ndarray, bool]]) -> None:
    """Refuse a written array that shares memory with any other argument."""
    for i, (name_a, a, written_a) in enumerate(arrays):
        for name_b, b, written_b in arrays[:i]:
            if (written_a or written_b) and np.may_share_memory(a, b):
                w, other = (name_a, name_b) if written_a else (name_b, name_a)
                raise ValueError(
                    f"{w} shares memory with {other}; an output must not overlap any input"
                )


def _check_training(count: int, c: int, shape: tuple[int, ...]) -> None:
    if count <= 1 and c > 0:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {_shape(shape)}"
        )


def _channels(x64: np.ndarray, n: int, c: int, s: int) -> np.ndarray:
    """``x`` as float64 of shape ``(n, c, s)``."""
    return x64.reshape(n, c, s)


def _col(v: np.ndarray) -> np.ndarray:
    """A per-channel float64 vector shaped to broadcast over ``(n, c, s)``."""
    return np.asarray(v, dtype=np.float64)[None, :, None]


# ----------------------------------------------------------------------------- kernels


def batch_norm_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of ``x``, as float64 arrays of shape ``(C,)``::

        mean[k] = sum(x[:, k]) / m        var[k] = sum((x[:, k] - mean[k])**2) / m

    with ``m = N*S`` values per channel (a two-pass computation in float64).
    """
    a, (n, c, s) = _data(x, "x")
    if n * s == 0 and c > 0:
        raise ValueError(f"x has no values per channel (shape {_shape(a.shape)})")
    x3 = _channels(a.astype(np.float64), n, c, s)
    mean = x3.mean(axis=(0, 2))
    var = np.square(x3 - _col(mean)).mean(axis=(0, 2))
    return mean, var


def batch_norm_update_running(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    count: int,
    momentum: float,
) -> None:
    """Update running statistics in place (float64 arithmetic, rounded once)::

    running_mean = (1 - momentum)*running_mean + momentum*mean
    running_var  = (1 - momentum)*running_var  + momentum*(var*(count/(count - 1)))
    """
    count = operator.index(count)
    momentum = real("momentum", momentum)
    rm = _array(running_mean, "running_mean", True)
    if rm.ndim != 1:
        raise ValueError(f"running_mean must be 1-d, got shape {_shape(rm.shape)}")
    c = rm.shape[0]
    rv = _per_channel(running_var, "running_var", True, c)
    if rv.dtype != rm.dtype:
        raise TypeError(f"running_var has dtype {rv.dtype} but running_mean has dtype {rm.dtype}")
    m = _per_channel(mean, "mean", False, c)
    v = _per_channel(var, "var", False, c)
    _check_overlaps(
        [
            ("running_mean", rm, True),
            ("running_var", rv, True),
            ("mean", m, False),
            ("var", v, False),
        ]
    )
    if count < 2:
        raise ValueError(
            f"count: the unbiased variance needs at least 2 values per channel, got {count}"
        )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: must be in [0, 1], got {momentum}")
    keep = 1.0 - momentum
    unbias = count / (count - 1.0)
    m64, v64 = m.astype(np.float64), v.astype(np.float64)
    new_mean = keep * rm.astype(np.float64) + momentum * m64
    new_var = keep * rv.astype(np.float64) + momentum * (v64 * unbias)
    rm[...] = new_mean.astype(rm.dtype)
    rv[...] = new_var.astype(rv.dtype)


def batch_norm_forward(
    x: np.ndarray,
    out: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    *,
    eps: float,
    training: bool,
) -> np.ndarray:
    """Write ``out = (x - mean) * (invstd*weight) + bias`` per channel, with
    ``invstd = 1/sqrt(var + eps)`` (float64, rounded once to ``x``'s dtype); return ``invstd``
    (float64, shape ``(C,)``). A missing weight acts as 1, a missing bias as 0."""
    eps = real("eps", eps)
    training = flag("training", training)
    a, (n, c, s) = _data(x, "x")
    o = _same_as(out, "out", True, a, "x")
    m = _per_channel(mean, "mean", False, c)
    v = _per_channel(var, "var", False, c)
    w = _optional(weight, "weight", c)
    b = _optional(bias, "bias", c)
    arrays = [("x", a, False), ("out", o, True), ("mean", m, False), ("var", v, False)]
    arrays += [(name, arr, False) for name, arr in (("weight", w), ("bias", b)) if arr is not None]
    _check_overlaps(arrays)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps: must be a finite number >= 0, got {eps}")
    if training:
        _check_training(n * s, c, a.shape)
    invstd = 1.0 / np.sqrt(v.astype(np.float64) + eps)
    scale = invstd * (1.0 if w is None else w.astype(np.float64))
    shift = np.zeros(c) if b is None else b.astype(np.float64)
    x3 = _channels(a.astype(np.float64), n, c, s)
    y = (x3 - _col(m)) * _col(scale) + _col(shift)
    o[...] = y.reshape(a.shape).astype(a.dtype)
    return invstd


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    weight: np.ndarray | None,
    dx: np.ndarray,
    *,
    training: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``dx`` and return ``(dweight, dbias)`` (float64, shape ``(C,)``). Per channel, with
    ``m = N*S`` and ``xhat = (x - mean)*invstd``::

        dbias   = sum(dy)
        dweight = sum(dy*(x - mean)) * invstd
        dx = ((m*dy - dbias) - xhat*dweight) * (weight*invstd/m)     training
        dx = dy * (weight*invstd)                                    eval
    """
    training = flag("training", training)
    g, (n, c, s) = _data(dy, "dy")
    a = _same_as(x, "x", False, g, "dy")
    d = _same_as(dx, "dx", True, g, "dy")
    m = _per_channel(mean, "mean", False, c)
    i = _per_channel(invstd, "invstd", False, c)
    w = _optional(weight, "weight", c)
    arrays = [("dy", g, False), ("x", a, False), ("dx", d, True), ("mean", m, False)]
    arrays += [("invstd", i, False)] + ([("weight", w, False)] if w is not None else [])
    _check_overlaps(arrays)
    if training:
        _check_training(n * s, c, g.shape)
    count = float(n * s)
    g3 = _channels(g.astype(np.float64), n, c, s)
    x3 = _channels(a.astype(np.float64), n, c, s)
    m64, i64 = m.astype(np.float64), i.astype(np.float64)
    w64 = np.ones(c) if w is None else w.astype(np.float64)
    dbias = g3.sum(axis=(0, 2))
    dweight = (g3 * (x3 - _col(m64))).sum(axis=(0, 2)) * i64
    if training:
        scale = w64 * i64 / count
        xhat = (x3 - _col(m64)) * _col(i64)
        out = ((count * g3 - _col(dbias)) - xhat * _col(dweight)) * _col(scale)
    else:
        out = g3 * _col(w64 * i64)
    d[...] = out.reshape(g.shape).astype(g.dtype)
    return dweight, dbias

"""Reference gradient clipping (torch.nn.utils semantics): pure-NumPy twins of the clipping
functions of ``ferroptim._native``, same names, signatures, errors and results.

Norms follow the native accumulation order exactly, so the results have the same bits (norm types
1, 2 and inf; other ``p`` agree to about 1e-15 relative, as NumPy's vectorized power may round
differently from libm's ``pow``):

* each array (``None`` entries skipped) is cut into chunks of 4096 elements at fixed offsets;
* element ``i`` of a chunk, first clamped into ``[-c, c]`` in the array dtype (``global_norm``
  with ``clip_value``), then converted to float64, adds ``term(x)`` to lane ``i % 16``, in
  element order: ``x * x`` (L2), ``|x|`` (L1; inf with a NaN-propagating maximum instead of the
  sum), ``|x| ** p`` (other ``p``); the 16 lanes start at 0.0;
* the lanes are folded in order from 0.0 into the chunk's partial, the chunk partials in order
  into the array's partial, the array partials in order into the total, which is finished by
  ``sqrt`` (L2), ``** (1 / p)`` (other ``p``) or nothing (L1, inf).

Scaling multiplies an array by its coefficient rounded once to the array dtype (arrays whose
coefficient is exactly 1 are left alone); clamping leaves NaN unchanged (torch.clamp).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ferroptim._array_checks import ArrayChecker
from ferroptim._checks import kernel_flag as flag
from ferroptim._checks import kernel_real as real
from ferroptim.reference._checks import _items
from ferroptim.reference._common import cast, clamp, ieee
from ferroptim.reference._types import OptGrads

#: elements per chunk and accumulators per chunk (``ferroptim_core::clip``)
NORM_CHUNK = 4096
LANES = 16
_EPS = 1e-6  # torch's clip_grad_norm_ denominator offset

_Norm = tuple[str, float]  # ("l1" | "l2" | "inf" | "p", p)


# ----------------------------------------------------------------------------- arguments


def _rust_float(value: float) -> str:
    """``value`` as Rust's ``{}`` formats an f64 (``2``, ``0.5``, ``-1``, ``NaN``, ``inf``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return np.format_float_positional(value, unique=True, trim="-")


def _norm_type(p: float) -> _Norm:
    if p == 1.0:
        return ("l1", p)
    if p == 2.0:
        return ("l2", p)
    if p == math.inf:
        return ("inf", p)
    if p > 0.0 and math.isfinite(p):
        return ("p", p)
    raise ValueError(f"norm_type: must be positive (or inf), got {_rust_float(p)}")


def _positive(name: str, value: float) -> float:
    if value > 0.0 and math.isfinite(value):
        return value
    raise ValueError(f"{name}: must be a positive finite number, got {_rust_float(value)}")


def _clip_bound(value: float) -> float:
    if value >= 0.0 and math.isfinite(value):
        return value
    raise ValueError(f"clip_value: must be a finite number >= 0, got {_rust_float(value)}")


def _gather(grads: object, written: bool) -> list[np.ndarray]:
    """The checked arrays of ``grads`` in order, ``None`` entries skipped (the native rules:
    float32/float64, C-contiguous, aligned; writeable and non-overlapping when ``written``)."""
    checker = ArrayChecker()
    arrays = [
        checker.array(a, "grads", i, written)
        for i, a in enumerate(_items("grads", grads))
        if a is not None
    ]
    if written:
        checker.check_overlaps()
    if not arrays:
        raise ValueError("grads: the list of gradients is empty")
    return arrays


# ----------------------------------------------------------------------------- norms


def _maximum(a: float, b: float) -> float:
    """The native NaN-propagating maximum: ``a`` if ``a`` is NaN or ``a > b``, else ``b``."""
    return a if a != a or a > b else b


def _add(a: float, b: float) -> float:
    return a + b


def _merge(norm: _Norm) -> Callable[[float, float], float]:
    return _maximum if norm[0] == "inf" else _add


def _fold(values: object, merge: Callable[[float, float], float]) -> float:
    acc = 0.0
    for v in values:  # type: ignore[attr-defined]
        acc = merge(acc, float(v))
    return acc


def _terms(x: np.ndarray, norm: _Norm) -> np.ndarray:
    """Each element's float64 contribution."""
    kind, p = norm
    if kind == "l2":
        return x * x
    if kind == "p":
        return np.power(np.abs(x), p)
    return np.abs(x)


def _partial(array: np.ndarray, norm: _Norm, clip_value: float | None) -> float:
    """One array's partial result (``sum term``, or ``max |x|`` for inf), in native order."""
    x = array.reshape(-1)
    if clip_value is not None:
        x = clamp(x, clip_value)  # in the array dtype
    n = x.size
    if n == 0:
        return 0.0
    chunks = -(-n // NORM_CHUNK)
    with ieee():
        terms = np.zeros(chunks * NORM_CHUNK, np.float64)  # zero padding: adds nothing to a lane
        terms[:n] = _terms(x.astype(np.float64), norm)
        blocks = terms.reshape(chunks, NORM_CHUNK // LANES, LANES)
        if norm[0] == "inf":
            # max over the lanes, then over the lanes' maxima from 0.0: the chunk maximum (NaN if
            # any element is NaN; terms are >= +0, so no signed-zero question arises).
            chunk_partials = blocks.max(axis=(1, 2))
        else:
            # Lane k of a chunk: its elements added one after the other (cumsum is sequential);
            # then the 16 lanes added in order (0.0 + lane_0 == lane_0, lanes being >= +0 or NaN).
            lanes = np.cumsum(blocks, axis=1)[:, -1, :]
            chunk_partials = np.cumsum(lanes, axis=1)[:, -1]
    return _fold(chunk_partials.tolist(), _merge(norm))


def _partials(arrays: list[np.ndarray], norm: _Norm, clip_value: float | None) -> list[float]:
    return [_partial(a, norm, clip_value) for a in arrays]


def _finish(partial: float, norm: _Norm) -> float:
    kind, p = norm
    if kind == "l2":
        return math.sqrt(partial)  # partial is >= 0, inf or NaN
    if kind == "p":
        with ieee():
            return float(np.power(np.float64(partial), np.float64(1.0 / p)))
    return partial


def _total(partials: list[float], norm: _Norm) -> float:
    return _finish(_fold(partials, _merge(norm)), norm)


def _clip_coef(max_norm: float, total: float) -> float:
    """torch's ``min(max_norm / (total + 1e-6), 1)``, NaN for a NaN total."""
    coef = max_norm / (total + _EPS)  # total >= 0, so no division by zero
    return 1.0 if coef > 1.0 else coef


def _scale(array: np.ndarray, factor: float) -> None:
    if factor != 1.0:
        with ieee():
            np.multiply(array, cast(array, factor), out=array)


# ----------------------------------------------------------------------------- public


def global_norm(grads: OptGrads, norm_type: float = 2.0, clip_value: float | None = None) -> float:
    """The norm of all elements of ``grads`` together, each first clamped into
    ``[-clip_value, clip_value]`` when given (twin of ``ferroptim._native.global_norm``). Read only.

    Raises
    ------
    ValueError
        ``norm_type <= 0`` (or NaN), ``clip_value < 0`` (or non-finite), an empty list (after
        skipping ``None``), a non-contiguous or misaligned array.
    TypeError
        A non-list ``grads``, an entry that is not an array, a dtype other than float32/float64.
    """
    p = real("norm_type", norm_type)
    bound = None if clip_value is None else real("clip_value", clip_value)
    norm = _norm_type(p)
    if bound is not None:
        _clip_bound(bound)
    arrays = _gather(grads, written=False)
    return _total(_partials(arrays, norm, bound), norm)


def tensor_norms(grads: OptGrads, norm_type: float = 2.0) -> list[float]:
    """The norm of each array of ``grads`` on its own, ``None`` entries skipped (twin of
    ``ferroptim._native.tensor_norms``). Read only; errors as :func:`global_norm`."""
    norm = _norm_type(real("norm_type", norm_type))
    arrays = _gather(grads, written=False)
    return [_finish(partial, norm) for partial in _partials(arrays, norm, None)]


def clip_grad_norm_(
    grads: OptGrads,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """torch's ``clip_grad_norm_`` (twin of ``ferroptim._native.clip_grad_norm_``): multiply every
    array in place by ``coef = min(max_norm / (total + 1e-6), 1)`` and return ``total``, the norm
    of all elements together (before clipping).

    Raises
    ------
    RuntimeError
        With ``error_if_nonfinite``, when ``total`` is NaN or inf; nothing is modified.
    ValueError, TypeError
        As :func:`global_norm`, plus ``max_norm <= 0`` (or non-finite), a read-only array and
        arrays sharing memory. Nothing is modified.
    """
    limit = real("max_norm", max_norm)
    p = real("norm_type", norm_type)
    strict = flag("error_if_nonfinite", error_if_nonfinite)
    _positive("max_norm", limit)
    norm = _norm_type(p)
    arrays = _gather(grads, written=True)
    total = _total(_partials(arrays, norm, None), norm)
    if strict and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {_rust_float(p)} for gradients is non-finite, so it cannot "
            "be clipped. To disable this error and scale the gradients by the non-finite norm "
            "anyway, set `error_if_nonfinite=False`"
        )
    coef = _clip_coef(limit, total)
    for array in arrays:
        _scale(array, coef)
    return total


def clip_grad_norm_per_tensor_(
    grads: OptGrads, max_norm: float, norm_type: float = 2.0
) -> list[float]:
    """Per-tensor norm clipping (Keras' ``clipnorm``; twin of
    ``ferroptim._native.clip_grad_norm_per_tensor_``): multiply each array in place by
    ``min(max_norm / (its norm + 1e-6), 1)``; return each array's norm (before clipping).
    Errors as :func:`clip_grad_norm_` (no RuntimeError)."""
    limit = real("max_norm", max_norm)
    p = real("norm_type", norm_type)
    _positive("max_norm", limit)
    norm = _norm_type(p)
    arrays = _gather(grads, written=True)
    norms = [_finish(partial, norm) for partial in _partials(arrays, norm, None)]
    for array, n in zip(arrays, norms, strict=True):
        _scale(array, _clip_coef(limit, n))
    return norms


def clip_grad_value_(grads: OptGrads, clip_value: float) -> None:
    """torch's ``clip_grad_value_`` (twin of ``ferroptim._native.clip_grad_value_``): clamp every
    element into ``[-clip_value, clip_value]`` in place, NaN unchanged.

    Raises
    ------
    ValueError, TypeError
        ``clip_value < 0`` (or non-finite), and the array errors of :func:`clip_grad_norm_`.
        Nothing is modified.
    """
    bound = _clip_bound(real("clip_value", clip_value))
    arrays = _gather(grads, written=True)
    for array in arrays:
        np.copyto(array, clamp(array, bound))

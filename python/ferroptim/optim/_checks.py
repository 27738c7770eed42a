"""Argument checks shared by the optimizers: each error names the argument (and index)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_number(
    name: str, value: object, *, low: float = 0.0, below: float | None = None
) -> float:
    """Return ``value`` as a float after checking ``low <= value`` (``< below`` when given).

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools are refused too).
    ValueError
        If it is not finite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < low or (below is not None and value >= below):
        bound = f"{low} <= {name}" + (f" < {below}" if below is not None else "")
        raise ValueError(f"Invalid {name} value: {value} (expected {bound})")
    return value


def check_betas(value: object, name: str = "betas") -> tuple[float, float]:
    """Check a (beta1, beta2) pair, each in [0, 1)."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (
        check_number(f"{name}[0]", value[0], below=1.0),
        check_number(f"{name}[1]", value[1], below=1.0),
    )


def check_flag(name: str, value: object) -> bool:
    """Check a boolean option."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_params(params: list, offset: int = 0) -> None:
    """Check parameters are distinct, writeable, C-contiguous float32/float64 arrays.

    ``offset`` is the index of ``params[0]`` among all of the optimizer's parameters.
    """
    spans = []
    for i, p in enumerate(params, start=offset):
        if not isinstance(p, np.ndarray):
            raise TypeError(f"params[{i}] must be a numpy.ndarray, got {type(p).__name__}")
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(f"params[{i}] has dtype {p.dtype}; expected float32 or float64")
        if not p.flags.c_contiguous:
            raise ValueError(f"params[{i}] is not C-contiguous; it could not be updated in place")
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only; it must be writeable")
        if not p.flags.aligned:
            raise ValueError(f"params[{i}] is not aligned for its dtype")
        spans.append((p, f"params[{i}]", True))
    check_disjoint(spans)


def check_disjoint(arrays: list[tuple[np.ndarray, str, bool]]) -> None:
    """Refuse any memory overlap between a written array and any other array.

    ``arrays`` holds ``(array, label, written)`` triples; the error names both labels.
    """
    spans = []
    for array, label, written in arrays:
        if array.nbytes:
            start = array.__array_interface__["data"][0]
            spans.append((start, start + array.nbytes, label, written))
    spans.sort(key=lambda s: s[0])
    reach: list = []  # spans seen so far that still extend past the current start
    for start, end, label, written in spans:
        reach = [s for s in reach if s[1] > start]
        for other in reach:
            if written or other[3]:
                raise ValueError(f"{label} shares memory with {other[2]}; arrays must be distinct")
        reach.append((start, end, label, written))


def check_adam_like(group: dict, flags: tuple[str, ...] = ()) -> None:
    """Check (in place) the hyperparameters the Adam family shares: lr, betas, eps,
    weight_decay, maximize, plus any boolean ``flags``."""
    group["lr"] = check_number("lr", group["lr"])
    group["betas"] = check_betas(group["betas"])
    if "eps" in group:
        group["eps"] = check_number("eps", group["eps"])
    group["weight_decay"] = check_number("weight_decay", group["weight_decay"])
    for name in ("maximize", *flags):
        group[name] = check_flag(name, group[name])

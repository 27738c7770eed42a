"""Argument checks shared by the optimizers: each error names the argument (and index)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ferroptim.reference._checks import ArrayChecker


def check_number(
    name: str, value: object, *, low: float = 0.0, below: float | None = None
) -> float:
    """Return ``value`` as a float after checking ``low <= value`` (``< below`` when given).

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools are refused too).
    ValueError
        If it is not finite, out of range, or an int beyond the float range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"Invalid {name} value: {value} is beyond the float range") from None
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


def check_params(params: list) -> None:
    """Check parameters are distinct, writeable, aligned, C-contiguous float32/float64 arrays,
    with the native kernels' checks and messages."""
    checker = ArrayChecker()
    for i, p in enumerate(params):
        checker.array(p, "params", i, True)
    checker.check_overlaps()


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

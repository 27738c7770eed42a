"""Scalar argument checks for the whole package: one argument order (``name`` first), one message
style. Every error names the argument.

* ``TypeError``: ``"{name} must be <kind>, got <type>"``.
* ``ValueError``: ``"invalid {name}: {value} (expected <condition>)"``, the style of the native
  kernels' errors (``ferroptim_core::Error``).

Two conversions of real numbers exist on purpose: :func:`check_real` is the strict one of the
Python API (a ``numbers.Real``, never a bool), :func:`kernel_real` mirrors how the native binding
converts a keyword argument (anything with ``__float__`` or ``__index__``), so that the reference
kernels refuse exactly what the native ones refuse.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = [
    "CLOSED_UNIT",
    "FINITE",
    "NON_NEGATIVE",
    "NOT_NAN",
    "POSITIVE",
    "UNIT",
    "Range",
    "check_choice",
    "check_flag",
    "check_int",
    "check_non_negative",
    "check_positive",
    "check_real",
    "check_state_keys",
    "invalid",
    "kernel_flag",
    "kernel_real",
]


@dataclass(frozen=True)
class Range:
    """An allowed interval of reals: ``low <= x <= high`` (``x < high`` when ``high_open``;
    ``x > low`` when ``low_open``). NaN is never allowed, the infinities only with
    ``allow_inf``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False

    def contains(self, value: float) -> bool:
        if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, name: str) -> str:
        """The condition in words, as the native errors write it (``lr >= 0``,
        ``0 <= beta1 < 1``)."""
        low = "" if self.low == -math.inf else f"{self.low:g} {'<' if self.low_open else '<='} "
        high = "" if self.high == math.inf else f" {'<' if self.high_open else '<='} {self.high:g}"
        if not low and not high:
            return "a number, not nan" if self.allow_inf else "a finite number"
        if not high:  # "lr >= 0" reads better than "0 <= lr"
            return f"{name} {'>' if self.low_open else '>='} {self.low:g}"
        return f"{low}{name}{high}"


NON_NEGATIVE = Range(0.0)
UNIT = Range(0.0, 1.0, high_open=True)
CLOSED_UNIT = Range(0.0, 1.0)
FINITE = Range()
POSITIVE = Range(0.0, low_open=True)
NOT_NAN = Range(allow_inf=True)


def invalid(name: str, value: object, expected: str) -> ValueError:
    """The ValueError of every range check."""
    return ValueError(f"invalid {name}: {value} (expected {expected})")


def check_real(name: str, value: object, allowed: Range = FINITE) -> float:
    """``value`` as a float in ``allowed`` (a ``numbers.Real``; bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise invalid(name, value, "a value within the float range") from None
    if not allowed.contains(number):
        raise invalid(name, number, allowed.describe(name))
    return number


def check_non_negative(name: str, value: object) -> float:
    """A finite real number ``>= 0`` (learning rates, momentums, minima)."""
    return check_real(name, value, NON_NEGATIVE)


def check_positive(name: str, value: object) -> float:
    """A finite real number ``> 0`` (decay factors)."""
    return check_real(name, value, POSITIVE)


def check_int(name: str, value: object, *, low: int | None = None) -> int:
    """``value`` as an int ``>= low`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    number = int(value)
    if low is not None and number < low:
        raise invalid(name, number, f"an int >= {low}")
    return number


def check_flag(name: str, value: object) -> bool:
    """A boolean option: ``bool`` or ``numpy.bool_``."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_state_keys(owner: str, state: object, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """A saved state: a mapping with exactly ``keys`` (``TypeError`` for anything else than a
    mapping, ``KeyError`` naming ``owner`` and the missing and unexpected keys)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    unexpected = [k for k in state if k not in keys]
    if missing or unexpected:
        raise KeyError(f"{owner} state: missing keys {missing}, unexpected {unexpected}")
    return state


def kernel_real(name: str, value: object) -> float:
    """Convert a kernel keyword argument to a float as the native binding does (``__float__`` or
    ``__index__``; strings and None are refused with TypeError). A conversion that fails (an int
    too large for a float, a multi-element array) raises its own exception type, naming the
    argument."""
    if isinstance(value, float):
        return float(value)
    kind = type(value)
    try:
        if hasattr(kind, "__float__"):
            return float(value)  # type: ignore[arg-type]
        if hasattr(kind, "__index__"):
            return float(operator.index(value))  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError) as err:
        # the base class, not type(err): a subclass may take other constructor arguments
        base = next(c for c in (OverflowError, TypeError, ValueError) if isinstance(err, c))
        raise base(f"argument '{name}': {err}") from err
    raise TypeError(f"argument '{name}': must be real number, not {kind.__name__}")


def kernel_flag(name: str, value: object) -> bool:
    """A kernel's boolean keyword argument: ``bool`` or ``numpy.bool_`` only, as natively."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(
        f"argument '{name}': {type(value).__name__!r} object is not an instance of 'bool'"
    )

"""Argument checks particular to the schedulers (step counts within floats' exact ints,
per-group values, the optimizer), on top of :mod:`ferroptim._checks` (scalars, one message
style): every error names the argument."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

from ferroptim import _checks

#: the largest step count, epoch or period a scheduler takes: schedules compute in floats,
#: which hold every int up to 2**53 exactly (a larger one, such as a crafted last_epoch=10**400,
#: would load and then overflow at the next step)
MAX_INT = 2**53


def check_int(name: str, value: object, *, low: int = 1) -> int:
    """``value`` as an int after checking ``low <= value <= MAX_INT`` (bools are refused)."""
    value = _checks.check_int(name, value, low=low)
    if value > MAX_INT:
        shown = value if value.bit_length() < 64 else f"an int of {value.bit_length()} bits"
        raise _checks.invalid(name, shown, "an int <= 2**53")
    return value


def check_optimizer(optimizer: Any) -> None:
    """Check ``optimizer`` has a non-empty ``param_groups`` list of dicts, each with an ``"lr"``."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups:
        raise TypeError(
            f"optimizer must have a non-empty param_groups list, got {type(optimizer).__name__}"
        )
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "lr" not in group:
            raise TypeError(f"optimizer.param_groups[{i}] must be a dict with an 'lr' entry")


def per_group(
    name: str, optimizer: Any, value: object, check: Callable[[str, object], float]
) -> list[float]:
    """One checked value per parameter group: ``value`` repeated, or a list/tuple with one entry
    per group (torch's ``_format_param``)."""
    n_groups = len(optimizer.param_groups)
    if isinstance(value, list | tuple):
        if len(value) != n_groups:
            raise ValueError(
                f"{name} must have one value per param group: got {len(value)} values for "
                f"{n_groups} param groups"
            )
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [check(name, value)] * n_groups


def check_callables(name: str, optimizer: Any, value: object) -> list[Callable[[int], float]]:
    """One callable per parameter group: ``value`` repeated, or a list/tuple of them."""
    n_groups = len(optimizer.param_groups)
    if isinstance(value, list | tuple):
        if len(value) != n_groups:
            raise ValueError(
                f"{name}: expected {n_groups} functions (one per param group), got {len(value)}"
            )
        functions = list(value)
    else:
        functions = [value] * n_groups
    for i, fn in enumerate(functions):
        if not callable(fn):
            raise TypeError(f"{name}[{i}] must be callable, got {type(fn).__name__}")
    return functions


def check_group_list(
    name: str, n_groups: int, value: object, check: Callable[[str, object], Any]
) -> list[Any]:
    """A saved per-group list: a list/tuple with ``n_groups`` entries, each passing ``check``."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    if len(value) != n_groups:
        raise ValueError(f"{name} has {len(value)} values, optimizer has {n_groups} param groups")
    return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]


def int_or_real(name: str, value: object, *, low: float) -> float:
    """An int (kept an int) ``>= low`` or a finite real number ``>= low``."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return check_int(name, value, low=int(low))
    return _checks.check_real(name, value, _checks.Range(low))

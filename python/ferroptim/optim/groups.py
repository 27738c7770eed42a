"""``param_groups(model, weight_decay, no_decay)``: the usual decay / no-decay split.

The common recipe (optax's ``mask``, Keras' ``exclude_from_weight_decay``, the torch
"no weight decay on biases and norms" loop) as one call whose result goes straight into any
optimizer; ``opt.step(model)`` then matches gradients to parameters by identity, so the
groups' order never matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ferroptim.nn.module import Module

__all__ = ["param_groups"]


def _excluded(full_name: str, module: Module, patterns: tuple[str, ...]) -> bool:
    """Whether a parameter matches a ``no_decay`` pattern: a case-insensitive substring of its
    full name (``"0.bias"``) or of its module's class name (``"BatchNorm1d"``)."""
    haystacks = (full_name.lower(), type(module).__name__.lower())
    return any(p in h for p in patterns for h in haystacks)


def param_groups(
    model: Module,
    weight_decay: float = 0.01,
    no_decay: Sequence[str] = ("bias", "norm"),
) -> list[dict[str, Any]]:
    """Two parameter groups of ``model``: ``{"params": decayed, "weight_decay": weight_decay}``
    and ``{"params": excluded, "weight_decay": 0.0}`` (an empty group is left out).

    A parameter is excluded when one of ``no_decay`` (case-insensitive) is a substring of its
    full name in ``named_parameters()`` or of its module's class name, so ``"norm"`` catches
    ``BatchNorm1d`` weights inside a ``Sequential`` (named ``"1.weight"``) and ``"bias"`` every
    bias. Each array appears once (tied weights included), in ``named_parameters`` order.

    Example
    -------
    >>> opt = fo.optim.AdamW(fo.optim.param_groups(model, 0.01), lr=1e-3)  # doctest: +SKIP
    >>> opt.step(model)  # doctest: +SKIP

    Raises
    ------
    TypeError
        ``model`` is not a Module, ``no_decay`` is not a sequence of strings.
    """
    if not isinstance(model, Module):
        raise TypeError(f"param_groups: model must be a ferroptim Module, got {model!r}")
    if isinstance(no_decay, str) or not all(isinstance(p, str) for p in no_decay):
        raise TypeError(f"param_groups: no_decay must be a sequence of str, got {no_decay!r}")
    patterns = tuple(p.lower() for p in no_decay)
    decay: list[np.ndarray] = []
    excluded: list[np.ndarray] = []
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        for name, param in module._parameters.items():
            if id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{prefix}.{name}" if prefix else name
            (excluded if _excluded(full, module, patterns) else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0})
    return groups

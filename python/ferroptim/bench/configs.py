"""Optimizer settings the benchmark runs, and how to build them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Backend = str  # "native" or "reference"


@dataclass(frozen=True)
class OptimizerConfig:
    """One benchmark row: an optimizer class of :mod:`ferroptim.optim` and its arguments.

    ``n_state`` is the number of state arrays per parameter this setting keeps; it is only a
    fallback, the optimizer's own ``state_arrays_per_param`` wins when it has one.
    """

    id: str
    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    n_state: int = 0

    def build(self, params: Sequence[np.ndarray], backend: Backend) -> Any:
        optim = importlib.import_module("ferroptim.optim")
        return getattr(optim, self.cls)(params, backend=backend, **self.kwargs)


def state_arrays(opt: Any, config: OptimizerConfig) -> int:
    """State arrays per parameter of a built optimizer (falls back to the config's count)."""
    return int(getattr(opt, "state_arrays_per_param", config.n_state))


def bytes_per_element(n_state: int, itemsize: int = 4) -> int:
    """Bytes one fused step moves per element: read p, g and states; write p and states."""
    return itemsize * (3 + 2 * n_state)


CONFIGS: dict[str, OptimizerConfig] = {
    c.id: c
    for c in (
        OptimizerConfig("SGD", "SGD", {"lr": 1e-3}, 0),
        OptimizerConfig("SGD-momentum", "SGD", {"lr": 1e-3, "momentum": 0.9}, 1),
        OptimizerConfig("SGD-nesterov", "SGD", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}, 1),
        OptimizerConfig("Adagrad", "Adagrad", {}, 1),
        OptimizerConfig("Adadelta", "Adadelta", {}, 2),
        OptimizerConfig("RMSprop", "RMSprop", {}, 1),
        OptimizerConfig(
            "RMSprop-centered-momentum", "RMSprop", {"centered": True, "momentum": 0.9}, 3
        ),
        OptimizerConfig("Adam", "Adam", {}, 2),
        OptimizerConfig("AdamW", "AdamW", {}, 2),
        OptimizerConfig("AMSGrad", "Adam", {"amsgrad": True}, 3),
        OptimizerConfig("Adamax", "Adamax", {}, 2),
        OptimizerConfig("NAdam", "NAdam", {}, 2),
        OptimizerConfig("RAdam", "RAdam", {}, 2),
        OptimizerConfig("Lion", "Lion", {"lr": 1e-4}, 1),
    )
}


def select(names: Iterable[str] | None, table: dict[str, Any], what: str) -> list[str]:
    """Keys of ``table`` named in ``names`` (case-insensitive, table order kept); all if None.

    Raises
    ------
    ValueError
        If a name is not in the table.
    """
    if names is None:
        return list(table)
    by_lower = {k.lower(): k for k in table}
    wanted = []
    for name in names:
        key = by_lower.get(name.strip().lower())
        if key is None:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(table)}")
        wanted.append(key)
    return [k for k in table if k in wanted]

"""Optimizer settings the benchmark runs, and how to build them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim import _registry

Backend = str  # "native" or "reference"


@dataclass(frozen=True)
class OptimizerConfig:
    """One benchmark row: an optimizer class of :mod:`ferroptim.optim` and its arguments."""

    id: str
    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, params: Sequence[np.ndarray], backend: Backend) -> Any:
        optim = importlib.import_module("ferroptim.optim")
        return getattr(optim, self.cls)(params, backend=backend, **self.kwargs)


def state_arrays(opt: Any) -> int:
    """State arrays per parameter of a built optimizer."""
    return int(opt.state_arrays_per_param)


def bytes_per_element(n_state: int, itemsize: int = 4) -> int:
    """Bytes one fused step moves per element: read p, g and states; write p and states."""
    return itemsize * (3 + 2 * n_state)


#: rows besides each registry optimizer at its defaults: the options that add state or work
_VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "SGD": [
        ("SGD-momentum", {"momentum": 0.9}),
        ("SGD-nesterov", {"momentum": 0.9, "nesterov": True}),
    ],
    "RMSprop": [("RMSprop-centered-momentum", {"centered": True, "momentum": 0.9})],
    "AdamW": [("AMSGrad", {"amsgrad": True})],
}


def _configs() -> dict[str, OptimizerConfig]:
    """Every optimizer of the registry at torch's defaults, then its variants."""
    out = {}
    for spec in _registry.OPTIMIZERS:
        out[spec.name] = OptimizerConfig(spec.name, spec.name)
        for name, kwargs in _VARIANTS.get(spec.name, []):
            base = "Adam" if name == "AMSGrad" else spec.name
            out[name] = OptimizerConfig(name, base, kwargs)
    return out


CONFIGS: dict[str, OptimizerConfig] = _configs()


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

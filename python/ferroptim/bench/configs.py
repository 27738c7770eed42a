"""Optimizer settings the benchmark runs, how to build them, and the calls it times (an
optimizer's step and the roofline step moving the same bytes), for ``python -m ferroptim bench``
and the pytest-benchmark files in ``benches/`` alike."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim import _native, _registry
from ferroptim._flat_layout import packed_copies

Backend = str  # "native" or "reference"
#: the most state arrays :func:`ferroptim._native.roofline_step` rotates
MAX_ROOFLINE_STATE = 3


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


def optimizer_step(opt: Any, grads: Sequence[np.ndarray]) -> tuple[Callable[[], object], int]:
    """The built optimizer ``opt``'s step on ``grads`` as a zero-argument call, and its state
    arrays per param."""
    return (lambda: opt.step(grads)), state_arrays(opt)


class Roofline:
    """Arrays for roofline steps on one workload: copies of the params, shared grads, and up to
    three state lists (allocated on first use, each laid out as an optimizer lays out one state
    name: views of one allocation, ``_flat_layout.packed_copies``)."""

    def __init__(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self.params = [p.copy() for p in params]
        self.grads = grads
        self.states: list[list[np.ndarray]] = []

    def step_fn(self, n_state: int) -> Callable[[], None]:
        if not 0 <= n_state <= MAX_ROOFLINE_STATE:
            raise ValueError(
                f"roofline supports 0 to {MAX_ROOFLINE_STATE} state arrays, got {n_state}"
            )
        while len(self.states) < n_state:
            self.states.append(packed_copies([np.zeros_like(p) for p in self.params]))
        params, grads, states = self.params, self.grads, self.states[:n_state]
        step = _native.roofline_step
        return lambda: step(params, grads, *states)


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

"""Every optimizer class of the registry, built once (``ferroptim.optim`` exports them)."""

from __future__ import annotations

from ferroptim import _registry
from ferroptim.optim._from_spec import RegisteredOptimizer, optimizer_class

__all__ = ["OPTIMIZER_CLASSES"]

#: every optimizer class by name, in registry order
OPTIMIZER_CLASSES: dict[str, type[RegisteredOptimizer]] = {}
for _spec in _registry.OPTIMIZERS:
    _base: type[RegisteredOptimizer] = RegisteredOptimizer
    if _spec.fixed:
        _base = OPTIMIZER_CLASSES[_registry.by_kernel(_spec.kernel).name]
    OPTIMIZER_CLASSES[_spec.name] = optimizer_class(_spec, _base)

"""Backend selection, written once: ``"native"`` (the Rust kernels in ``ferroptim._native``) or
``"reference"`` (their pure-NumPy twins in ``ferroptim.reference``), by kernel name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["BACKENDS", "BATCH_NORM", "CLIPPING", "OPTIMIZERS", "backend_module", "kernel"]

BACKENDS = ("native", "reference")
#: kernel families: where the reference backend keeps them (the native module holds them all)
OPTIMIZERS, CLIPPING, BATCH_NORM = 0, 1, 2

#: where each backend keeps its kernels (imported on first use: the reference backend imports
#: the optimizer registry, which must not import it back)
_MODULES = {
    "native": ("ferroptim._native",),
    "reference": (
        "ferroptim.reference",
        "ferroptim.reference.clip",
        "ferroptim.reference.batchnorm",
    ),
}


def backend_module(backend: object, family: int = OPTIMIZERS) -> ModuleType:
    """The module of ``backend`` holding kernel family ``family`` (``OPTIMIZERS``, ``CLIPPING``
    or ``BATCH_NORM``)."""
    if not isinstance(backend, str) or backend not in _MODULES:
        raise ValueError(f"backend must be 'native' or 'reference', got {backend!r}")
    modules = _MODULES[backend]
    return importlib.import_module(modules[min(family, len(modules) - 1)])


def kernel(backend: object, name: str, family: int = OPTIMIZERS) -> Callable[..., Any]:
    """Kernel ``name`` (``"adam_step"``) of ``backend``."""
    return getattr(backend_module(backend, family), name)

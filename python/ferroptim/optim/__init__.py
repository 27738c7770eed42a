"""Optimizers with torch.optim's names, defaults and update rules, on NumPy arrays.

Each class (``SGD``, ``Adagrad``, ``Adadelta``, ``RMSprop``, ``Adam``, ``AdamW``, ``Adamax``,
``NAdam``, ``RAdam``, ``Lion``, ``AdaBelief``, ...) is built from its entry in
``ferroptim._registry``; see docs/adding-an-optimizer.md. ``Adam8bit``, ``AdamW8bit`` and
``Lion8bit`` keep 8-bit blockwise state (``ferroptim.optim.eightbit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferroptim.optim import lr_scheduler, swa_utils
from ferroptim.optim._classes import OPTIMIZER_CLASSES
from ferroptim.optim._state_format import bf16_to_float32, float32_to_bf16
from ferroptim.optim.eightbit import Adam8bit, AdamW8bit, Lion8bit
from ferroptim.optim.groups import param_groups
from ferroptim.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from ferroptim.optim._from_spec import RegisteredOptimizer

globals().update(OPTIMIZER_CLASSES)

__all__ = [
    *OPTIMIZER_CLASSES,
    "OPTIMIZER_CLASSES",
    "Adam8bit",
    "AdamW8bit",
    "Lion8bit",
    "Optimizer",
    "bf16_to_float32",
    "float32_to_bf16",
    "lr_scheduler",
    "param_groups",
    "swa_utils",
]


def __getattr__(name: str) -> type[RegisteredOptimizer]:
    """Only reached for names that do not exist (the classes are module globals): it tells type
    checkers that ``ferroptim.optim.<Name>`` is a registry-built optimizer class."""
    raise AttributeError(f"module 'ferroptim.optim' has no attribute {name!r}")

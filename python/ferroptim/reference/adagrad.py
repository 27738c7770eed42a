"""Reference Adagrad update (torch.optim.Adagrad)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p``::

    clr = lr / (1 + (t - 1) * lr_decay)            (host, float64)
    sum = sum + g * g
    p = p - clr * (g / (sqrt(sum) + eps))
    """
    (sum_array,) = tensor.states
    clr = cast(p, h.lr / (1.0 + (float(tensor.step) - 1.0) * h.lr_decay))
    total = sum_array + g * g
    sum_array[...] = total
    return p - clr * (g / (np.sqrt(total) + cast(p, h.eps)))

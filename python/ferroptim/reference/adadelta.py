"""Reference Adadelta update (torch.optim.Adadelta)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p``::

    sq = sq * rho + ((1 - rho) * g) * g
    delta = (sqrt(acc + eps) / sqrt(sq + eps)) * g
    acc = acc * rho + ((1 - rho) * delta) * delta
    p = p - lr * delta
    """
    sq_array, acc_array = tensor.states
    rho_t, one_minus_rho, eps_t = cast(p, h.rho), cast(p, 1.0 - h.rho), cast(p, h.eps)
    sq = sq_array * rho_t + (one_minus_rho * g) * g
    delta = (np.sqrt(acc_array + eps_t) / np.sqrt(sq + eps_t)) * g
    acc = acc_array * rho_t + (one_minus_rho * delta) * delta
    sq_array[...] = sq
    acc_array[...] = acc
    return p - cast(p, h.lr) * delta

"""Reference Lion update (optax.lion)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, sign

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and the decoupled decay
    ``p = p * (1 - lr * weight_decay)``::

        c = beta1 * m + (1 - beta1) * g
        m = beta2 * m + (1 - beta2) * g
        p = p - lr * sign(c)
    """
    (m_array,) = tensor.states
    c = cast(p, h.beta1) * m_array + cast(p, 1.0 - h.beta1) * g
    m_array[...] = cast(p, h.beta2) * m_array + cast(p, 1.0 - h.beta2) * g
    return p - cast(p, h.lr) * sign(c)

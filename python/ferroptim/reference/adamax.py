"""Reference Adamax update (torch.optim.Adamax)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, lerp, maximum

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p``::

    m = lerp(m, g, 1 - beta1)
    u = maximum(u * beta2, |g| + eps)
    p = p - (lr / (1 - beta1**t)) * (m / u)
    """
    m_array, u_array = tensor.states
    clr = cast(p, h.lr / (1.0 - h.beta1 ** float(tensor.step)))
    m = lerp(m_array, g, 1.0 - h.beta1)
    u = maximum(u_array * cast(p, h.beta2), np.abs(g) + cast(p, h.eps))
    m_array[...] = m
    u_array[...] = u
    return p - clr * (m / u)

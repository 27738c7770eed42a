"""Reference SGD update (torch.optim.SGD): momentum, dampening, Nesterov."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p``, with ``t`` the
    step after increment::

        buf = g                                         if t == 1 (a copy; old contents ignored)
        buf = buf * momentum + (1 - dampening) * g      otherwise
        d = g + momentum * buf   if nesterov,   buf otherwise      (d = g when momentum == 0)
        p = p - lr * d
    """
    if h.momentum != 0.0:
        buf_array = tensor.states[0]
        if tensor.step == 1:
            buf = g
        else:
            buf = buf_array * cast(p, h.momentum) + cast(p, 1.0 - h.dampening) * g
        buf_array[...] = buf
        d = g + cast(p, h.momentum) * buf if h.nesterov else buf
    else:
        d = g
    return p - cast(p, h.lr) * d

"""Reference RMSprop update (torch.optim.RMSprop): centered and momentum variants."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, lerp

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p``::

    sq = sq * alpha + ((1 - alpha) * g) * g
    ga = lerp(ga, g, 1 - alpha);  avg = sqrt(sq - ga * ga) + eps      (centered)
    avg = sqrt(sq) + eps                                               (otherwise)
    buf = buf * momentum + g / avg;  p = p - lr * buf                  (momentum > 0)
    p = p - lr * (g / avg)                                             (otherwise)
    """
    state = list(tensor.states)
    sq_array = state.pop(0)
    sq = sq_array * cast(p, h.alpha) + (cast(p, 1.0 - h.alpha) * g) * g
    sq_array[...] = sq
    if h.centered:
        ga_array = state.pop(0)
        ga = lerp(ga_array, g, 1.0 - h.alpha)
        ga_array[...] = ga
        avg = np.sqrt(sq - ga * ga) + cast(p, h.eps)
    else:
        avg = np.sqrt(sq) + cast(p, h.eps)
    if h.momentum > 0.0:
        buf_array = state.pop(0)
        buf = buf_array * cast(p, h.momentum) + g / avg
        buf_array[...] = buf
        return p - cast(p, h.lr) * buf
    return p - cast(p, h.lr) * (g / avg)

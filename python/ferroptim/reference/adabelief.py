"""Reference AdaBelief update (optax.adabelief)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, fdiv, fsqrt, lerp

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after the common gradient steps (L2 or decoupled decay); with
    ``bc1 = 1 - beta1**t`` and ``bc2 = 1 - beta2**t`` on the host::

        m = lerp(m, g, 1 - beta1)
        d = g - m
        s = s * beta2 + ((1 - beta2) * d) * d + eps_root
        denom = sqrt(s) * (1 / sqrt(bc2)) + eps
        p = p - (lr / bc1) * (m / denom)
    """
    m_array, s_array = tensor.states
    t = float(tensor.step)
    bias_correction1 = 1.0 - h.beta1**t
    bias_correction2 = 1.0 - h.beta2**t
    m = lerp(m_array, g, 1.0 - h.beta1)
    d = g - m
    s = s_array * cast(p, h.beta2) + (cast(p, 1.0 - h.beta2) * d) * d + cast(p, h.eps_root)
    m_array[...] = m
    s_array[...] = s
    denom = np.sqrt(s) * cast(p, fdiv(1.0, fsqrt(bias_correction2))) + cast(p, h.eps)
    return p - cast(p, h.lr / bias_correction1) * (m / denom)

"""Reference Adam / AdamW / AMSGrad update (torch.optim.Adam and AdamW)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, fdiv, fsqrt, lerp, maximum

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after ``g = -g`` (maximize) and either ``g = g + weight_decay * p`` or, with
    ``decoupled_weight_decay`` (AdamW), ``p = p * (1 - lr * weight_decay)``; with
    ``bc1 = 1 - beta1**t`` and ``bc2 = 1 - beta2**t`` on the host::

        m = lerp(m, g, 1 - beta1)
        v = v * beta2 + ((1 - beta2) * g) * g
        vmax = maximum(vmax, v)                  (amsgrad; vmax replaces v below)
        denom = sqrt(v) * (1 / sqrt(bc2)) + eps     (torch divides: within 1 ulp)
        p = p - (lr / bc1) * (m / denom)
    """
    state = tensor.states
    t = float(tensor.step)
    bias_correction1 = 1.0 - h.beta1**t
    bias_correction2 = 1.0 - h.beta2**t
    m = lerp(state[0], g, 1.0 - h.beta1)
    v = state[1] * cast(p, h.beta2) + (cast(p, 1.0 - h.beta2) * g) * g
    state[0][...] = m
    state[1][...] = v
    if h.amsgrad:
        v = maximum(state[2], v)
        state[2][...] = v
    denom = np.sqrt(v) * cast(p, fdiv(1.0, fsqrt(bias_correction2))) + cast(p, h.eps)
    return p - cast(p, h.lr / bias_correction1) * (m / denom)

"""Reference RAdam update (torch.optim.RAdam)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, fdiv, fsqrt, lerp

__all__ = ["update"]


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after the common gradient steps (L2 or decoupled decay); ``m``, ``v`` as
    Adam; on the host ``rho_inf = 2/(1-beta2) - 1``,
    ``rho_t = rho_inf - 2t*beta2**t/(1-beta2**t)``::

        corrected = (m * (1 / bc1)) * lr
        p = p - (corrected * (sqrt(bc2) / (sqrt(v) + eps))) * rect     (rho_t > 5)
        p = p - corrected                                               (otherwise)

    with ``rect = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))``.
    """
    beta1, beta2 = h.beta1, h.beta2
    t = float(tensor.step)
    bias_correction1 = 1.0 - beta1**t
    bias_correction2 = 1.0 - beta2**t
    rho_inf = fdiv(2.0, 1.0 - beta2) - 1.0
    rho_t = rho_inf - fdiv(2.0 * t * beta2**t, bias_correction2)

    m_array, v_array = tensor.states
    m = lerp(m_array, g, 1.0 - beta1)
    v = v_array * cast(p, beta2) + (cast(p, 1.0 - beta2) * g) * g
    m_array[...] = m
    v_array[...] = v
    corrected = (m * cast(p, fdiv(1.0, bias_correction1))) * cast(p, h.lr)
    if rho_t <= 5.0:
        return p - corrected
    rect = fsqrt(
        fdiv(
            (rho_t - 4.0) * (rho_t - 2.0) * rho_inf,
            (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t,
        )
    )
    adaptive = cast(p, fsqrt(bias_correction2)) / (np.sqrt(v) + cast(p, h.eps))
    return p - (corrected * adaptive) * cast(p, rect)

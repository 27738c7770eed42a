"""Reference NAdam update (torch.optim.NAdam)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ferroptim.reference._checks import Tensor
from ferroptim.reference._common import cast, fdiv, lerp

__all__ = ["update"]


def _mu(beta1: float, momentum_decay: float, t: float) -> float:
    """Momentum coefficient of step ``t``: ``beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def update(h: SimpleNamespace, tensor: Tensor, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per element, after the common gradient steps (L2 or decoupled decay); ``m``, ``v`` as
    Adam; on the host ``mu = _mu(t)``, ``mu_next = _mu(t + 1)`` and the float32 running product
    ``mu_product = float32(mu_product * float32(mu))`` (written back to ``mu_products``)::

        denom = sqrt(v * (1 / (1 - beta2**t))) + eps
        p = p - (lr*(1-mu)/(1-mu_product)) * (g / denom)
        p = p - (lr*mu_next/(1-mu_product*mu_next)) * (m / denom)
    """
    products = tensor.scalars
    assert products is not None
    t = float(tensor.step)
    mu = _mu(h.beta1, h.momentum_decay, t)
    mu_next = _mu(h.beta1, h.momentum_decay, t + 1.0)
    mu_product32 = products[tensor.index] * np.float32(mu)
    products[tensor.index] = mu_product32
    mu_product = float(mu_product32)
    grad_coeff = fdiv(h.lr * (1.0 - mu), 1.0 - mu_product)
    avg_coeff = fdiv(h.lr * mu_next, 1.0 - mu_product * mu_next)

    m_array, v_array = tensor.states
    m = lerp(m_array, g, 1.0 - h.beta1)
    v = v_array * cast(p, h.beta2) + (cast(p, 1.0 - h.beta2) * g) * g
    m_array[...] = m
    v_array[...] = v
    denom = np.sqrt(v * cast(p, fdiv(1.0, 1.0 - h.beta2**t))) + cast(p, h.eps)
    p = p - cast(p, grad_coeff) * (g / denom)
    return p - cast(p, avg_coeff) * (m / denom)

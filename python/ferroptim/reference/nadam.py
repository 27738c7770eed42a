"""Reference NAdam step (torch.optim.NAdam)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ferroptim.reference._checks import (
    StateArg,
    check_min,
    check_unit,
    clip_args,
    flag,
    gather,
    real,
)
from ferroptim.reference._common import GradPrep, cast, fdiv, ieee, lerp
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["nadam_step"]


def _mu(beta1: float, momentum_decay: float, t: float) -> float:
    """Momentum coefficient of step ``t``: ``beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def nadam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    mu_products: NDArray[np.float32],
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One NAdam step on every tensor, in place (twin of ``ferroptim._native.nadam_step``).

    After ``g = -g`` (maximize) and L2 or (``decoupled_weight_decay``) decoupled weight decay, with
    ``t = steps[i] + 1`` and host float64 scalars::

        mu      = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96**((t + 1) * momentum_decay))
        mu_product = float32(mu_product * float32(mu))         (stored back in mu_products[i])
        m = lerp(m, g, 1 - beta1);  v = v * beta2 + ((1 - beta2) * g) * g
        denom = sqrt(v * (1 / (1 - beta2**t))) + eps
        p = p - (lr * (1 - mu) / (1 - mu_product)) * (g / denom)
        p = p - (lr * mu_next / (1 - mu_product * mu_next)) * (m / denom)

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state, mu_product and step
        untouched).
    exp_avgs, exp_avg_sqs : list of ndarray
        First and second moment estimates, updated in place.
    mu_products : ndarray of float32, shape (len(params),)
        Product of past ``mu`` per tensor (1.0 before the first step), updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, eps, weight_decay, momentum_decay : float
        Finite and >= 0.
    beta1, beta2 : float
        Moment decays, in [0, 1).
    maximize, decoupled_weight_decay : bool
        Maximize the objective; decoupled (AdamW-style) weight decay.

    Raises
    ------
    TypeError, ValueError
        As :func:`ferroptim.reference.sgd_step`; nothing is modified on error.
    """
    lr = real("lr", lr)
    beta1 = real("beta1", beta1)
    beta2 = real("beta2", beta2)
    eps = real("eps", eps)
    weight_decay = real("weight_decay", weight_decay)
    momentum_decay = real("momentum_decay", momentum_decay)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    decoupled_weight_decay = flag("decoupled_weight_decay", decoupled_weight_decay)
    check_min("lr", lr)
    check_unit("beta1", beta1)
    check_unit("beta2", beta2)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)
    check_min("momentum_decay", momentum_decay)

    states = [StateArg("exp_avgs", exp_avgs), StateArg("exp_avg_sqs", exp_avg_sqs)]
    batch = gather(params, grads, states, steps, ("mu_products", mu_products))
    products = batch.scalars
    assert products is not None
    prep = GradPrep.make(maximize, weight_decay, decoupled_weight_decay, lr, grad_scale, clip_value)
    updated = {}
    with ieee():
        for tensor in batch.tensors:
            t = float(tensor.step)
            mu = _mu(beta1, momentum_decay, t)
            mu_next = _mu(beta1, momentum_decay, t + 1.0)
            mu_product32 = products[tensor.index] * np.float32(mu)
            updated[tensor.index] = mu_product32
            mu_product = float(mu_product32)
            grad_coeff = fdiv(lr * (1.0 - mu), 1.0 - mu_product)
            avg_coeff = fdiv(lr * mu_next, 1.0 - mu_product * mu_next)

            param, (m_array, v_array) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            m = lerp(m_array, g, 1.0 - beta1)
            v = v_array * cast(p, beta2) + (cast(p, 1.0 - beta2) * g) * g
            m_array[...] = m
            v_array[...] = v
            denom = np.sqrt(v * cast(p, fdiv(1.0, 1.0 - beta2**t))) + cast(p, eps)
            p = p - cast(p, grad_coeff) * (g / denom)
            param[...] = p - cast(p, avg_coeff) * (m / denom)
        for index, value in updated.items():
            products[index] = value
    batch.count_steps()

"""Reference RAdam step (torch.optim.RAdam)."""

from __future__ import annotations

import numpy as np

from ferroptim.reference._checks import (
    StateArg,
    check_min,
    check_unit,
    clip_args,
    flag,
    gather,
    real,
)
from ferroptim.reference._common import GradPrep, cast, fdiv, fsqrt, ieee, lerp
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["radam_step"]


def radam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One RAdam step on every tensor, in place (twin of ``ferroptim._native.radam_step``).

    After ``g = -g`` (maximize) and L2 or (``decoupled_weight_decay``) decoupled weight decay, with
    ``t = steps[i] + 1``, ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``,
    ``rho_inf = 2 / (1 - beta2) - 1`` and ``rho_t = rho_inf - 2 t beta2**t / bc2`` on the host::

        m = lerp(m, g, 1 - beta1);  v = v * beta2 + ((1 - beta2) * g) * g
        rho_t > 5:  p = p - (((m / bc1) * lr) * (sqrt(bc2) / (sqrt(v) + eps))) * rect
                    rect = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        otherwise:  p = p - (m / bc1) * lr

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    exp_avgs, exp_avg_sqs : list of ndarray
        First and second moment estimates, updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, eps, weight_decay : float
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
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    decoupled_weight_decay = flag("decoupled_weight_decay", decoupled_weight_decay)
    check_min("lr", lr)
    check_unit("beta1", beta1)
    check_unit("beta2", beta2)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)

    states = [StateArg("exp_avgs", exp_avgs), StateArg("exp_avg_sqs", exp_avg_sqs)]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, decoupled_weight_decay, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            t = float(tensor.step)
            bias_correction1 = 1.0 - beta1**t
            bias_correction2 = 1.0 - beta2**t
            rho_inf = fdiv(2.0, 1.0 - beta2) - 1.0
            rho_t = rho_inf - fdiv(2.0 * t * beta2**t, bias_correction2)
            rectified = rho_t > 5.0

            param, (m_array, v_array) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            m = lerp(m_array, g, 1.0 - beta1)
            v = v_array * cast(p, beta2) + (cast(p, 1.0 - beta2) * g) * g
            m_array[...] = m
            v_array[...] = v
            corrected = (m * cast(p, fdiv(1.0, bias_correction1))) * cast(p, lr)
            if rectified:
                rect = fsqrt(
                    fdiv(
                        (rho_t - 4.0) * (rho_t - 2.0) * rho_inf,
                        (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t,
                    )
                )
                adaptive = cast(p, fsqrt(bias_correction2)) / (np.sqrt(v) + cast(p, eps))
                param[...] = p - (corrected * adaptive) * cast(p, rect)
            else:
                param[...] = p - corrected
    batch.count_steps()

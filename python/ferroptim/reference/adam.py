"""Reference Adam / AdamW / AMSGrad step (torch.optim.Adam and AdamW)."""

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
from ferroptim.reference._common import GradPrep, cast, fdiv, fsqrt, ieee, lerp, maximum
from ferroptim.reference._types import Arrays, OptArrays, OptGrads, Steps

__all__ = ["adam_step"]


def adam_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    max_exp_avg_sqs: OptArrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One Adam step on every tensor, in place (twin of ``ferroptim._native.adam_step``).

    After ``g = -g`` (maximize) and either ``g = g + weight_decay * p`` or, with
    ``decoupled_weight_decay`` (AdamW), ``p = p * (1 - lr * weight_decay)``; with
    ``t = steps[i] + 1``, ``bc1 = 1 - beta1**t`` and ``bc2 = 1 - beta2**t`` on the host::

        m = lerp(m, g, 1 - beta1)
        v = v * beta2 + ((1 - beta2) * g) * g
        vmax = maximum(vmax, v)                  (amsgrad; vmax replaces v below)
        denom = sqrt(v) * (1 / sqrt(bc2)) + eps     (torch divides: within 1 ulp)
        p = p - (lr / bc1) * (m / denom)

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    exp_avgs, exp_avg_sqs : list of ndarray
        First and second moment estimates, updated in place.
    max_exp_avg_sqs : list of ndarray or None
        Running maximum of ``exp_avg_sqs`` when ``amsgrad``; ``None`` otherwise.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, eps, weight_decay : float
        Finite and >= 0.
    beta1, beta2 : float
        Moment decays, in [0, 1).
    amsgrad, maximize, decoupled_weight_decay : bool
        AMSGrad variant; maximize the objective; AdamW-style weight decay.

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
    amsgrad = flag("amsgrad", amsgrad)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    decoupled_weight_decay = flag("decoupled_weight_decay", decoupled_weight_decay)
    check_min("lr", lr)
    check_unit("beta1", beta1)
    check_unit("beta2", beta2)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)

    states = [
        StateArg("exp_avgs", exp_avgs),
        StateArg("exp_avg_sqs", exp_avg_sqs),
        StateArg("max_exp_avg_sqs", max_exp_avg_sqs, optional=True, needed=amsgrad),
    ]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, decoupled_weight_decay, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, state = tensor.param, tensor.states
            t = float(tensor.step)
            bias_correction1 = 1.0 - beta1**t
            bias_correction2 = 1.0 - beta2**t
            p, g = prep.apply(param, tensor.grad)
            m = lerp(state[0], g, 1.0 - beta1)
            v = state[1] * cast(p, beta2) + (cast(p, 1.0 - beta2) * g) * g
            state[0][...] = m
            state[1][...] = v
            if amsgrad:
                v = maximum(state[2], v)
                state[2][...] = v
            denom = np.sqrt(v) * cast(p, fdiv(1.0, fsqrt(bias_correction2))) + cast(p, eps)
            param[...] = p - cast(p, lr / bias_correction1) * (m / denom)
    batch.count_steps()

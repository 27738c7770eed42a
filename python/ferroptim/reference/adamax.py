"""Reference Adamax step (torch.optim.Adamax)."""

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
from ferroptim.reference._common import GradPrep, cast, ieee, lerp, maximum
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["adamax_step"]


def adamax_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    exp_infs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One Adamax step on every tensor, in place (twin of ``ferroptim._native.adamax_step``).

    Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p`` (weight_decay > 0),
    with ``t = steps[i] + 1``::

        m = lerp(m, g, 1 - beta1)
        u = maximum(u * beta2, abs(g) + eps)           (NaN-propagating)
        p = p - (lr / (1 - beta1**t)) * (m / u)

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    exp_avgs, exp_infs : list of ndarray
        First moment and infinity-norm estimates, updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, eps, weight_decay : float
        Finite and >= 0.
    beta1, beta2 : float
        Decays, in [0, 1).
    maximize : bool
        Maximize the objective (negate the gradient).

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
    check_min("lr", lr)
    check_unit("beta1", beta1)
    check_unit("beta2", beta2)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)

    states = [StateArg("exp_avgs", exp_avgs), StateArg("exp_infs", exp_infs)]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, False, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, (m_array, u_array) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            clr = cast(p, lr / (1.0 - beta1 ** float(tensor.step)))
            m = lerp(m_array, g, 1.0 - beta1)
            u = maximum(u_array * cast(p, beta2), np.abs(g) + cast(p, eps))
            m_array[...] = m
            u_array[...] = u
            param[...] = p - clr * (m / u)
    batch.count_steps()

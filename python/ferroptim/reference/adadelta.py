"""Reference Adadelta step (torch.optim.Adadelta)."""

from __future__ import annotations

import numpy as np

from ferroptim.reference._checks import (
    StateArg,
    check_closed_unit,
    check_min,
    clip_args,
    flag,
    gather,
    real,
)
from ferroptim.reference._common import GradPrep, cast, ieee
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["adadelta_step"]


def adadelta_step(
    params: Arrays,
    grads: OptGrads,
    square_avgs: Arrays,
    acc_deltas: Arrays,
    steps: Steps,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One Adadelta step on every tensor, in place (twin of ``ferroptim._native.adadelta_step``).

    Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p`` (weight_decay > 0)::

        sq = sq * rho + ((1 - rho) * g) * g
        delta = (sqrt(acc + eps) / sqrt(sq + eps)) * g
        acc = acc * rho + ((1 - rho) * delta) * delta
        p = p - lr * delta

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    square_avgs, acc_deltas : list of ndarray
        Running averages of squared gradients and squared updates, updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, eps, weight_decay : float
        Finite and >= 0.
    rho : float
        Decay of the running averages, in [0, 1].
    maximize : bool
        Maximize the objective (negate the gradient).

    Raises
    ------
    TypeError, ValueError
        As :func:`ferroptim.reference.sgd_step`; nothing is modified on error.
    """
    lr = real("lr", lr)
    rho = real("rho", rho)
    eps = real("eps", eps)
    weight_decay = real("weight_decay", weight_decay)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    check_min("lr", lr)
    check_closed_unit("rho", rho)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)

    states = [StateArg("square_avgs", square_avgs), StateArg("acc_deltas", acc_deltas)]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, False, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, (sq_array, acc_array) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            rho_t, one_minus_rho, eps_t = cast(p, rho), cast(p, 1.0 - rho), cast(p, eps)
            sq = sq_array * rho_t + (one_minus_rho * g) * g
            delta = (np.sqrt(acc_array + eps_t) / np.sqrt(sq + eps_t)) * g
            acc = acc_array * rho_t + (one_minus_rho * delta) * delta
            sq_array[...] = sq
            acc_array[...] = acc
            param[...] = p - cast(p, lr) * delta
    batch.count_steps()

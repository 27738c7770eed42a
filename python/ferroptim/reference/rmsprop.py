"""Reference RMSprop step (torch.optim.RMSprop), plain or centered, with or without momentum."""

from __future__ import annotations

import numpy as np

from ferroptim.reference._checks import StateArg, check_min, clip_args, flag, gather, real
from ferroptim.reference._common import GradPrep, cast, ieee, lerp
from ferroptim.reference._types import Arrays, OptArrays, OptGrads, Steps

__all__ = ["rmsprop_step"]


def rmsprop_step(
    params: Arrays,
    grads: OptGrads,
    square_avgs: Arrays,
    grad_avgs: OptArrays,
    momentum_buffers: OptArrays,
    steps: Steps,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One RMSprop step on every tensor, in place (twin of ``ferroptim._native.rmsprop_step``).

    Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p`` (weight_decay > 0)::

        sq = sq * alpha + ((1 - alpha) * g) * g
        centered:  ga = lerp(ga, g, 1 - alpha);  avg = sqrt(sq - ga * ga) + eps
        otherwise: avg = sqrt(sq) + eps
        momentum:  buf = buf * momentum + g / avg;  p = p - lr * buf
        otherwise: p = p - lr * (g / avg)

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    square_avgs : list of ndarray
        Running average of squared gradients, updated in place.
    grad_avgs : list of ndarray or None
        Running average of gradients when ``centered``; ``None`` otherwise.
    momentum_buffers : list of ndarray or None
        Momentum state when ``momentum > 0``; ``None`` otherwise.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, alpha, eps, weight_decay, momentum : float
        Hyperparameters, as torch.optim.RMSprop (all finite and >= 0).
    centered : bool
        Normalize by the estimated variance of the gradient.
    maximize : bool
        Maximize the objective (negate the gradient).

    Raises
    ------
    TypeError, ValueError
        As :func:`ferroptim.reference.sgd_step`; also ValueError when ``grad_avgs`` or
        ``momentum_buffers`` is given without (or missing with) its option. Nothing is modified on
        error.
    """
    lr = real("lr", lr)
    alpha = real("alpha", alpha)
    eps = real("eps", eps)
    weight_decay = real("weight_decay", weight_decay)
    momentum = real("momentum", momentum)
    centered = flag("centered", centered)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    check_min("lr", lr)
    check_min("alpha", alpha)
    check_min("eps", eps)
    check_min("weight_decay", weight_decay)
    check_min("momentum", momentum)

    has_momentum = momentum > 0.0
    states = [
        StateArg("square_avgs", square_avgs),
        StateArg("grad_avgs", grad_avgs, optional=True, needed=centered),
        StateArg("momentum_buffers", momentum_buffers, optional=True, needed=has_momentum),
    ]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, False, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, state = tensor.param, list(tensor.states)
            p, g = prep.apply(param, tensor.grad)
            sq_array = state.pop(0)
            sq = sq_array * cast(p, alpha) + (cast(p, 1.0 - alpha) * g) * g
            sq_array[...] = sq
            if centered:
                ga_array = state.pop(0)
                ga = lerp(ga_array, g, 1.0 - alpha)
                ga_array[...] = ga
                avg = np.sqrt(sq - ga * ga) + cast(p, eps)
            else:
                avg = np.sqrt(sq) + cast(p, eps)
            if has_momentum:
                buf_array = state.pop(0)
                buf = buf_array * cast(p, momentum) + g / avg
                buf_array[...] = buf
                param[...] = p - cast(p, lr) * buf
            else:
                param[...] = p - cast(p, lr) * (g / avg)
    batch.count_steps()

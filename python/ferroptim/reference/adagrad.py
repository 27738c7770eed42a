"""Reference Adagrad step (torch.optim.Adagrad)."""

from __future__ import annotations

import numpy as np

from ferroptim.reference._checks import StateArg, check_min, clip_args, flag, gather, real
from ferroptim.reference._common import GradPrep, cast, ieee
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["adagrad_step"]


def adagrad_step(
    params: Arrays,
    grads: OptGrads,
    state_sums: Arrays,
    steps: Steps,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One Adagrad step on every tensor, in place (twin of ``ferroptim._native.adagrad_step``).

    Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p`` (weight_decay > 0),
    with ``t = steps[i] + 1``::

        clr = lr / (1 + (t - 1) * lr_decay)          (host float64, then rounded to the dtype)
        sum = sum + g * g
        p = p - clr * (g / (sqrt(sum) + eps))

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    state_sums : list of ndarray
        Sum of squared gradients (start at ``initial_accumulator_value``), updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor.
    lr, lr_decay, weight_decay, eps : float
        Hyperparameters, as torch.optim.Adagrad (all finite and >= 0).
    maximize : bool
        Maximize the objective (negate the gradient).

    Raises
    ------
    TypeError, ValueError
        As :func:`ferroptim.reference.sgd_step`; nothing is modified on error.
    """
    lr = real("lr", lr)
    lr_decay = real("lr_decay", lr_decay)
    weight_decay = real("weight_decay", weight_decay)
    eps = real("eps", eps)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    check_min("lr", lr)
    check_min("lr_decay", lr_decay)
    check_min("weight_decay", weight_decay)
    check_min("eps", eps)

    batch = gather(params, grads, [StateArg("state_sums", state_sums)], steps)
    prep = GradPrep.make(maximize, weight_decay, False, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, (sum_array,) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            clr = cast(p, lr / (1.0 + (float(tensor.step) - 1.0) * lr_decay))
            total = sum_array + g * g
            sum_array[...] = total
            param[...] = p - clr * (g / (np.sqrt(total) + cast(p, eps)))
    batch.count_steps()

"""Reference SGD step (torch.optim.SGD): momentum, dampening, Nesterov."""

from __future__ import annotations

from ferroptim.reference._checks import (
    StateArg,
    check_finite,
    check_min,
    clip_args,
    flag,
    gather,
    real,
)
from ferroptim.reference._common import GradPrep, cast, ieee
from ferroptim.reference._types import Arrays, OptArrays, OptGrads, Steps

__all__ = ["sgd_step"]


def sgd_step(
    params: Arrays,
    grads: OptGrads,
    momentum_buffers: OptArrays,
    steps: Steps,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One SGD step on every tensor, in place (pure-NumPy twin of ``ferroptim._native.sgd_step``).

    Per element, after ``g = -g`` (maximize) and ``g = g + weight_decay * p`` (weight_decay > 0),
    with ``t = steps[i] + 1``::

        buf = g                                         if t == 1 (a copy; old contents ignored)
        buf = buf * momentum + (1 - dampening) * g      otherwise
        d = g + momentum * buf   if nesterov,   buf otherwise      (d = g when momentum == 0)
        p = p - lr * d

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter, same dtype and shape; ``None`` skips the tensor (its state and
        step are left alone). Never written.
    momentum_buffers : list of ndarray or None
        Momentum state, one per parameter, when ``momentum != 0``; ``None`` otherwise.
    steps : ndarray of int64, shape (len(params),)
        Step counts, incremented in place for every stepped tensor.
    lr, momentum, dampening, weight_decay : float
        Hyperparameters, as torch.optim.SGD (lr, momentum, weight_decay >= 0; dampening finite).
    nesterov : bool
        Nesterov momentum; requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool
        Maximize the objective (negate the gradient).

    Raises
    ------
    TypeError
        A non-list argument, a non-array, or an array of the wrong dtype.
    ValueError
        An invalid hyperparameter, shape, layout, memory overlap, list length or negative step.
        Nothing is modified when an error is raised.
    """
    lr = real("lr", lr)
    momentum = real("momentum", momentum)
    dampening = real("dampening", dampening)
    weight_decay = real("weight_decay", weight_decay)
    nesterov = flag("nesterov", nesterov)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    check_min("lr", lr)
    check_min("momentum", momentum)
    check_finite("dampening", dampening)
    check_min("weight_decay", weight_decay)
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError("nesterov momentum requires a momentum and zero dampening")

    has_momentum = momentum != 0.0
    states = [StateArg("momentum_buffers", momentum_buffers, optional=True, needed=has_momentum)]
    batch = gather(params, grads, states, steps)
    prep = GradPrep.make(maximize, weight_decay, False, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param = tensor.param
            p, g = prep.apply(param, tensor.grad)
            if has_momentum:
                buf_array = tensor.states[0]
                if tensor.step == 1:
                    buf = g
                else:
                    buf = buf_array * cast(p, momentum) + cast(p, 1.0 - dampening) * g
                buf_array[...] = buf
                d = g + cast(p, momentum) * buf if nesterov else buf
            else:
                d = g
            param[...] = p - cast(p, lr) * d
    batch.count_steps()

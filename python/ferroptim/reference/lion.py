"""Reference Lion step (Chen et al. 2023, as optax.lion)."""

from __future__ import annotations

from ferroptim.reference._checks import (
    StateArg,
    check_min,
    check_unit,
    clip_args,
    flag,
    gather,
    real,
)
from ferroptim.reference._common import GradPrep, cast, ieee, sign
from ferroptim.reference._types import Arrays, OptGrads, Steps

__all__ = ["lion_step"]


def lion_step(
    params: Arrays,
    grads: OptGrads,
    exp_avgs: Arrays,
    steps: Steps,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None:
    """One Lion step on every tensor, in place (twin of ``ferroptim._native.lion_step``).

    Per element, after ``g = -g`` (maximize) and the decoupled decay
    ``p = p * (1 - lr * weight_decay)`` (weight_decay > 0)::

        c = beta1 * m + (1 - beta1) * g
        m = beta2 * m + (1 - beta2) * g
        p = p - lr * sign(c)                    (sign(+-0) = +-0, sign(NaN) = NaN)

    Parameters
    ----------
    params : list of ndarray
        Parameters (float32 or float64, C-contiguous, writeable), updated in place.
    grads : list of ndarray or None
        One gradient per parameter; ``None`` skips the tensor (state and step untouched).
    exp_avgs : list of ndarray
        Momentum, updated in place.
    steps : ndarray of int64
        Step counts, incremented in place for every stepped tensor (Lion does not use them).
    lr, weight_decay : float
        Finite and >= 0.
    beta1, beta2 : float
        Interpolation and momentum decays, in [0, 1).
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
    weight_decay = real("weight_decay", weight_decay)
    maximize = flag("maximize", maximize)
    grad_scale, clip_value = clip_args(grad_scale, clip_value)
    check_min("lr", lr)
    check_unit("beta1", beta1)
    check_unit("beta2", beta2)
    check_min("weight_decay", weight_decay)

    batch = gather(params, grads, [StateArg("exp_avgs", exp_avgs)], steps)
    prep = GradPrep.make(maximize, weight_decay, True, lr, grad_scale, clip_value)
    with ieee():
        for tensor in batch.tensors:
            param, (m_array,) = tensor.param, tensor.states
            p, g = prep.apply(param, tensor.grad)
            c = cast(p, beta1) * m_array + cast(p, 1.0 - beta1) * g
            m_array[...] = cast(p, beta2) * m_array + cast(p, 1.0 - beta2) * g
            param[...] = p - cast(p, lr) * sign(c)
    batch.count_steps()

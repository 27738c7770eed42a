"""L1 / L2 penalties on a model's weights, added to the loss and to the gradients.

Which parameters are penalized
------------------------------
Like Keras' ``kernel_regularizer``, the penalties apply to *weights* only: trainable parameters
with ``ndim >= 2`` (Linear ``(out, in)``, Conv2d ``(out, in, kh, kw)``, RNN and embedding
matrices). Biases and batch-norm scale/shift (1-D) are excluded, and so are frozen parameters
(their gradient reads as ``None``) and buffers such as running statistics.

Coupled penalty versus decoupled weight decay
---------------------------------------------
The penalty ``l1 * sum|w| + l2 * sum w^2`` is part of the objective: its gradient
``l1 * sign(w) + 2 * l2 * w`` is added to the data gradient *before* the optimizer sees it, so an
adaptive optimizer (Adam, RMSprop, ...) rescales it like any other gradient. With plain SGD,
``l2`` here equals torch's ``weight_decay / 2``. Decoupled weight decay (``AdamW``, or
``decoupled_weight_decay=True``) instead shrinks the weights directly, ``w *= 1 - lr * wd``, outside
the adaptive scaling and outside the reported loss; it is an optimizer option, not this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim._checks import check_non_negative


def check_penalty(value: Any, name: str) -> float:
    """A finite float ``>= 0`` (the strength ``l1`` or ``l2``)."""
    return check_non_negative(name, value)


def regularized_parameters(model: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, weight, gradient)`` for every trainable parameter with ``ndim >= 2``.

    The gradient is the model's own accumulation array, so adding to it changes what the next
    ``optimizer.step(model.gradients())`` sees.
    """
    return [
        (name, weight, grad)
        for (name, weight), (_, grad) in zip(
            model.named_parameters(), model.named_gradients(), strict=True
        )
        if grad is not None and weight.ndim >= 2
    ]


def penalty(model: Any, l1: float = 0.0, l2: float = 0.0) -> float:
    """The regularization term added to the loss.

    .. math:: R(w) = l_1 \\sum |w| + l_2 \\sum w^2

    summed over :func:`regularized_parameters` (accumulated in float64).

    Parameters
    ----------
    model : ferroptim.nn.Module
    l1, l2 : float
        Non-negative strengths.

    Returns
    -------
    float
        ``0.0`` when both strengths are zero.
    """
    l1 = check_penalty(l1, "l1")
    l2 = check_penalty(l2, "l2")
    if l1 == 0.0 and l2 == 0.0:
        return 0.0
    total = 0.0
    for _, weight, _ in regularized_parameters(model):
        if l1:
            total += l1 * float(np.abs(weight).sum(dtype=np.float64))
        if l2:
            total += l2 * float(np.square(weight, dtype=np.float64).sum())
    return total


def add_penalty_gradients(model: Any, l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the penalty's gradient to the model's gradient arrays in place.

    .. math:: g \\leftarrow g + l_1 \\operatorname{sign}(w) + 2 l_2 w

    with ``sign(0) = 0`` (the subgradient of ``|w|`` at zero). Only the parameters of
    :func:`regularized_parameters` change; call it once per optimizer step, after every
    micro-batch's ``backward`` and before ``step``.
    """
    l1 = check_penalty(l1, "l1")
    l2 = check_penalty(l2, "l2")
    if l1 == 0.0 and l2 == 0.0:
        return
    for _, weight, grad in regularized_parameters(model):
        if l1:
            grad += l1 * np.sign(weight)
        if l2:
            grad += (2.0 * l2) * weight

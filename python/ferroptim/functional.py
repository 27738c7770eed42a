"""Stateless optimizer steps for users who keep their own state arrays.

Each function updates ``params`` and the given state arrays in place with one fused kernel call,
using torch.optim's defaults and formulas (see the optimizer classes in :mod:`ferroptim.optim`).
``step`` is the step number ``t`` of this update (1 for the first), one int for all tensors or one
per tensor. ``backend="reference"`` runs the pure-NumPy twin, which gives identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ferroptim import _native, optim, reference

Arrays = Sequence[np.ndarray]
Grads = Sequence[np.ndarray | None]

_BACKENDS = {"native": _native, "reference": reference}


def _kernel(name: str, backend: str) -> Callable[..., None]:
    try:
        return getattr(_BACKENDS[backend], name)
    except KeyError:
        raise ValueError(f"backend must be 'native' or 'reference', got {backend!r}") from None


def _count(params: Arrays) -> int:
    """The number of tensors: ``params`` must be a list or tuple (a generator has no length)."""
    try:
        return len(params)
    except TypeError:
        raise TypeError(
            f"params must be a list of numpy arrays, got {type(params).__name__}"
        ) from None


def _steps_before(step: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """The kernels take per-tensor counts *before* this step; ``step`` is the count after it."""
    t = np.asarray(step)
    if t.dtype.kind not in "iu" or t.ndim > 1 or (t.ndim == 1 and t.shape[0] != n):
        raise ValueError(f"step must be an int or {n} ints, got {step!r}")
    if np.any(t < 1):
        raise ValueError(f"step must be at least 1, got {step!r}")
    if np.any(t > np.iinfo(np.int64).max):  # uint64 beyond int64 would wrap to negative counts
        raise ValueError(f"step must be below 2**63, got {step!r}")
    return np.broadcast_to(t.astype(np.int64) - 1, (n,)).copy()


def _checked(cls: type[optim.Optimizer], **hyper: object) -> dict:
    """The hyperparameters checked (and normalized) exactly as the optimizer class checks them,
    so a bad value raises an error naming it."""
    cls.validate_group(hyper)
    return hyper


def sgd_step(
    params: Arrays,
    grads: Grads,
    momentum_buffers: Arrays | None = None,
    *,
    step: int | Sequence[int] = 1,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """SGD: ``buf = g`` at ``step == 1``, else ``buf = momentum*buf + (1-dampening)*g``;
    ``p -= lr * (g + momentum*buf if nesterov else buf)``; without momentum ``p -= lr*g``.
    ``momentum_buffers`` is required exactly when ``momentum != 0``."""
    h = _checked(
        optim.SGD,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        maximize=maximize,
    )
    steps = _steps_before(step, _count(params))
    _kernel("sgd_step", backend)(params, grads, momentum_buffers, steps, **h)


def adagrad_step(
    params: Arrays,
    grads: Grads,
    state_sums: Arrays,
    *,
    step: int | Sequence[int],
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """Adagrad: ``sum += g*g``; ``p -= lr/(1+(step-1)*lr_decay) * g/(sqrt(sum)+eps)``."""
    h = _checked(
        optim.Adagrad,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=0.0,
        eps=eps,
        maximize=maximize,
    )
    del h["initial_accumulator_value"]
    steps = _steps_before(step, _count(params))
    _kernel("adagrad_step", backend)(params, grads, state_sums, steps, **h)


def adadelta_step(
    params: Arrays,
    grads: Grads,
    square_avgs: Arrays,
    acc_deltas: Arrays,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """Adadelta: ``sq = rho*sq + (1-rho)*g*g``; ``d = sqrt(acc+eps)/sqrt(sq+eps)*g``;
    ``acc = rho*acc + (1-rho)*d*d``; ``p -= lr*d``."""
    h = _checked(
        optim.Adadelta, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize
    )
    steps = _steps_before(1, _count(params))
    _kernel("adadelta_step", backend)(params, grads, square_avgs, acc_deltas, steps, **h)


def rmsprop_step(
    params: Arrays,
    grads: Grads,
    square_avgs: Arrays,
    grad_avgs: Arrays | None = None,
    momentum_buffers: Arrays | None = None,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """RMSprop; centered when ``grad_avgs`` is given. ``sq = alpha*sq + (1-alpha)*g*g``;
    ``avg = sqrt(sq - ga*ga) + eps`` (centered) or ``sqrt(sq) + eps``; with momentum
    ``buf = momentum*buf + g/avg``, ``p -= lr*buf``, else ``p -= lr*g/avg``.
    ``momentum_buffers`` is required exactly when ``momentum > 0``."""
    h = _checked(
        optim.RMSprop,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=grad_avgs is not None,
        maximize=maximize,
    )
    steps = _steps_before(1, _count(params))
    _kernel("rmsprop_step", backend)(
        params, grads, square_avgs, grad_avgs, momentum_buffers, steps, **h
    )


def adam_step(
    params: Arrays,
    grads: Grads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    max_exp_avg_sqs: Arrays | None = None,
    *,
    step: int | Sequence[int],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    backend: str = "native",
) -> None:
    """Adam (AMSGrad when ``max_exp_avg_sqs`` is given; AdamW with ``decoupled_weight_decay``):
    ``m = lerp(m, g, 1-b1)``; ``v = b2*v + (1-b2)*g*g``;
    ``p -= lr/(1-b1**step) * m / (sqrt(v)/sqrt(1-b2**step) + eps)``."""
    h = _checked(
        optim.Adam,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=max_exp_avg_sqs is not None,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
    )
    steps = _steps_before(step, _count(params))
    _kernel("adam_step", backend)(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, **_split_betas(h)
    )


def adamax_step(
    params: Arrays,
    grads: Grads,
    exp_avgs: Arrays,
    exp_infs: Arrays,
    *,
    step: int | Sequence[int],
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """Adamax: ``m = lerp(m, g, 1-b1)``; ``u = max(b2*u, |g|+eps)``;
    ``p -= lr/(1-b1**step) * m/u``."""
    h = _checked(
        optim.Adamax, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize
    )
    steps = _steps_before(step, _count(params))
    _kernel("adamax_step", backend)(params, grads, exp_avgs, exp_infs, steps, **_split_betas(h))


def nadam_step(
    params: Arrays,
    grads: Grads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    mu_products: np.ndarray,
    *,
    step: int | Sequence[int],
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    backend: str = "native",
) -> None:
    """NAdam. ``mu_products`` is a float32 array with one running product per tensor (start it at
    ones); it is updated in place. Formula: see :class:`ferroptim.optim.NAdam`."""
    h = _checked(
        optim.NAdam,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        momentum_decay=momentum_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    steps = _steps_before(step, _count(params))
    _kernel("nadam_step", backend)(
        params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, **_split_betas(h)
    )


def radam_step(
    params: Arrays,
    grads: Grads,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: int | Sequence[int],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    backend: str = "native",
) -> None:
    """RAdam. Formula: see :class:`ferroptim.optim.RAdam`."""
    h = _checked(
        optim.RAdam,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    steps = _steps_before(step, _count(params))
    _kernel("radam_step", backend)(params, grads, exp_avgs, exp_avg_sqs, steps, **_split_betas(h))


def lion_step(
    params: Arrays,
    grads: Grads,
    exp_avgs: Arrays,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 0.0,
    maximize: bool = False,
    backend: str = "native",
) -> None:
    """Lion: ``c = b1*m + (1-b1)*g``; ``p = p*(1-lr*wd) - lr*sign(c)``; ``m = b2*m + (1-b2)*g``."""
    h = _checked(optim.Lion, lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
    steps = _steps_before(1, _count(params))
    _kernel("lion_step", backend)(params, grads, exp_avgs, steps, **_split_betas(h))


def _split_betas(hyper: dict) -> dict:
    """The kernels take ``beta1`` and ``beta2`` rather than a ``betas`` pair."""
    beta1, beta2 = hyper.pop("betas")
    return {**hyper, "beta1": beta1, "beta2": beta2}


__all__ = [
    "adadelta_step",
    "adagrad_step",
    "adam_step",
    "adamax_step",
    "lion_step",
    "nadam_step",
    "radam_step",
    "rmsprop_step",
    "sgd_step",
]

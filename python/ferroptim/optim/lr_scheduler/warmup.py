"""warmup_cosine: linear warm-up then cosine decay, the usual schedule for training from scratch."""

from __future__ import annotations

from typing import Any

from ferroptim._checks import NON_NEGATIVE, Range, check_real
from ferroptim.optim.lr_scheduler._validate import check_int, check_optimizer
from ferroptim.optim.lr_scheduler.composite import SequentialLR
from ferroptim.optim.lr_scheduler.cosine import CosineAnnealingLR
from ferroptim.optim.lr_scheduler.step import LinearLR


def warmup_cosine(
    optimizer: Any,
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 0.0,
    start_factor: float | None = None,
) -> SequentialLR:
    """Linear warm-up for ``warmup_steps`` steps, then cosine annealing down to ``min_lr`` at
    ``total_steps``.

    Equivalent to torch's ``SequentialLR(optimizer, [LinearLR(optimizer, start_factor, 1.0,
    warmup_steps), CosineAnnealingLR(optimizer, total_steps - warmup_steps, min_lr)],
    milestones=[warmup_steps])``. At step ``t``:

    * ``t < warmup_steps``: ``lr = base_lr * (s + (1 - s) * t / warmup_steps)``;
    * afterwards: ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t - w) / (T - w))) / 2``.

    Parameters
    ----------
    optimizer : Optimizer
    warmup_steps : int
        Length of the warm-up (>= 0; 0 means cosine only).
    total_steps : int
        Step at which the rate reaches ``min_lr`` (> ``warmup_steps``).
    min_lr : float, default 0.0
        Final learning rate (>= 0).
    start_factor : float, optional
        First warm-up factor ``s`` in (0, 1]; default ``1 / warmup_steps``.

    Returns
    -------
    SequentialLR
        Call ``step()`` once after every ``optimizer.step``.
    """
    check_optimizer(optimizer)
    warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
    total_steps = check_int("total_steps", total_steps, low=1)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must exceed warmup_steps, got total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}"
        )
    min_lr = check_real("min_lr", min_lr, NON_NEGATIVE)
    if warmup_steps == 0:
        cosine = CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)
        return SequentialLR(optimizer, [cosine], milestones=[])
    if start_factor is None:
        start_factor = 1.0 / warmup_steps
    start_factor = check_real("start_factor", start_factor, Range(0.0, 1.0, low_open=True))
    warmup = LinearLR(optimizer, start_factor, 1.0, total_iters=warmup_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])

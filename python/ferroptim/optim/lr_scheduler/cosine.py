"""Cosine annealing: CosineAnnealingLR and CosineAnnealingWarmRestarts (SGDR)."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

from ferroptim._checks import NON_NEGATIVE, check_non_negative, check_real
from ferroptim.optim.lr_scheduler._validate import check_int, int_or_real
from ferroptim.optim.lr_scheduler.base import LRScheduler, StateRule, group_values


def _at_least_one(name: str, value: object) -> int:
    return check_int(name, value, low=1)


class CosineAnnealingLR(LRScheduler):
    """Anneal the learning rate along a cosine from ``base_lr`` to ``eta_min`` over ``T_max``
    steps (and back up over the next ``T_max``: the curve is periodic).

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * last_epoch / T_max)) / 2``.

    :meth:`step` applies torch's recursive form,
    ``lr = eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / (1 + cos(pi * (t - 1) / T_max))``,
    so that it composes with other schedulers (:class:`ChainedScheduler`).

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Half period, in steps (>= 1).
    eta_min : float, default 0.0
        Minimum learning rate (>= 0).
    last_epoch : int, default -1
    """

    def __init__(
        self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = check_int("T_max", T_max)
        self.eta_min = check_non_negative("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "T_max": _at_least_one, "eta_min": check_non_negative}

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        t, period, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return lrs
        if self._step_count == 1 and t > 0:
            return [
                eta_min + (b - eta_min) * (1 + math.cos(t * math.pi / period)) / 2
                for b in self.base_lrs
            ]
        if (t - 1 - period) % (2 * period) == 0:
            # Leaving the minimum: the ratio form would divide by zero.
            rise = (1 - math.cos(math.pi / period)) / 2
            return [lr + (b - eta_min) * rise for lr, b in zip(lrs, self.base_lrs, strict=True)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (lr - eta_min) + eta_min for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * cosine for b in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``, where ``T_cur`` counts
    the steps since the last restart and ``T_i`` is the current period: ``T_0`` first, multiplied
    by ``T_mult`` at each restart.

    Parameters
    ----------
    optimizer : Optimizer
    T_0 : int
        Steps before the first restart (>= 1).
    T_mult : int, default 1
        Period growth factor after each restart (>= 1).
    eta_min : float, default 0.0
        Minimum learning rate (>= 0).
    last_epoch : int, default -1

    Notes
    -----
    ``step(epoch)`` jumps to a (possibly fractional) epoch, e.g. ``epoch + i / iters_per_epoch``
    inside an epoch, as torch allows for this scheduler.
    """

    def __init__(
        self,
        optimizer: Any,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_0 = check_int("T_0", T_0)
        self.T_i: float = self.T_0
        self.T_mult = check_int("T_mult", T_mult)
        self.eta_min = check_non_negative("eta_min", eta_min)
        self.T_cur: float = check_int("last_epoch", last_epoch, low=-1)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "T_0": _at_least_one,
            "T_i": _at_least_one,
            "T_mult": _at_least_one,
            "eta_min": check_non_negative,
            "T_cur": lambda name, value: int_or_real(name, value, low=-1),
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        if state["T_i"] < state["T_0"]:
            raise ValueError(
                f"state_dict['T_i'] must be at least state_dict['T_0'] (periods only grow), got "
                f"T_i={state['T_i']}, T_0={state['T_0']}"
            )

    def _rates(self, t_cur: float, t_i: float) -> list[float]:
        cosine = (1 + math.cos(math.pi * t_cur / t_i)) / 2
        return [self.eta_min + (b - self.eta_min) * cosine for b in self.base_lrs]

    def get_lr(self) -> list[float]:
        return self._rates(self.T_cur, self.T_i)

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, or jump to ``epoch`` (a non-negative number) when given."""
        t_cur: float = self.T_cur
        t_i: float = self.T_i
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            t_cur += 1
            if t_cur >= t_i:
                t_cur %= t_i
                t_i *= self.T_mult
        else:
            epoch = _check_epoch(epoch)
            t_cur, t_i = self._position(epoch)
        lrs = self._rates(t_cur, t_i)
        self.T_cur, self.T_i = t_cur, t_i
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = group_values(self.optimizer, "lr")

    def _position(self, epoch: float) -> tuple[float, float]:
        """``(T_cur, T_i)`` at ``epoch`` counted from the start."""
        if epoch < self.T_0:
            return epoch, self.T_0
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        restarts = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        start = self.T_0 * (self.T_mult**restarts - 1) / (self.T_mult - 1)
        return epoch - start, self.T_0 * self.T_mult**restarts


def _check_epoch(epoch: object) -> float:
    """A non-negative int (kept an int) or real number."""
    if isinstance(epoch, Integral) and not isinstance(epoch, bool):
        return check_int("epoch", epoch, low=0)
    return check_real("epoch", epoch, NON_NEGATIVE)

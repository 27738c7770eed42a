"""Schedulers that scale the learning rate by fixed factors: StepLR, MultiStepLR, ExponentialLR,
ConstantLR, LinearLR, PolynomialLR (torch's formulas, chainable and closed forms)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from ferroptim._checks import CLOSED_UNIT, NON_NEGATIVE, Range, check_positive, check_real
from ferroptim.optim.lr_scheduler._validate import check_int
from ferroptim.optim.lr_scheduler.base import LRScheduler, StateRule, group_values


def _at_least_one(name: str, value: object) -> int:
    return check_int(name, value, low=1)


#: a multiplicative factor: (0, 1]
_FACTOR = Range(0.0, 1.0, low_open=True)


def _factor(name: str, value: object) -> float:
    return check_real(name, value, _FACTOR)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    ``lr = base_lr * gamma ** (last_epoch // step_size)``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period of the decay (>= 1).
    gamma : float, default 0.1
        Multiplicative factor (> 0).
    last_epoch : int, default -1
    """

    def __init__(
        self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size = check_int("step_size", step_size)
        self.gamma = check_positive("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "step_size": _at_least_one, "gamma": check_positive}

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return group_values(self.optimizer, "lr")
        return [lr * self.gamma for lr in group_values(self.optimizer, "lr")]

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone.

    ``lr = base_lr * gamma ** (number of milestones <= last_epoch)``.

    Parameters
    ----------
    optimizer : Optimizer
    milestones : iterable of int
        Strictly increasing, non-negative step indices.
    gamma : float, default 0.1
        Multiplicative factor (> 0).
    last_epoch : int, default -1
    """

    def __init__(
        self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = check_milestones("milestones", milestones, low=0)
        self.gamma = check_positive("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "milestones": lambda name, value: check_milestones(name, value, low=0),
            "gamma": check_positive,
        }

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return group_values(self.optimizer, "lr")
        return [lr * self.gamma for lr in group_values(self.optimizer, "lr")]

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect_right(self.milestones, self.last_epoch)
        return [b * self.gamma**passed for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every step: ``lr = base_lr * gamma ** last_epoch``.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Multiplicative factor (> 0).
    last_epoch : int, default -1
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_positive("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "gamma": check_positive}

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        return lrs if self._is_initial else [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma**self.last_epoch for b in self.base_lrs]


class ConstantLR(LRScheduler):
    """Scale the learning rate by ``factor`` for the first ``total_iters`` steps.

    ``lr = base_lr * factor`` while ``last_epoch < total_iters``, then ``base_lr``.

    Parameters
    ----------
    optimizer : Optimizer
    factor : float, default 1/3
        In (0, 1].
    total_iters : int, default 5
        Number of scaled steps (>= 1).
    last_epoch : int, default -1
    """

    def __init__(
        self,
        optimizer: Any,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.factor = check_real("factor", factor, _FACTOR)
        self.total_iters = check_int("total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "factor": _factor, "total_iters": _at_least_one}

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        if self.last_epoch == 0:
            return [lr * self.factor for lr in lrs]
        if self.last_epoch != self.total_iters:
            return lrs
        return [lr * (1.0 / self.factor) for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        done = self.last_epoch >= self.total_iters
        return [b * (self.factor + done * (1 - self.factor)) for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Move the learning-rate factor linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps.

    ``lr = base_lr * (start + (end - start) * min(last_epoch, total_iters) / total_iters)``.

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float, default 1/3
        In (0, 1].
    end_factor : float, default 1.0
        In [0, 1].
    total_iters : int, default 5
        Length of the ramp (>= 1).
    last_epoch : int, default -1
    """

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = check_real("start_factor", start_factor, _FACTOR)
        self.end_factor = check_real("end_factor", end_factor, CLOSED_UNIT)
        self.total_iters = check_int("total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "start_factor": _factor,
            "end_factor": lambda name, value: check_real(name, value, CLOSED_UNIT),
            "total_iters": _at_least_one,
        }

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        span = self.end_factor - self.start_factor
        ratio = 1.0 + span / (self.total_iters * self.start_factor + (self.last_epoch - 1) * span)
        return [lr * ratio for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        span = self.end_factor - self.start_factor
        return [b * (self.start_factor + span * progress) for b in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Decay the learning rate polynomially to zero over ``total_iters`` steps.

    ``lr = base_lr * (1 - min(last_epoch, total_iters) / total_iters) ** power``.

    Parameters
    ----------
    optimizer : Optimizer
    total_iters : int, default 5
        Steps until the rate reaches zero (>= 1).
    power : float, default 1.0
        Exponent (>= 0).
    last_epoch : int, default -1
    """

    def __init__(
        self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        self.total_iters = check_int("total_iters", total_iters)
        self.power = check_real("power", power, NON_NEGATIVE)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "total_iters": _at_least_one,
            "power": lambda name, value: check_real(name, value, NON_NEGATIVE),
        }

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        t, n = self.last_epoch, self.total_iters
        decay = ((1.0 - t / n) / (1.0 - (t - 1) / n)) ** self.power
        return [lr * decay for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        remaining = 1.0 - min(self.total_iters, self.last_epoch) / self.total_iters
        return [b * remaining**self.power for b in self.base_lrs]


def check_milestones(name: str, milestones: Any, low: int) -> list[int]:
    """Milestones as a list of strictly increasing ints, each ``>= low``."""
    if isinstance(milestones, str) or not isinstance(milestones, Iterable):
        raise TypeError(f"{name} must be a list of ints, got {type(milestones).__name__}")
    values = [check_int(f"{name}[{i}]", m, low=low) for i, m in enumerate(milestones)]
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{name} must be strictly increasing, got {values}")
    return values

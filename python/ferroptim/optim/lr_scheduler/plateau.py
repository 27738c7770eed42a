"""ReduceLROnPlateau: cut the learning rate when a metric stops improving."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from ferroptim._checks import (
    NON_NEGATIVE,
    NOT_NAN,
    UNIT,
    check_choice,
    check_non_negative,
    check_real,
)
from ferroptim.optim.lr_scheduler._validate import check_int, check_optimizer, per_group
from ferroptim.optim.lr_scheduler.base import LRScheduler, StateRule, group_values


def _count(name: str, value: object) -> int:
    return check_int(name, value, low=0)


def _optional_non_negative(name: str, value: object) -> float | None:
    return None if value is None else check_non_negative(name, value)


def _metric_bound(name: str, value: object) -> float:
    """A best metric so far: a real number, ``inf`` or ``-inf`` (before any), never nan."""
    return check_real(name, value, NOT_NAN)


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` once the metric passed to ``step(metrics)`` has
    not improved for more than ``patience`` steps.

    A value ``a`` improves on the best ``best`` when (``mode``, ``threshold_mode``):
    min/rel ``a < best * (1 - threshold)``, min/abs ``a < best - threshold``, max/rel
    ``a > best * (1 + threshold)``, max/abs ``a > best + threshold``. After more than
    ``patience`` steps without improvement each group gets ``lr = max(lr * factor, min_lr)``
    (skipped when the change is at most ``eps``), then ``cooldown`` steps pass before bad steps
    count again.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}, default "min"
    factor : float, default 0.1
        In [0, 1).
    patience : int, default 10
        Bad steps tolerated (>= 0).
    threshold : float, default 1e-4
        Minimum significant change (>= 0).
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
        Steps to wait after a reduction (>= 0).
    min_lr : float or list of float, default 0
        Lower bound, per group if a list.
    eps : float, default 1e-8
        Minimum change of the learning rate that is applied.

    Notes
    -----
    Unlike the other schedulers it leaves ``lr`` alone at construction and sets no
    ``initial_lr``; ``last_epoch`` counts the calls to :meth:`step`.
    """

    def __init__(
        self,
        optimizer: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        check_optimizer(optimizer)
        self.factor = check_real("factor", factor, UNIT)
        self.optimizer = optimizer
        if isinstance(min_lr, list | tuple):
            self.default_min_lr = None
        else:
            self.default_min_lr = check_non_negative("min_lr", min_lr)
        self.min_lrs = per_group("min_lr", optimizer, min_lr, check_non_negative)
        self.patience = check_int("patience", patience, low=0)
        self.cooldown = check_int("cooldown", cooldown, low=0)
        self.eps = check_real("eps", eps, NON_NEGATIVE)
        self.last_epoch = 0
        self._last_lr = group_values(optimizer, "lr")
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.threshold = check_real("threshold", threshold, NON_NEGATIVE)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether reductions are paused after the last one."""
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves significantly on ``best`` (see the class docstring)."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: float) -> None:  # type: ignore[override]
        """Record this step's metric (e.g. the validation loss) and reduce the rates if it has
        not improved for more than ``patience`` steps."""
        current = _as_metric(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = group_values(self.optimizer, "lr")

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"min_lrs has {len(self.min_lrs)} values but the optimizer now has "
                    f"{len(groups)} param groups; set min_lrs to match"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            "factor": lambda name, value: check_real(name, value, UNIT),
            "default_min_lr": _optional_non_negative,
            "min_lrs": self._group_rule(check_non_negative),
            "patience": _count,
            "cooldown": _count,
            "eps": check_non_negative,
            "last_epoch": _count,
            "_last_lr": self._group_rule(check_non_negative),
            "mode": lambda name, value: check_choice(name, value, ("min", "max")),
            "threshold": check_non_negative,
            "threshold_mode": lambda name, value: check_choice(name, value, ("rel", "abs")),
            "mode_worse": _metric_bound,
            "best": _metric_bound,
            "cooldown_counter": _count,
            "num_bad_epochs": _count,
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        worse = math.inf if state["mode"] == "min" else -math.inf
        if state["mode_worse"] != worse:
            raise ValueError(
                f"state_dict['mode_worse'] must be {worse} for mode={state['mode']!r}, got "
                f"{state['mode_worse']}"
            )


def _as_metric(metrics: object) -> float:
    """The metric as a float: a real number or a one-element array."""
    if isinstance(metrics, Real) and not isinstance(metrics, bool):
        return float(metrics)
    if isinstance(metrics, np.ndarray) and metrics.size == 1:
        return float(metrics.reshape(()))
    raise TypeError(f"metrics must be a real number, got {type(metrics).__name__}")

"""SWALR: anneal each group's learning rate to ``swa_lr`` (``torch.optim.swa_utils.SWALR``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from ferroptim._checks import check_non_negative
from ferroptim.optim.lr_scheduler._validate import check_int
from ferroptim.optim.lr_scheduler.base import LRScheduler, StateRule, group_values

_STRATEGIES = ("cos", "linear")


def _cosine(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


def _linear(t: float) -> float:
    return t


def _initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
    """The rate before annealing, recovered from the current one (torch's chainable form)."""
    if alpha == 1:
        return swa_lr
    return (lr - alpha * swa_lr) / (1 - alpha)


class SWALR(LRScheduler):
    """Move each group's learning rate from its current value to ``swa_lr`` over
    ``anneal_epochs`` steps, then hold it there.

    With ``t = clamp(step / max(1, anneal_epochs), 0, 1)`` and ``alpha = (1 - cos(pi t)) / 2``
    (``"cos"``) or ``t`` (``"linear"``): ``lr_t = swa_lr * alpha + lr_0 * (1 - alpha)``, where
    ``lr_0`` is recovered from the current rate and the previous step's alpha, as torch does.

    Parameters
    ----------
    optimizer : Optimizer
    swa_lr : float or list of float
        One for all groups or one per group; stored as ``group["swa_lr"]``.
    anneal_epochs : int, default 10
    anneal_strategy : {"cos", "linear"}, default "cos"
    last_epoch : int, default -1
    """

    _unsaved: ClassVar[tuple[str, ...]] = ("anneal_func",)
    anneal_func: Callable[[float], float]

    def __init__(
        self,
        optimizer: Any,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: str = "cos",
        last_epoch: int = -1,
    ) -> None:
        groups = optimizer.param_groups
        if isinstance(swa_lr, (list, tuple)):
            if len(swa_lr) != len(groups):
                raise ValueError(
                    f"swa_lr must have one value per param group ({len(groups)}), got {len(swa_lr)}"
                )
            values = [check_non_negative(f"swa_lr[{i}]", v) for i, v in enumerate(swa_lr)]
        else:
            values = [check_non_negative("swa_lr", swa_lr)] * len(groups)
        if anneal_strategy not in _STRATEGIES:
            raise ValueError(
                f"anneal_strategy must by one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        if isinstance(anneal_epochs, bool) or not isinstance(anneal_epochs, int):
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = check_int("anneal_epochs", anneal_epochs, low=0)
        for value, group in zip(values, groups, strict=True):
            group["swa_lr"] = value
        self._set_anneal_func(anneal_strategy)
        super().__init__(optimizer, last_epoch)

    def _set_anneal_func(self, strategy: str) -> None:
        self._anneal_strategy = strategy
        self.anneal_func = _cosine if strategy == "cos" else _linear

    def get_lr(self) -> list[float]:
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        groups = self.optimizer.param_groups
        prev_lrs = [
            _initial_lr(lr, float(g["swa_lr"]), prev_alpha)
            for lr, g in zip(group_values(self.optimizer, "lr"), groups, strict=True)
        ]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [
            float(g["swa_lr"]) * alpha + lr * (1 - alpha)
            for g, lr in zip(groups, prev_lrs, strict=True)
        ]

    def _state_rules(self) -> dict[str, StateRule]:
        def strategy(name: str, value: Any) -> str:
            if value not in _STRATEGIES:
                raise ValueError(f"{name} must be 'cos' or 'linear', got {value!r}")
            return str(value)

        return {
            **super()._state_rules(),
            "anneal_epochs": lambda name, value: check_int(name, value, low=0),
            "_anneal_strategy": strategy,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        self._set_anneal_func(self._anneal_strategy)

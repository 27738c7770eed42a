"""Schedulers driven by user functions of the step index: LambdaLR and MultiplicativeLR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferroptim.optim.lr_scheduler._validate import check_callables, check_optimizer
from ferroptim.optim.lr_scheduler.base import (
    LRScheduler,
    StateRule,
    callable_state,
    check_attrs,
    check_callable_state,
    group_values,
)

LrLambda = Callable[[int], float]


class _FunctionScheduler(LRScheduler):
    """Shared part of the two function-driven schedulers: one function per group, and their
    state (only callable objects have any: their ``__dict__``; plain functions save ``None``)."""

    _unsaved = ("lr_lambdas",)

    def __init__(
        self, optimizer: Any, lr_lambda: LrLambda | list[LrLambda], last_epoch: int = -1
    ) -> None:
        check_optimizer(optimizer)
        self.lr_lambdas = check_callables("lr_lambda", optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lr_lambdas"] = [callable_state(fn) for fn in self.lr_lambdas]
        return state

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "lr_lambdas": self._group_rule(check_attrs)}

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state.pop("lr_lambdas")
        for i, (fn, attrs) in enumerate(zip(self.lr_lambdas, saved, strict=True)):
            check_callable_state(f"lr_lambdas[{i}]", fn, attrs)
        super()._restore(state)
        for fn, attrs in zip(self.lr_lambdas, saved, strict=True):
            if attrs is not None:
                vars(fn).update(attrs)


class LambdaLR(_FunctionScheduler):
    """Set the learning rate to the initial one times a function of the step.

    ``lr = base_lr * lr_lambda(last_epoch)``.

    Parameters
    ----------
    optimizer : Optimizer
    lr_lambda : callable or list of callables
        ``f(step) -> factor``, or one such function per parameter group.
    last_epoch : int, default -1

    Notes
    -----
    ``state_dict()`` saves a function only if it is a callable object (its ``__dict__``), never a
    plain function or lambda; the same functions must be passed when rebuilding the scheduler.
    """

    def get_lr(self) -> list[float]:
        return [
            b * fn(self.last_epoch) for fn, b in zip(self.lr_lambdas, self.base_lrs, strict=True)
        ]


class MultiplicativeLR(_FunctionScheduler):
    """Multiply the learning rate by a function of the step at every step (not at the initial one).

    ``lr = lr * lr_lambda(last_epoch)``.

    Parameters and saved state as :class:`LambdaLR`.
    """

    def get_lr(self) -> list[float]:
        lrs = group_values(self.optimizer, "lr")
        if self._is_initial:
            return lrs
        return [lr * fn(self.last_epoch) for fn, lr in zip(self.lr_lambdas, lrs, strict=True)]

"""Schedulers built from others: SequentialLR (one after another) and ChainedScheduler (all at
once, their factors multiplying)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from ferroptim.optim.lr_scheduler._validate import check_int, check_optimizer
from ferroptim.optim.lr_scheduler.base import LRScheduler, StateRule, group_values
from ferroptim.optim.lr_scheduler.plateau import ReduceLROnPlateau
from ferroptim.optim.lr_scheduler.step import check_milestones


def _check_schedulers(owner: str, schedulers: Any, optimizer: Any) -> list[LRScheduler]:
    """A non-empty list of schedulers of ``optimizer`` (ReduceLROnPlateau excluded)."""
    if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, Sequence):
        raise TypeError(f"{owner}: schedulers must be a list of schedulers")
    if not schedulers:
        raise ValueError(f"{owner}: schedulers must not be empty")
    for i, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                f"{owner}: schedulers[{i}] must be a scheduler, got {type(scheduler).__name__}"
            )
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{owner}: schedulers[{i}] is a ReduceLROnPlateau, which needs a metric in "
                "step() and cannot be combined"
            )
        if optimizer is not None and scheduler.optimizer is not optimizer:
            raise ValueError(f"{owner}: schedulers[{i}] belongs to a different optimizer")
    return list(schedulers)


class _Composite(LRScheduler):
    """Shared part: state_dict nests the children's, and a failing step or load changes nothing
    (the children and the optimizer's groups are rolled back)."""

    _schedulers: list[LRScheduler]
    _unsaved = ("_schedulers",)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _state_rules(self) -> dict[str, StateRule]:
        return {**super()._state_rules(), "_schedulers": _check_children}

    def _restore(self, state: dict[str, Any]) -> None:
        children = state.pop("_schedulers")
        if not isinstance(children, list) or len(children) != len(self._schedulers):
            raise ValueError(
                f"state_dict['_schedulers'] must hold {len(self._schedulers)} scheduler states"
            )
        self._transaction(lambda: self._load_children(children))
        super()._restore(state)

    def _load_children(self, children: list[dict[str, Any]]) -> None:
        for scheduler, child in zip(self._schedulers, children, strict=True):
            scheduler.load_state_dict(child)

    def _transaction(self, action: Any) -> None:
        """Run ``action``; if it raises, put the children, this scheduler and the groups back."""
        saved_children = [s.state_dict() for s in self._schedulers]
        saved_self = dict(vars(self))
        saved_groups = [
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        ]
        try:
            action()
        except Exception:
            self._load_children(saved_children)
            self.__dict__.update(saved_self)
            for group, saved in zip(self.optimizer.param_groups, saved_groups, strict=True):
                group.update(saved)
            raise


def _check_children(name: str, value: object) -> list[Any]:
    """The children's states: a list of dicts (each checked by its scheduler on load)."""
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of scheduler states, got {type(value).__name__}")
    for i, child in enumerate(value):
        if not isinstance(child, dict):
            raise TypeError(f"{name}[{i}] must be a dict, got {type(child).__name__}")
    return value


class SequentialLR(_Composite):
    """Run ``schedulers`` one after another, switching at ``milestones``.

    Before the first milestone ``schedulers[0]`` steps; at milestone ``m_i`` ``schedulers[i+1]``
    restarts from its own step 0 (its closed form where it has one) and then steps.

    Parameters
    ----------
    optimizer : Optimizer
    schedulers : list of LRScheduler
        Built on ``optimizer`` (not ReduceLROnPlateau).
    milestones : list of int
        ``len(schedulers) - 1`` strictly increasing steps.
    last_epoch : int, default -1
    """

    def __init__(
        self,
        optimizer: Any,
        schedulers: list[LRScheduler],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        schedulers = _check_schedulers("SequentialLR", schedulers, optimizer)
        milestones = check_milestones("milestones", milestones, low=0)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"milestones must have one entry fewer than schedulers: got {len(milestones)} "
                f"milestones for {len(schedulers)} schedulers"
            )
        last_epoch = check_int("last_epoch", last_epoch, low=-1)
        for i, group in enumerate(optimizer.param_groups):
            if "initial_lr" not in group:
                raise KeyError(f"param_groups[{i}] has no 'initial_lr'")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in schedulers:
            _rewind(scheduler)
        first = self._schedulers[bisect_right(milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "_milestones": lambda name, value: check_milestones(name, value, low=0),
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        if len(state["_milestones"]) != len(self._schedulers) - 1:
            raise ValueError(
                f"state_dict['_milestones'] must have {len(self._schedulers) - 1} entries (one "
                f"fewer than schedulers), got {len(state['_milestones'])}"
            )

    def step(self) -> None:
        """Step the scheduler in charge at the next step (restarting it at its milestone)."""
        self._transaction(self._advance)

    def _advance(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


def _rewind(scheduler: LRScheduler) -> None:
    """Undo one step of ``last_epoch`` in a scheduler and, recursively, in its children."""
    children = getattr(scheduler, "_schedulers", None)
    if children is not None:
        for child in children:
            _rewind(child)
    else:
        scheduler.last_epoch -= 1


class ChainedScheduler(_Composite):
    """Step every scheduler in ``schedulers`` at each step, so their factors multiply
    (e.g. ``ConstantLR`` warm-up times ``ExponentialLR`` decay).

    Parameters
    ----------
    schedulers : list of LRScheduler
        Built on the same optimizer (not ReduceLROnPlateau).
    optimizer : Optimizer, optional
        Defaults to ``schedulers[0].optimizer``.
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Any = None) -> None:
        schedulers = _check_schedulers("ChainedScheduler", schedulers, None)
        optimizer = optimizer if optimizer is not None else schedulers[0].optimizer
        check_optimizer(optimizer)
        _check_schedulers("ChainedScheduler", schedulers, optimizer)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = group_values(optimizer, "lr")

    def step(self) -> None:
        """Step every scheduler, in order."""
        self._transaction(self._advance)

    def _advance(self) -> None:
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = group_values(self.optimizer, "lr")

"""The scheduler base class, shaped like ``torch.optim.lr_scheduler.LRScheduler``.

A scheduler owns no learning rate of its own: it reads and writes
``optimizer.param_groups[i]["lr"]``. Built after the optimizer, it records ``initial_lr`` in every
group and performs the initial step (``last_epoch`` becomes 0); then ``scheduler.step()`` is called
once after each ``optimizer.step``.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any, ClassVar

from ferroptim._checks import check_flag, check_non_negative
from ferroptim.optim.lr_scheduler._validate import check_group_list, check_int, check_optimizer

#: checks (and normalizes) one saved entry: ``rule("state_dict['key']", value) -> value``
StateRule = Callable[[str, Any], Any]


def group_values(optimizer: Any, key: str) -> list[float]:
    """``[float(group[key]) for group in optimizer.param_groups]``."""
    return [float(group[key]) for group in optimizer.param_groups]


def callable_state(fn: Callable[..., Any] | None) -> dict[str, Any] | None:
    """What torch saves of a user function: a copy of a callable object's attributes; ``None``
    for plain functions, lambdas and ``None``."""
    if fn is None or isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
        return None
    return dict(vars(fn))


def check_attrs(name: str, attrs: Any) -> dict[str, Any] | None:
    """What :func:`callable_state` saved: a dict of attributes, or None."""
    if attrs is not None and not isinstance(attrs, dict):
        raise TypeError(f"{name} must be a dict or None, got {type(attrs).__name__}")
    return attrs


def check_callable_state(name: str, fn: Callable[..., Any] | None, attrs: Any) -> None:
    """Check that what :func:`callable_state` saved can be applied to ``fn``."""
    if attrs is None:
        return
    if not isinstance(attrs, dict):
        raise TypeError(f"state_dict[{name!r}] must be a dict or None, got {type(attrs).__name__}")
    if fn is None or not hasattr(fn, "__dict__"):
        raise TypeError(f"state_dict[{name!r}] has attributes but the function takes none")


class LRScheduler:
    """Base class of the learning-rate schedulers.

    Parameters
    ----------
    optimizer : Optimizer
        Any ferroptim optimizer, or an object with a ``param_groups`` list of dicts with ``"lr"``.
    last_epoch : int, default -1
        Index of the last step taken. ``-1`` starts a new schedule: ``group["initial_lr"]`` is set
        to ``group["lr"]`` where missing. A value ``>= 0`` resumes one and needs ``initial_lr``
        in every group (``KeyError`` otherwise).

    Notes
    -----
    Subclasses implement :meth:`get_lr`, the learning rates for ``last_epoch`` computed from the
    current ``group["lr"]`` (torch's chainable form, so schedulers can be combined), and optionally
    ``_get_closed_form_lr``, the same rates as a function of ``base_lrs`` and ``last_epoch`` alone
    (used by :class:`SequentialLR` when it switches to a scheduler). ``state_dict()`` holds every
    attribute except the optimizer (and functions), as plain JSON-serializable data.
    """

    #: attributes left out of state_dict (besides ``optimizer``): functions, derived objects
    _unsaved: ClassVar[tuple[str, ...]] = ()

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        last_epoch = check_int("last_epoch", last_epoch, low=-1)
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", float(group["lr"]))
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        f"a scheduler with last_epoch={last_epoch} (load the optimizer's state "
                        "first, or start with last_epoch=-1)"
                    )
        self.optimizer = optimizer
        self.base_lrs: list[float] = group_values(optimizer, "initial_lr")
        self.last_epoch = last_epoch
        self._initial_step()

    # ----- stepping -------------------------------------------------------------------------
    def _initial_step(self) -> None:
        """Reset the step count and take the step that starts the schedule."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        """Advance the schedule by one step and write the new rates into the optimizer.

        Call it after ``optimizer.step(...)``.
        """
        self._step_count += 1
        try:
            self._update_lr()
        except Exception:
            self._step_count -= 1
            raise

    def _update_lr(self, epoch: int | None = None) -> None:
        """Move to ``last_epoch + 1`` with the chainable :meth:`get_lr`, or jump to ``epoch`` with
        the closed form where there is one. If computing the rates fails, nothing changes."""
        previous = self.last_epoch
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        except Exception:
            self.last_epoch = previous
            raise
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = float(lr)
        self._last_lr = group_values(self.optimizer, "lr")

    def get_lr(self) -> list[float]:
        """The learning rates for ``last_epoch``; called by :meth:`step`. To read the current
        rates, use :meth:`get_last_lr`."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates the last step wrote, one per parameter group (a copy)."""
        return list(self._last_lr)

    # ----- state_dict -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer and functions: plain numbers, strings, lists and
        dicts (JSON-serializable; a copy)."""
        skipped = {"optimizer", *self._unsaved}
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (also after a JSON round trip).

        Every entry is checked with the constructor's rules (types, finiteness, ranges, one value
        per parameter group) before anything changes.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a dict, or an entry has the wrong type (naming the key).
        KeyError
            If keys are missing or unexpected; nothing changes then.
        ValueError
            If an entry is out of range, or a per-group list does not match the optimizer's
            number of groups (naming the key).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        expected = set(self.state_dict())
        missing = expected - set(state_dict)
        if missing:
            raise KeyError(f"state_dict is missing keys {sorted(missing)}")
        unexpected = set(state_dict) - expected
        if unexpected:
            raise KeyError(f"state_dict has unexpected keys {sorted(map(str, unexpected))}")
        state = copy.deepcopy(state_dict)
        rules = self._state_rules()
        for key in sorted(state, key=str):
            if key in rules:  # a subclass defined elsewhere may save entries with no rule
                state[key] = rules[key](f"state_dict[{key!r}]", state[key])
        self._check_state(state)
        self._restore(state)

    def _state_rules(self) -> dict[str, StateRule]:
        """The check of every saved entry (subclasses add theirs): the constructor's rules."""
        return {
            "last_epoch": lambda name, value: check_int(name, value, low=-1),
            "_step_count": lambda name, value: check_int(name, value, low=0),
            "_is_initial": check_flag,
            "base_lrs": self._group_rule(check_non_negative),
            "_last_lr": self._group_rule(check_non_negative),
        }

    def _group_rule(self, check: StateRule) -> StateRule:
        """A rule for a list with one value per parameter group, each passing ``check``."""
        n_groups = len(self.optimizer.param_groups)
        return lambda name, value: check_group_list(name, n_groups, value, check)

    def _check_state(self, state: dict[str, Any]) -> None:
        """Checks across entries of a loaded state (after :meth:`_state_rules`)."""

    def _restore(self, state: dict[str, Any]) -> None:
        """Apply a checked state (a private copy). Subclasses convert entries first."""
        self.__dict__.update(state)

    def __repr__(self) -> str:
        step = getattr(self, "last_epoch", None)
        return f"{type(self).__name__}(last_epoch={step}, last_lr={self._last_lr})"

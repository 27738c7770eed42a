"""Cyclical schedules that also cycle momentum: OneCycleLR and CyclicLR.

With ``cycle_momentum`` the momentum moves opposite to the learning rate: ``group["momentum"]``
(SGD, RMSprop) or ``group["betas"][0]`` (the Adam family, whose ``betas`` is a tuple).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ferroptim._checks import (
    CLOSED_UNIT,
    POSITIVE,
    Range,
    check_choice,
    check_flag,
    check_non_negative,
    check_positive,
    check_real,
)
from ferroptim.optim.lr_scheduler._validate import (
    check_int,
    check_optimizer,
    int_or_real,
    per_group,
)
from ferroptim.optim.lr_scheduler.base import (
    LRScheduler,
    StateRule,
    callable_state,
    check_attrs,
    check_callable_state,
)

_MODES = ("triangular", "triangular2", "exp_range")
_LR_KEYS = ("initial_lr", "max_lr", "min_lr")
_MOMENTUM_KEYS = ("max_momentum", "base_momentum")
_PHASE_KEYS = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")


def _check_phases(name: str, value: object) -> list[dict[str, Any]]:
    """A saved OneCycleLR phase table: 2 or 3 dicts laid out as :func:`_phases` makes them."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise TypeError(f"{name} must be a list of 2 or 3 phase dicts, got {value!r}")
    for i, phase in enumerate(value):
        label = f"{name}[{i}]"
        if not isinstance(phase, dict) or set(phase) != set(_PHASE_KEYS):
            raise ValueError(f"{label} must be a dict with keys {list(_PHASE_KEYS)}")
        phase["end_step"] = int_or_real(f"{label}['end_step']", phase["end_step"], low=-1)
        for key in _PHASE_KEYS[1:]:
            allowed = _LR_KEYS if key.endswith("_lr") else _MOMENTUM_KEYS
            check_choice(f"{label}[{key!r}]", phase[key], allowed)
    return value


def _momentum_slot(optimizer: Any) -> bool:
    """Whether the optimizer keeps momentum as ``betas[0]`` (True) or ``momentum`` (False)."""
    defaults = getattr(optimizer, "defaults", None)
    keys = defaults if isinstance(defaults, dict) else optimizer.param_groups[0]
    if "momentum" not in keys and "betas" not in keys:
        raise ValueError(
            "cycle_momentum: the optimizer has neither 'momentum' nor 'betas'; "
            "pass cycle_momentum=False"
        )
    return "betas" in keys


def _set_momentum(group: dict[str, Any], use_beta1: bool, value: float) -> None:
    if use_beta1:
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value


def _start_momentum(
    optimizer: Any, use_beta1: bool, max_momentums: list[float], base_momentums: list[float]
) -> None:
    """Put every group at its maximum momentum and record both bounds in the groups."""
    for group, high, low in zip(optimizer.param_groups, max_momentums, base_momentums, strict=True):
        _set_momentum(group, use_beta1, high)
        group["max_momentum"] = high
        group["base_momentum"] = low


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018): warm up from ``max_lr / div_factor`` to ``max_lr``,
    then anneal to ``max_lr / (div_factor * final_div_factor)``; momentum does the opposite.

    Phases (steps): up to ``pct_start * total_steps - 1`` the rate goes ``initial_lr -> max_lr``,
    then ``max_lr -> min_lr`` until ``total_steps - 1``. With ``three_phase`` the second phase
    comes back to ``initial_lr`` at ``2 * pct_start * total_steps - 2`` and a third anneals to
    ``min_lr``. Inside a phase at fraction ``pct``: ``cos``:
    ``end + (start - end) / 2 * (1 + cos(pi * pct))``; ``linear``: ``start + (end - start) * pct``.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float or list of float
        Peak learning rate, per group if a list.
    total_steps : int, optional
        Length of the cycle; otherwise ``epochs * steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
        Fraction of the cycle spent warming up, in [0, 1].
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float or list of float, default 0.85, 0.95
    div_factor : float, default 25.0
        ``initial_lr = max_lr / div_factor``.
    final_div_factor : float, default 1e4
        ``min_lr = initial_lr / final_div_factor``.
    three_phase : bool, default False
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        From :meth:`step` when stepped more than ``total_steps`` times.
    """

    def __init__(
        self,
        optimizer: Any,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, low=-1)
        if total_steps is not None:
            self.total_steps = check_int("total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            epochs = check_int("epochs", epochs)
            self.total_steps = epochs * check_int("steps_per_epoch", steps_per_epoch)
        else:
            raise ValueError(
                "total_steps is missing: pass total_steps, or epochs and steps_per_epoch"
            )
        pct_start = check_real("pct_start", pct_start, CLOSED_UNIT)
        self._anneal_func_type = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        self._schedule_phases = _phases(self.total_steps, pct_start, bool(three_phase))
        if self._schedule_phases[0]["end_step"] == 0.0:
            raise ValueError(
                f"pct_start * total_steps must not be 1 (got pct_start={pct_start}, "
                f"total_steps={self.total_steps}): the warm-up phase would be empty"
            )
        max_lrs = per_group("max_lr", optimizer, max_lr, check_non_negative)
        div_factor = check_real("div_factor", div_factor, POSITIVE)
        final_div_factor = check_real("final_div_factor", final_div_factor, POSITIVE)
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _momentum_slot(optimizer)
            max_momentums = per_group("max_momentum", optimizer, max_momentum, check_non_negative)
            base_momentums = per_group(
                "base_momentum", optimizer, base_momentum, check_non_negative
            )
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, max_lrs, strict=True):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                _start_momentum(optimizer, self.use_beta1, max_momentums, base_momentums)
        super().__init__(optimizer, last_epoch)

    def _state_rules(self) -> dict[str, StateRule]:
        return {
            **super()._state_rules(),
            "total_steps": lambda name, value: check_int(name, value, low=1),
            "_anneal_func_type": lambda name, value: check_choice(name, value, ("cos", "linear")),
            "_schedule_phases": _check_phases,
            "cycle_momentum": check_flag,
            "use_beta1": check_flag,
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        last = state["_schedule_phases"][-1]["end_step"]
        if last != state["total_steps"] - 1:
            raise ValueError(
                f"state_dict['_schedule_phases'] ends at step {last}, but total_steps is "
                f"{state['total_steps']} (the last phase must end at total_steps - 1)"
            )

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        phases = self._schedule_phases
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == len(phases) - 1:
                    if end_step == start_step:
                        raise ValueError(
                            f"OneCycleLR phase {i} is empty at step {step_num} (pct_start * "
                            f"total_steps = {phases[0]['end_step'] + 1}); change pct_start"
                        )
                    pct = (step_num - start_step) / (end_step - start_step)
                    break
                start_step = end_step
            lrs.append(
                self._anneal(float(group[phase["start_lr"]]), float(group[phase["end_lr"]]), pct)
            )
            if self.cycle_momentum:
                momentum = self._anneal(
                    float(group[phase["start_momentum"]]), float(group[phase["end_momentum"]]), pct
                )
                _set_momentum(group, self.use_beta1, momentum)
        return lrs


def _phases(total_steps: int, pct_start: float, three_phase: bool) -> list[dict[str, Any]]:
    """The phase table (torch's layout): where each phase ends, and the group keys it moves
    between."""
    warmup_end = float(pct_start * total_steps) - 1
    if three_phase:
        table = [
            (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (
                float(2 * pct_start * total_steps) - 2,
                "max_lr",
                "initial_lr",
                "base_momentum",
                "max_momentum",
            ),
            (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
        ]
    else:
        table = [
            (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
        ]
    keys = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")
    return [dict(zip(keys, row, strict=True)) for row in table]


ScaleFn = Callable[[float], float]


class CyclicLR(LRScheduler):
    """Cyclical learning rate (Smith 2017): a triangle wave between ``base_lr`` and ``max_lr``.

    With ``cycle = floor(1 + t / (up + down))`` and ``x = 1 + t / (up + down) - cycle``, the
    height is ``x / r`` on the way up (``x <= r = up / (up + down)``), ``(x - 1) / (r - 1)`` on the
    way down, and ``lr = base_lr + (max_lr - base_lr) * height * scale``, where ``scale`` is
    ``scale_fn(cycle)`` (``scale_mode="cycle"``) or ``scale_fn(t)`` (``"iterations"``): 1 for
    ``triangular``, ``1 / 2 ** (cycle - 1)`` for ``triangular2``, ``gamma ** t`` for ``exp_range``.
    Momentum goes ``max_momentum - (max_momentum - base_momentum) * height * scale``.

    Parameters
    ----------
    optimizer : Optimizer
    base_lr, max_lr : float or list of float
        Bounds of the cycle, per group if lists. The groups' ``lr`` is set to ``base_lr``.
    step_size_up : int, default 2000
        Steps in the rising half (> 0).
    step_size_down : int, optional
        Steps in the falling half (> 0; default ``step_size_up``).
    mode : {"triangular", "triangular2", "exp_range"}, default "triangular"
        Ignored when ``scale_fn`` is given.
    gamma : float, default 1.0
        Base of ``exp_range`` (> 0).
    scale_fn : callable, optional
        Custom ``f(x) -> scale``, with ``scale_mode`` choosing ``x``.
    scale_mode : {"cycle", "iterations"}, default "cycle"
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float or list of float, default 0.8, 0.9
    last_epoch : int, default -1
    """

    _unsaved = ("_scale_fn_custom",)

    def __init__(
        self,
        optimizer: Any,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: float = 2000,
        step_size_down: float | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: ScaleFn | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, low=-1)
        base_lrs = per_group("base_lr", optimizer, base_lr, check_non_negative)
        self.max_lrs = per_group("max_lr", optimizer, max_lr, check_non_negative)
        up = check_real("step_size_up", step_size_up, POSITIVE)
        down = (
            up if step_size_down is None else check_real("step_size_down", step_size_down, POSITIVE)
        )
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None:
            mode = check_choice("mode", mode, _MODES)
        elif not callable(scale_fn):
            raise TypeError(f"scale_fn must be callable, got {type(scale_fn).__name__}")
        self.mode = mode
        self.gamma = check_positive("gamma", gamma)
        self._scale_fn_custom = scale_fn
        self.scale_mode = check_choice("scale_mode", scale_mode, ("cycle", "iterations"))
        self._set_scale_mode()
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _momentum_slot(optimizer)
            self.base_momentums = per_group(
                "base_momentum", optimizer, base_momentum, check_non_negative
            )
            self.max_momentums = per_group(
                "max_momentum", optimizer, max_momentum, check_non_negative
            )
        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr
            if self.cycle_momentum:
                _start_momentum(optimizer, self.use_beta1, self.max_momentums, self.base_momentums)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _set_scale_mode(self) -> None:
        """The built-in modes fix ``scale_mode`` (torch's rule)."""
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x: float) -> float:
        """The amplitude scale at ``x`` (the cycle number or the step, see ``scale_mode``)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def get_lr(self) -> list[float]:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            height = x / self.step_ratio
        else:
            height = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [
            low + (high - low) * height * scale
            for low, high in zip(self.base_lrs, self.max_lrs, strict=True)
        ]
        if self.cycle_momentum:
            for group, low, high in zip(
                self.optimizer.param_groups, self.base_momentums, self.max_momentums, strict=True
            ):
                _set_momentum(group, self.use_beta1, high - (high - low) * height * scale)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_scale_fn_custom"] = callable_state(self._scale_fn_custom)
        return state

    def _state_rules(self) -> dict[str, StateRule]:
        momentums = self._group_rule(check_non_negative)
        return {
            **super()._state_rules(),
            "max_lrs": self._group_rule(check_non_negative),
            "total_size": check_positive,
            "step_ratio": lambda name, value: check_real(
                name, value, Range(0.0, 1.0, low_open=True, high_open=True)
            ),
            # any mode goes with a custom scale_fn (it is ignored then), as in the constructor
            "mode": (lambda name, value: value)
            if self._scale_fn_custom is not None
            else (lambda name, value: check_choice(name, value, _MODES)),
            "gamma": check_positive,
            "_scale_fn_custom": check_attrs,
            "scale_mode": lambda name, value: check_choice(name, value, ("cycle", "iterations")),
            "cycle_momentum": check_flag,
            "use_beta1": check_flag,
            "base_momentums": momentums,
            "max_momentums": momentums,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        attrs = state.pop("_scale_fn_custom")
        check_callable_state("_scale_fn_custom", self._scale_fn_custom, attrs)
        super()._restore(state)
        if attrs is not None:
            vars(self._scale_fn_custom).update(attrs)
        self._set_scale_mode()

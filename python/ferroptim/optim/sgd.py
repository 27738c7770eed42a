"""torch.optim.SGD: plain, momentum, Nesterov."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np

from ferroptim.optim._checks import check_flag, check_number
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    ``buf = g`` on the first step, then ``buf = momentum * buf + (1 - dampening) * g``;
    ``d = g + momentum * buf`` (nesterov) or ``buf``; ``p -= lr * d`` (``d = g`` without momentum).
    ``weight_decay`` adds ``weight_decay * p`` to the gradient; ``maximize`` negates it.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
    nesterov : bool, default False
        Requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "sgd_step"
    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        group["lr"] = check_number("lr", group["lr"])
        group["momentum"] = check_number("momentum", group["momentum"])
        group["dampening"] = check_number("dampening", group["dampening"], low=-np.inf)
        group["weight_decay"] = check_number("weight_decay", group["weight_decay"])
        group["nesterov"] = check_flag("nesterov", group["nesterov"])
        group["maximize"] = check_flag("maximize", group["maximize"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov: Nesterov momentum requires a momentum and zero dampening")

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.state_names if group["momentum"] != 0 else ()

    def _has_state(self, state: _GroupState, i: int) -> bool:
        return "momentum_buffer" in state.arrays and bool(state.steps[i] > 0)

    def scalar_state(self, state: _GroupState, i: int) -> dict[str, Any]:
        return {}

    def load_scalar_state(self, state: _GroupState, i: int, entry: dict[str, Any]) -> None:
        # torch keeps no step for SGD: a saved buffer means the first step has happened.
        state.steps[i] = 1 if entry.get("momentum_buffer") is not None else 0

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        buffers = state.arrays["momentum_buffer"] if group["momentum"] != 0 else None
        self._kernel(
            group["params"],
            grads,
            buffers,
            state.steps,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

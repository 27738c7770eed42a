"""torch.optim.Adagrad."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np

from ferroptim.optim._checks import check_flag, check_number
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``.

    ``clr = lr / (1 + (t - 1) * lr_decay)``; ``sum += g * g``; ``p -= clr * g / (sqrt(sum) + eps)``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
        Starting value of ``sum`` (state is created at construction, as torch does).
    eps : float, default 1e-10
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "adagrad_step"
    state_names = ("sum",)
    eager_state = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[name] = check_number(name, group[name])
        group["maximize"] = check_flag("maximize", group["maximize"])

    def init_state(self, name: str, param: np.ndarray, group: dict[str, Any]) -> np.ndarray:
        return np.full_like(param, group["initial_accumulator_value"])

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        self._kernel(
            group["params"],
            grads,
            state.arrays["sum"],
            state.steps,
            lr=group["lr"],
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

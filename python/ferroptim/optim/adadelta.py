"""torch.optim.Adadelta."""

from __future__ import annotations

from typing import Any, Unpack

from ferroptim.optim._checks import check_flag, check_number
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta``.

    ``sq = rho*sq + (1-rho)*g*g``; ``delta = sqrt(acc + eps) / sqrt(sq + eps) * g``;
    ``acc = rho*acc + (1-rho)*delta*delta``; ``p -= lr * delta``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1.0
    rho : float, default 0.9
    eps : float, default 1e-6
    weight_decay : float, default 0
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "adadelta_step"
    state_names = ("square_avg", "acc_delta")

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        group["lr"] = check_number("lr", group["lr"])
        group["rho"] = check_number("rho", group["rho"])
        if group["rho"] > 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']} (expected 0 <= rho <= 1)")
        group["eps"] = check_number("eps", group["eps"])
        group["weight_decay"] = check_number("weight_decay", group["weight_decay"])
        group["maximize"] = check_flag("maximize", group["maximize"])

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        self._kernel(
            group["params"],
            grads,
            state.arrays["square_avg"],
            state.arrays["acc_delta"],
            state.steps,
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

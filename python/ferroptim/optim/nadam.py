"""torch.optim.NAdam."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np

from ferroptim.optim._checks import check_adam_like, check_number
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class NAdam(Optimizer):
    """NAdam, as ``torch.optim.NAdam``.

    ``mu_t = beta1*(1 - 0.5*0.96**(t*momentum_decay))``; ``mu_product *= mu_t`` (float32, as
    torch's scalar state); ``m``, ``v`` as Adam; ``denom = sqrt(v/(1-beta2**t)) + eps``;
    ``p -= lr*(1-mu_t)/(1-mu_product) * g/denom + lr*mu_{t+1}/(1-mu_product*mu_{t+1}) * m/denom``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "nadam_step"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        check_adam_like(group, ("decoupled_weight_decay",))
        group["momentum_decay"] = check_number("momentum_decay", group["momentum_decay"])

    def scalar_state(self, state: _GroupState, i: int) -> dict[str, Any]:
        return {"step": float(state.steps[i]), "mu_product": float(state.mu_products[i])}

    def load_scalar_state(self, state: _GroupState, i: int, entry: dict[str, Any]) -> None:
        super().load_scalar_state(state, i, entry)
        state.mu_products[i] = np.float32(entry.get("mu_product", 1.0))

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        beta1, beta2 = group["betas"]
        self._kernel(
            group["params"],
            grads,
            state.arrays["exp_avg"],
            state.arrays["exp_avg_sq"],
            state.mu_products,
            state.steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

"""torch.optim.RAdam."""

from __future__ import annotations

from typing import Any, Unpack

from ferroptim.optim._checks import check_adam_like
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class RAdam(Optimizer):
    """RAdam, as ``torch.optim.RAdam``.

    ``m``, ``v`` as Adam; ``rho_inf = 2/(1-beta2) - 1``;
    ``rho_t = rho_inf - 2t*beta2**t/(1-beta2**t)``;
    if ``rho_t > 5``: ``p -= lr * m/(1-beta1**t) * rect * sqrt(1-beta2**t)/(sqrt(v) + eps)`` with
    ``rect = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))``, else
    ``p -= lr * m/(1-beta1**t)``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "radam_step"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
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

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        beta1, beta2 = group["betas"]
        self._kernel(
            group["params"],
            grads,
            state.arrays["exp_avg"],
            state.arrays["exp_avg_sq"],
            state.steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

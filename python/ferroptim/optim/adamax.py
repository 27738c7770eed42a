"""torch.optim.Adamax."""

from __future__ import annotations

from typing import Any, Unpack

from ferroptim.optim._checks import check_adam_like
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class Adamax(Optimizer):
    """Adamax, as ``torch.optim.Adamax``.

    ``m = lerp(m, g, 1-beta1)``; ``u = max(beta2*u, |g| + eps)``; ``p -= lr/(1-beta1**t) * m/u``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "adamax_step"
    state_names = ("exp_avg", "exp_inf")

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        check_adam_like(group)

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        beta1, beta2 = group["betas"]
        self._kernel(
            group["params"],
            grads,
            state.arrays["exp_avg"],
            state.arrays["exp_inf"],
            state.steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

"""torch.optim.Adam, AdamW and AMSGrad."""

from __future__ import annotations

from typing import Any, Unpack

from ferroptim.optim._checks import check_adam_like
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (AMSGrad with ``amsgrad=True``).

    ``m = lerp(m, g, 1-beta1)``; ``v = beta2*v + (1-beta2)*g*g``; (amsgrad: ``vmax = max(vmax, v)``
    replaces ``v``); ``p -= lr/(1-beta1**t) * m / (sqrt(v)/sqrt(1-beta2**t) + eps)``.
    ``weight_decay`` is an L2 term added to the gradient, or with ``decoupled_weight_decay=True``
    (AdamW) ``p *= 1 - lr*weight_decay`` first.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False
    maximize : bool, default False
    decoupled_weight_decay : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "adam_step"
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        check_adam_like(group, ("amsgrad", "decoupled_weight_decay"))

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.state_names if group["amsgrad"] else self.state_names[:2]

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        arrays = state.arrays
        beta1, beta2 = group["betas"]
        self._kernel(
            group["params"],
            grads,
            arrays["exp_avg"],
            arrays["exp_avg_sq"],
            arrays["max_exp_avg_sq"] if group["amsgrad"] else None,
            state.steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2),
    ``p *= 1 - lr*weight_decay`` before the Adam update. Parameters as :class:`Adam`."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            **options,
        )

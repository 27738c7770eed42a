"""torch.optim.RMSprop."""

from __future__ import annotations

from typing import Any, Unpack

from ferroptim.optim._checks import check_flag, check_number
from ferroptim.optim.optimizer import Optimizer, StepOptions, _GroupState


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    ``sq = alpha*sq + (1-alpha)*g*g``; centered: ``ga = lerp(ga, g, 1-alpha)``,
    ``avg = sqrt(sq - ga*ga) + eps``, else ``avg = sqrt(sq) + eps``; with momentum
    ``buf = momentum*buf + g/avg``, ``p -= lr*buf``, else ``p -= lr*g/avg``.

    Parameters
    ----------
    params : list of numpy.ndarray or list of dict
    lr : float, default 1e-2
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    maximize : bool, default False
    backend : {"native", "reference"}
    max_grad_norm, clip_value : float, optional
        Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
    skip_nonfinite : bool, default False
        Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
        :class:`~ferroptim.optim.Optimizer`.
    """

    kernel_name = "rmsprop_step"
    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        **options: Unpack[StepOptions],
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            **options,
        )

    @staticmethod
    def validate_group(group: dict[str, Any]) -> None:
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            group[name] = check_number(name, group[name])
        group["centered"] = check_flag("centered", group["centered"])
        group["maximize"] = check_flag("maximize", group["maximize"])

    def active_states(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ["square_avg"]
        if group["centered"]:
            names.append("grad_avg")
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        return tuple(names)

    def run_kernel(self, group: dict[str, Any], state: _GroupState, grads: Any) -> None:
        arrays = state.arrays
        self._kernel(
            group["params"],
            grads,
            arrays["square_avg"],
            arrays["grad_avg"] if group["centered"] else None,
            arrays["momentum_buffer"] if group["momentum"] > 0 else None,
            state.steps,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
            grad_scale=self._grad_scale,
            clip_value=self._clip_value,
        )

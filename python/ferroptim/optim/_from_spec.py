"""The optimizer classes, each built from its registry entry (``ferroptim._registry``)."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from ferroptim._registry import OptimizerSpec
from ferroptim.optim.optimizer import Optimizer

__all__ = ["RegisteredOptimizer", "optimizer_class"]

_COMMON_DOC = """\
backend : {"native", "reference"}
max_grad_norm, clip_value : float, optional
    Gradient clipping inside the step; see :class:`~ferroptim.optim.Optimizer`.
skip_nonfinite : bool, default False
    Skip (leave everything unchanged) a step whose gradients hold nan or inf; see
    :class:`~ferroptim.optim.Optimizer`."""


def _signature(spec: OptimizerSpec) -> inspect.Signature:
    """torch's constructor signature: ``(params, <hyperparameters>, **options)``."""
    kinds = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    parameters = [
        inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(
            inspect.Parameter(h.name, kinds[h.keyword_only], default=h.default)
            for h in spec.exposed
        ),
        inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD),
    ]
    return inspect.Signature(parameters)


def _docstring(spec: OptimizerSpec) -> str:
    return (
        f"{spec.summary}\n\n{spec.formula}\n\nParameters\n----------\n"
        f"params : list of numpy.ndarray or list of dict\n{spec.parameters_doc()}\n{_COMMON_DOC}\n"
    )


class RegisteredOptimizer(Optimizer):
    """An optimizer built from its registry entry: the constructor takes torch's arguments
    (``inspect.signature`` of the class shows them), checked against the spec."""

    _signature: ClassVar[inspect.Signature]

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        bound = self._signature.bind(params, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        spec = self.spec
        defaults = {h.name: spec.fixed.get(h.name, given.get(h.name)) for h in spec.hypers}
        Optimizer.__init__(self, given["params"], defaults, **given["options"])


def optimizer_class(
    spec: OptimizerSpec, base: type[RegisteredOptimizer] = RegisteredOptimizer
) -> type[RegisteredOptimizer]:
    """The class of ``spec``, named ``spec.name``. Variants (``spec.fixed``) subclass ``base``,
    as AdamW is an Adam."""
    signature = _signature(spec)
    namespace = {
        "spec": spec,
        "_signature": signature,
        "__signature__": signature,
        "__doc__": _docstring(spec),
        "__module__": "ferroptim.optim",
        "__qualname__": spec.name,
    }
    return type(spec.name, (base,), namespace)

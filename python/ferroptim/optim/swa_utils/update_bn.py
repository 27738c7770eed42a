"""update_bn: recompute batch-norm running statistics with one pass over data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ferroptim.nn._grad_mode import no_grad
from ferroptim.nn.module import Module
from ferroptim.nn.normalization import _BatchNorm


def update_bn(loader: Iterable[Any], model: Module, device: Any = None) -> None:
    """Reset every batch-norm layer's running statistics and re-estimate them as the plain
    average over one pass of ``loader`` (``momentum=None`` during the pass), as
    ``torch.optim.swa_utils.update_bn``.

    Each item of ``loader`` is an input batch, or a tuple/list whose first element is. The
    forwards run in training mode under ``no_grad`` (no cache kept); each module's mode and
    momentum are restored afterwards, also when a forward raises.

    Raises
    ------
    ValueError
        ``device`` is given (arrays live in host memory).
    """
    if device is not None:
        raise ValueError("update_bn: device must be None (ferroptim arrays are on host)")
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    layers = [m for m in layers if m.track_running_stats]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    modes = [(m, m.training) for m in model.modules()]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    try:
        model.train()
        with no_grad():
            for batch in loader:
                model(batch[0] if isinstance(batch, (list, tuple)) else batch)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for module, training in modes:
            module.training = training

"""AveragedModel and torch's four averaging-function factories.

Formulas (``n`` = models averaged so far, ``p`` the average, ``q`` the model's value):

* SWA: ``p <- p + (q - p) / (n + 1)`` (torch's ``get_swa_avg_fn``, its CPU path);
* EMA, multi-array form: ``p <- lerp(p, q, 1 - decay)`` with torch's lerp,
  ``w < 0.5 ? p + w (q - p) : q - (q - p) (1 - w)``, in the arrays' dtype
  (``get_ema_multi_avg_fn``); single-array form ``decay p + (1 - decay) q``
  (``get_ema_avg_fn``).

The first ``update_parameters`` copies the model's values (``n_averaged == 0``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim._checks import CLOSED_UNIT, check_real
from ferroptim.nn.module import Module

#: ``(averaged, current, n_averaged)``: ``n_averaged`` is a 0-d int64 array (torch: a tensor)
AvgFn = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
MultiAvgFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Any], None]


def check_decay(decay: float, name: str = "decay") -> float:
    """``decay`` as a float in [0, 1]; TypeError / ValueError naming ``name`` otherwise."""
    return check_real(name, decay, CLOSED_UNIT)


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start <- lerp(start, end, weight)`` in place, torch's two-branch formula, computed in
    ``start``'s dtype."""
    w = start.dtype.type(weight)
    diff = end.astype(start.dtype, copy=False) - start
    if abs(weight) < 0.5:
        start += w * diff
    else:
        np.subtract(end, diff * (start.dtype.type(1) - w), out=start, casting="unsafe")


def get_ema_multi_avg_fn(decay: float = 0.999) -> MultiAvgFn:
    """EMA over lists of arrays, in place: ``p <- lerp(p, q, 1 - decay)``."""
    decay = check_decay(decay)

    def ema_update(averaged: Sequence[np.ndarray], current: Sequence[np.ndarray], _: Any) -> None:
        for p, q in zip(averaged, current, strict=True):
            if p.dtype.kind == "f":
                _lerp_(p, q, 1.0 - decay)
            else:
                np.copyto(p, p * decay + q * (1.0 - decay), casting="unsafe")

    return ema_update


def _swa_weight(num_averaged: Any) -> float:
    """torch's ``1 / (num_averaged + 1)``: a Python float for an int; for the counter
    :class:`AveragedModel` passes (a 0-d int64 array, as torch passes its int64 tensor) the
    quotient is a float32, torch's default dtype for the true division of an integer tensor,
    so float64 parameters are averaged with a float32-rounded weight, as in torch."""
    if isinstance(num_averaged, (np.ndarray, np.integer)):
        return float(np.float32(1) / np.float32(int(num_averaged) + 1))
    return 1.0 / (int(num_averaged) + 1)


def get_swa_multi_avg_fn() -> MultiAvgFn:
    """SWA over lists of arrays, in place: ``p <- lerp(p, q, 1 / (n + 1))`` (the weight as
    torch computes it, see :func:`_swa_weight`)."""

    def swa_update(
        averaged: Sequence[np.ndarray], current: Sequence[np.ndarray], num_averaged: Any
    ) -> None:
        for p, q in zip(averaged, current, strict=True):
            if p.dtype.kind == "f":
                _lerp_(p, q, _swa_weight(num_averaged))
            else:
                np.copyto(p, p + (q - p) / (int(num_averaged) + 1), casting="unsafe")

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> AvgFn:
    """EMA of one array: returns ``decay * p + (1 - decay) * q``."""
    decay = check_decay(decay)

    def ema_update(p: np.ndarray, q: np.ndarray, num_averaged: Any) -> np.ndarray:
        return decay * p + (1 - decay) * q

    return ema_update


def get_swa_avg_fn() -> AvgFn:
    """SWA of one array: returns ``p + (q - p) / (n + 1)``."""

    def swa_update(p: np.ndarray, q: np.ndarray, num_averaged: Any) -> np.ndarray:
        return p + (q - p) / (int(num_averaged) + 1)

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` whose weights are a running average of ``model``'s
    (``torch.optim.swa_utils.AveragedModel``).

    ``averaged.update_parameters(model)`` folds the model's current weights in; calling
    ``averaged(x)`` runs the copy. ``state_dict()`` has torch's keys: ``"n_averaged"`` (int64,
    0-d) then the copy's entries under ``"module."``.

    Parameters
    ----------
    model : Module
        Deep-copied; the copy is ``self.module``.
    device : None
        Accepted for torch code; must be None (arrays live in host memory).
    avg_fn : callable, optional
        ``avg_fn(averaged, current, n_averaged) -> new averaged`` per array.
    multi_avg_fn : callable, optional
        ``multi_avg_fn(averaged_list, current_list, n_averaged)`` updating in place. At most one
        of the two; with neither, the equal-weight (SWA) average.
    use_buffers : bool, default False
        Average the buffers (batch-norm statistics) too. Otherwise they are copied from
        ``model`` at each update (then :func:`update_bn` recomputes them for the average).

    Raises
    ------
    TypeError
        ``model`` is not a Module, an averaging function is not callable.
    ValueError
        Both ``avg_fn`` and ``multi_avg_fn`` given, or a ``device``.
    """

    n_averaged: np.ndarray
    module: Module

    def __init__(
        self,
        model: Module,
        device: Any = None,
        avg_fn: AvgFn | None = None,
        multi_avg_fn: MultiAvgFn | None = None,
        use_buffers: bool = False,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a Module, got {type(model).__name__}")
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("Only one of avg_fn and multi_avg_fn should be provided")
        for name, fn in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"AveragedModel: {name} must be callable, got {fn!r}")
        if device is not None:
            raise ValueError("AveragedModel: device must be None (ferroptim arrays are on host)")
        super().__init__(model.dtype)
        self.module = copy.deepcopy(model)
        self.register_buffer("n_averaged", np.zeros((), np.int64))
        self.n_averaged = np.zeros((), np.int64)  # register_buffer makes arrays 1-d
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = bool(use_buffers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.module(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.module.backward(dy)

    def _pairs(self, model: Module) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The averaged arrays and the model's matching ones (checked: same count and shapes)."""
        mine = self.module.parameters()
        theirs = model.parameters()
        if self.use_buffers:
            mine += [b for _, b in self.module.named_buffers()]
            theirs += [b for _, b in model.named_buffers()]
        if len(mine) != len(theirs):
            raise ValueError(
                f"update_parameters: the model has {len(theirs)} arrays to average, the "
                f"averaged model {len(mine)}"
            )
        for i, (p, q) in enumerate(zip(mine, theirs, strict=True)):
            if p.shape != q.shape:
                raise ValueError(
                    f"update_parameters: array {i} has shape {q.shape}, the average {p.shape}"
                )
        return mine, theirs

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current weights into the average and increment ``n_averaged``."""
        if not isinstance(model, Module):
            raise TypeError(f"update_parameters: expected a Module, got {type(model).__name__}")
        mine, theirs = self._pairs(model)
        n = self.n_averaged.copy()  # what torch passes: the counter (a 0-d int64 tensor there)
        if n == 0:
            for p, q in zip(mine, theirs, strict=True):
                np.copyto(p, q, casting="unsafe")
        elif self.avg_fn is not None:
            for p, q in zip(mine, theirs, strict=True):
                np.copyto(p, self.avg_fn(p, q, n), casting="unsafe")
        elif self.multi_avg_fn is not None:
            self.multi_avg_fn(mine, theirs, n)
        else:
            swa = get_swa_avg_fn()
            for p, q in zip(mine, theirs, strict=True):
                np.copyto(p, swa(p, q, n), casting="unsafe")
        if not self.use_buffers:
            for (_, b_avg), (_, b_model) in zip(
                self.module.named_buffers(), model.named_buffers(), strict=False
            ):
                np.copyto(b_avg, b_model, casting="unsafe")
        self.n_averaged += 1

    def extra_repr(self) -> str:
        return f"n_averaged={int(self.n_averaged)}"

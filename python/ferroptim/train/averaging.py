"""ModelAveraging: keep an EMA or SWA of the weights while ``fit`` trains."""

from __future__ import annotations

from typing import Any

from ferroptim._checks import check_int
from ferroptim.optim.swa_utils.averaged import AveragedModel, get_ema_multi_avg_fn
from ferroptim.train.callbacks import Callback


class ModelAveraging(Callback):
    """Update an :class:`~ferroptim.optim.swa_utils.AveragedModel` of the model being trained.

    Parameters
    ----------
    averaged : AveragedModel
        Built on the model ``fit`` trains (``AveragedModel(model, multi_avg_fn=...)``).
    interval : {"step", "epoch"}, default "step"
        Fold the weights in after every optimizer step (EMA style) or at the end of every epoch
        (SWA style).
    start_epoch : int, default 0
        The first epoch (0-based) whose weights are averaged.

    Example
    -------
    >>> ema = fo.train.ModelAveraging.ema(model, decay=0.999)  # doctest: +SKIP
    >>> fo.train.fit(model, loss_fn, opt, X, y, callbacks=[ema])  # doctest: +SKIP
    >>> fo.train.evaluate(ema.averaged, loss_fn, X_val, y_val)  # doctest: +SKIP
    """

    def __init__(
        self, averaged: AveragedModel, interval: str = "step", start_epoch: int = 0
    ) -> None:
        if not isinstance(averaged, AveragedModel):
            raise TypeError(
                f"ModelAveraging: averaged must be an AveragedModel, got {type(averaged).__name__}"
            )
        if interval not in ("step", "epoch"):
            raise ValueError(
                f"ModelAveraging: interval must be 'step' or 'epoch', got {interval!r}"
            )
        self.averaged = averaged
        self.interval = interval
        self.start_epoch = check_int("ModelAveraging: start_epoch", start_epoch, low=0)
        self._epoch = 0

    @classmethod
    def ema(cls, model: Any, decay: float = 0.999, use_buffers: bool = True) -> ModelAveraging:
        """An exponential moving average of ``model``'s weights (and, by default, buffers),
        updated after every optimizer step."""
        averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers
        )
        return cls(averaged, interval="step")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interval == "step" and self._epoch >= self.start_epoch:
            self.averaged.update_parameters(self.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interval == "epoch" and epoch >= self.start_epoch:
            self.averaged.update_parameters(self.model)

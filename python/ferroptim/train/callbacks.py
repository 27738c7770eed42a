"""Callbacks for :func:`ferroptim.train.fit`, with Keras' names and semantics.

A callback sees the run through ``self.state`` (a :class:`FitState`: model, optimizer, epochs,
the log names of this run) and stops training by setting ``self.state.stop_training = True``.
Epoch indices are 0-based, as in Keras' ``on_epoch_end(epoch, logs)``; file names formatted with
``{epoch}`` use ``epoch + 1``, as Keras does.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim._checks import check_int


@dataclass
class FitState:
    """What a running :func:`~ferroptim.train.fit` shares with its callbacks."""

    model: Any
    optimizer: Any = None
    scheduler: Any = None
    epochs: int = 0
    steps_per_epoch: int = 0
    #: the keys every epoch's logs will have (``loss``, ``accuracy``, ``val_loss``, ``lr``, ...)
    log_names: list[str] = field(default_factory=list)
    #: set by a callback to end training after the current batch
    stop_training: bool = False


class Callback:
    """Base class: override any of the hooks; each receives a ``logs`` dict.

    Hooks, in call order: ``on_train_begin``, then per epoch ``on_epoch_begin``,
    ``on_train_batch_begin`` / ``on_train_batch_end`` per optimizer step (batch logs: ``loss``
    and ``size`` of that step's samples), ``on_epoch_end`` (the epoch's logs, see
    :func:`~ferroptim.train.fit`), and ``on_train_end``.
    """

    state: FitState | None = None
    #: In data-parallel training (``fit(..., distributed=...)``) run on rank 0 only: set by
    #: callbacks that write files or print (``ModelCheckpoint``, ``CSVLogger``).
    rank_zero_only: bool = False

    def set_state(self, state: FitState) -> None:
        """Attach the run; :meth:`check_monitors` is called right after, before any training."""
        self.state = state

    def check_monitors(self, log_names: Sequence[str]) -> None:
        """Raise ``ValueError`` if a metric this callback needs will not be logged."""

    @property
    def model(self) -> Any:
        return None if self.state is None else self.state.model

    @property
    def run(self) -> FitState:
        """The attached run (``RuntimeError`` when the callback is used outside ``fit``)."""
        if self.state is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a fit run")
        return self.state

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...


class Monitor:
    """A logged quantity and the direction in which it improves.

    ``mode="auto"`` means ``"max"`` when the name contains ``acc`` or ``auc`` (accuracy,
    val_accuracy) and ``"min"`` otherwise (losses, errors). ``current`` improves on
    ``reference`` when ``current < reference - min_delta`` (min) or
    ``current > reference + min_delta`` (max).
    """

    def __init__(self, name: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"monitor must be a metric name, got {name!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.floating)):
            raise TypeError(f"min_delta must be a float, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if ("acc" in name or "auc" in name) else "min"
        self.name = name
        self.mode = mode
        self.min_delta = abs(float(min_delta))

    @property
    def worst(self) -> float:
        """The starting ``best``: ``+inf`` for min, ``-inf`` for max."""
        return math.inf if self.mode == "min" else -math.inf

    def is_improvement(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def check(self, log_names: Sequence[str], owner: str) -> None:
        if self.name not in log_names:
            raise ValueError(
                f"{owner}: monitor {self.name!r} is not logged; available: {sorted(log_names)}"
            )

    def value(self, logs: dict[str, Any] | None, owner: str) -> float:
        logs = logs or {}
        if self.name not in logs:
            raise ValueError(
                f"{owner}: monitor {self.name!r} is not in the logs; available: {sorted(logs)}"
            )
        return float(logs[self.name])


class EarlyStopping(Callback):
    """Stop when a monitored metric has stopped improving (Keras 3 semantics).

    Parameters
    ----------
    monitor : str
        Log name to watch (``"val_loss"``; ``"loss"`` without validation data).
    min_delta : float
        Smallest change that counts as an improvement (absolute value used).
    patience : int
        Epochs without improvement after which training stops; ``0`` stops at the first
        epoch that does not improve.
    mode : {"auto", "min", "max"}
        Direction of improvement (see :class:`Monitor`).
    baseline : float, optional
        The wait counter is only reset by epochs that also improve on this value, so training
        stops after ``patience`` epochs if the baseline is never beaten.
    restore_best_weights : bool
        At the end of training, load the ``state_dict`` (parameters and buffers, bit for bit)
        of the best epoch; when no epoch improved, of the first epoch watched.
    start_from_epoch : int
        Epochs (0-based) before this one are not watched (a warm-up).

    Attributes
    ----------
    best, best_epoch, stopped_epoch, wait
        As in Keras; ``stopped_epoch`` is 0 when training was not stopped.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = check_int("patience", patience, low=0)
        self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, low=0)
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self.monitor.worst
        self.best_epoch = 0
        self.best_weights: dict[str, np.ndarray] | None = None

    def check_monitors(self, log_names: Sequence[str]) -> None:
        self.monitor.check(log_names, "EarlyStopping")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = self.monitor.value(logs, "EarlyStopping")
        if epoch < self.start_from_epoch:  # a NaN is never an improvement, so it counts as waiting
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.state_dict()
            self.best_epoch = epoch
        self.wait += 1
        if self.monitor.is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self.monitor.is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.run.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite.

    ``terminated_batch`` holds ``(epoch, batch)`` of that batch (``None`` otherwise).
    """

    def __init__(self) -> None:
        self.terminated_batch: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.terminated_batch = (self._epoch, batch)
            self.run.stop_training = True


class ModelCheckpoint(Callback):
    """Save the model's ``state_dict`` at the end of epochs.

    Parameters
    ----------
    filepath : str or os.PathLike
        May contain ``str.format`` fields: ``{epoch}`` (1-based) and any log name, e.g.
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``.
    monitor : str
        Log name compared when ``save_best_only``.
    save_best_only : bool
        Save only when ``monitor`` improves on the best value so far (else every epoch).
    mode : {"auto", "min", "max"}
        Direction of improvement (see :class:`Monitor`).
    save_weights_only : bool
        Save the model only; otherwise the optimizer and scheduler of the run too (for an exact
        resume with ``ferroptim.checkpoint.load(path, model, optimizer, scheduler)``).

    Notes
    -----
    Files are written atomically with ``ferroptim.checkpoint.save`` (an ``.npz`` readable with
    ``np.load(path, allow_pickle=False)``); without that module, as an ``.npz`` of the model's
    state_dict. ``saved`` lists the paths written; ``best`` and ``best_epoch`` track the
    monitored value.
    """

    rank_zero_only = True

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        save_weights_only: bool = False,
    ) -> None:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or path, got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.monitor = Monitor(monitor, mode)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.best = self.monitor.worst
        self.best_epoch: int | None = None
        self.saved: list[str] = []

    @property
    def saves_optimizer_state(self) -> bool:
        """Whether the files include the optimizer (a ``ZeroRedundancyOptimizer``'s sharded
        state is then gathered to rank 0 by ``fit`` before each epoch's callbacks)."""
        return not self.save_weights_only

    def check_monitors(self, log_names: Sequence[str]) -> None:
        if self.save_best_only:
            self.monitor.check(log_names, "ModelCheckpoint")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best = self.monitor.worst
        self.best_epoch = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            current = self.monitor.value(logs, "ModelCheckpoint")
            if not self.monitor.is_improvement(current, self.best):
                return
            self.best = current
            self.best_epoch = epoch
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} names {exc}, which is not one of "
                f"epoch, {', '.join(sorted(logs))}"
            ) from exc
        self._save(path)
        self.saved.append(path)

    def _save(self, path: str) -> None:
        try:
            from ferroptim.checkpoint import save
        except ImportError:
            with open(path, "wb") as handle:  # the exact name: np.savez would append ".npz"
                np.savez(handle, **self.model.state_dict())
            return
        if self.save_weights_only:
            save(path, model=self.model)
        else:
            save(
                path,
                model=self.model,
                optimizer=self.run.optimizer,
                scheduler=self.run.scheduler,
            )


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row: ``epoch`` (0-based) then the log names in order.

    Parameters
    ----------
    filename : str or os.PathLike
    separator : str
    append : bool
        Keep an existing file's rows (the header is written only into an empty file); otherwise
        the file is truncated when training starts. Rows are flushed every epoch.
    """

    rank_zero_only = True

    def __init__(
        self, filename: str | os.PathLike, separator: str = ",", append: bool = False
    ) -> None:
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a str or path, got {type(filename).__name__}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.append:
            open(self.filename, "w").close()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        with open(self.filename, "a", newline="") as handle:
            writer = csv.writer(handle, delimiter=self.separator)
            if handle.tell() == 0:
                writer.writerow(["epoch", *logs])
            writer.writerow([epoch, *(_csv_value(v) for v in logs.values())])


def _csv_value(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value

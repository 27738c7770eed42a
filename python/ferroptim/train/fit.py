"""fit: the training loop (mini-batches, validation, callbacks, schedulers, regularization)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim._seed import new_generator
from ferroptim.nn._batch_share import batch_share
from ferroptim.optim._model_grads import model_gradients
from ferroptim.optim.swa_utils.averaged import check_decay
from ferroptim.train._data import (
    MeanTracker,
    as_dataset,
    batch_size_arg,
    batches,
    epochs_arg,
    model_dtype,
    validation_pair,
)
from ferroptim.train._distributed import (
    any_rank,
    averaging,
    consolidation,
    fit_comm,
    global_means,
    gradient_scale,
    rank_slice,
    runs_on_empty_share,
    shared_seed,
)
from ferroptim.train._preflight import check_fit_data, check_label_dtype, takes_class_indices
from ferroptim.train.averaging import ModelAveraging
from ferroptim.train.callbacks import Callback, FitState
from ferroptim.train.evaluate import evaluation_sums
from ferroptim.train.history import History
from ferroptim.train.metrics import Metric, resolve_metrics
from ferroptim.train.regularization import add_penalty_gradients, check_penalty, penalty


def fit(
    model: Any,
    loss_fn: Any,
    optimizer: Any,
    X: Any,
    y: Any,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    validation_batch_size: int | None = None,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    scheduler_monitor: str | None = None,
    callbacks: Sequence[Callback] | None = None,
    max_grad_norm: float | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    accumulate_steps: int = 1,
    augment: Callable[[np.ndarray], Any] | None = None,
    metrics: Any = None,
    progress: bool | None = None,
    seed: int | None = None,
    distributed: bool | None = None,
    ema_decay: float | None = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with ``optimizer`` and return the per-epoch :class:`History`.

    Each optimizer step: ``model.zero_grad()``; for each of its micro-batches ``out = model(xb)``,
    ``loss_fn(out, yb)``, ``model.backward(loss_fn.backward() / m)`` (``m`` micro-batches in the
    step); then the L1/L2 gradient is added and ``optimizer.step(model)`` runs (gradients matched
    to the optimizer's parameters by identity).

    Parameters
    ----------
    model : ferroptim.nn.Module
        Switched to ``train()`` for every epoch and to eval mode for validation; each module's
        previous mode is restored when ``fit`` returns.
    loss_fn : object
        ``loss_fn(output, target) -> float`` (mean-reduced) and ``loss_fn.backward() -> dinput``.
    optimizer : ferroptim.optim.Optimizer
        Built on some or all of ``model.parameters()`` (groups allowed); each optimizer
        parameter gets the model's gradient of that array, ``None`` (skipped) when frozen.
        Freezing is read at the start of every epoch, so a callback may ``unfreeze`` layers
        in ``on_epoch_begin`` (gradual fine-tuning).
    X, y : array_like
        Samples and targets, samples on axis 0. Floating arrays are cast to the model's dtype;
        integer arrays are kept. ``CrossEntropyLoss`` refuses float labels, integer-valued too
        (``TypeError`` naming the dtype passed; convert with ``y.astype(np.int64)``).
    epochs : int
        Passes over the data (``0`` trains nothing).
    batch_size : int
        Samples per micro-batch: ``len(X)`` gives full-batch gradient descent, ``1`` stochastic
        gradient descent, anything between mini-batch descent. The last batch may be smaller.
    shuffle : bool
        Draw a new sample order every epoch from ``np.random.default_rng(seed)``.
    validation_data : (X_val, y_val), optional
        Evaluated in eval mode after every epoch, logged as ``val_loss`` and ``val_<metric>``.
    validation_batch_size : int, optional
        Samples per validation forward (default ``batch_size``).
    scheduler : learning-rate scheduler, optional
        ``scheduler.step()`` after every epoch (``scheduler_interval="epoch"``) or after every
        optimizer step (``"step"``, e.g. warm-up + cosine). A ``ReduceLROnPlateau`` (by class
        name) is stepped once per epoch with the monitored value, ``scheduler.step(logs[m])``.
    scheduler_monitor : str, optional
        The log name given to ``ReduceLROnPlateau`` (default ``val_loss`` with validation data,
        else ``loss``).
    callbacks : list of Callback, optional
        E.g. ``EarlyStopping``, ``ModelCheckpoint``, ``TerminateOnNaN``, ``CSVLogger``. Monitored
        names are checked against this run's log names before training starts.
    max_grad_norm : float, optional
        Sets ``optimizer.max_grad_norm`` for the run (clipping inside the fused step, no extra
        pass in Python); the optimizer's previous setting is restored afterwards. ``None`` keeps
        the optimizer's own setting.
    l1, l2 : float
        Penalty ``l1 * sum|w| + l2 * sum w^2`` over trainable weights with ``ndim >= 2`` (biases,
        norm scales and frozen parameters excluded), added to the reported losses and, as
        ``l1 * sign(w) + 2 * l2 * w``, to the gradients before the step. This is a coupled
        penalty (an adaptive optimizer rescales it), unlike the decoupled weight decay of
        ``AdamW``; see :mod:`ferroptim.train.regularization`.
    accumulate_steps : int
        Micro-batches per optimizer step. Each micro-batch's gradient is scaled by ``1/k``, so
        with mean-reduced losses ``k`` micro-batches of ``batch_size`` give the gradient of one
        batch of ``k * batch_size`` (when an epoch's batch count is not a multiple of ``k``, its
        last step averages the ``m < k`` micro-batches left, scale ``1/m``).
    augment : callable, optional
        ``augment(xb) -> xb`` applied to every training batch (never to validation data); it
        may change the shape (a crop): the up-front check then accepts a raw ``X`` that fails.
    metrics : optional
        See :func:`~ferroptim.train.metrics.resolve_metrics`; by default ``accuracy`` for
        ``CrossEntropyLoss`` (argmax) and ``BCEWithLogitsLoss`` (logit > 0), none otherwise.
    progress : bool, optional
        One tqdm bar per epoch (batches, running loss). The default ``None`` shows bars when
        tqdm is installed and trains silently otherwise; ``True`` without tqdm warns once per
        process; ``False`` for silence.
    seed : int, optional
        Seed of the shuffling generator (``None``: a stream drawn from ``ferroptim.manual_seed``'s
        seed, fresh entropy when it was never called; distributed, a seed rank 0 draws so).
    distributed : bool, optional
        Data-parallel training over MPI ranks (``python -m mpi4py``). ``None`` (default) turns
        it on when the optimizer is distributed (``ferroptim.distributed.DistributedOptimizer``
        or ``ZeroRedundancyOptimizer``: any optimizer with ``is_distributed = True`` and a
        ``comm``); ``True`` turns it on for a plain optimizer too, which fit then wraps in a
        ``DistributedOptimizer`` for the run (collective: the same parameters on every rank);
        ``False`` lets every rank train on all the data. Distributed, every rank draws the same
        epoch order (the single-process one for this ``seed``) and trains on its
        ``DistributedSampler`` share of each global batch of ``batch_size`` (``batch[rank::R]``,
        no padding; ``augment`` runs on the whole batch so its draws match one process), its
        loss gradient scaled by ``R * |share| / |batch|`` so that the averaged gradient is the
        single-process one (see :mod:`ferroptim.train._distributed`). ``loss``, metrics and
        validation values are global (sums and counts gathered from every rank; validation
        data split the same way). Progress bars, ``History.plot`` and callbacks with
        ``rank_zero_only`` (``ModelCheckpoint``, ``CSVLogger``) act on rank 0 only; a stop
        requested on any rank stops every rank after the same step; a
        ``ZeroRedundancyOptimizer``'s state is consolidated on rank 0 before each epoch's
        callbacks when a ``ModelCheckpoint`` saves the optimizer. Build the model
        identically on every rank (same seed, or ``dist.broadcast_parameters``).
    ema_decay : float, optional
        Keep an exponential moving average of the weights and buffers, updated after every
        optimizer step (``p <- decay * p + (1 - decay) * w``, the first step copies the
        weights): shorthand for ``callbacks=[ModelAveraging.ema(model, ema_decay)]``. The
        averaged model is ``history.ema_model`` (an
        :class:`~ferroptim.optim.swa_utils.AveragedModel`; evaluate or save it like ``model``).
        ``decay`` must be in [0, 1].

    Returns
    -------
    History
        ``history.history[name]`` lists, per epoch: ``loss`` (sample-weighted mean of the batch
        losses, penalty included), each metric, ``val_loss`` and ``val_<metric>`` with
        validation data, ``lr`` (``param_groups[0]["lr"]`` used by the epoch's last optimizer
        step) and ``time`` (seconds). ``history.ema_model``: the EMA of the weights with
        ``ema_decay``, else None.

    Raises
    ------
    TypeError
        Non-numeric data, a non-integer ``batch_size``/``epochs``/``accumulate_steps``, a
        callback that is not a :class:`Callback`, a non-callable ``augment``.
    ValueError
        ``X``/``y`` of different lengths or empty, ``batch_size <= 0``, ``epochs < 0``, negative
        ``l1``/``l2``, an unknown ``scheduler_interval``, a monitor that is never logged (naming
        it and the available names), an optimizer parameter that is not in the model.
        ``X``/``validation_data`` the model cannot take or targets the loss refuses on its
        output (naming ``y`` or ``validation_data y``; e.g. a ``CrossEntropyLoss`` label not in
        ``[0, C)`` nor ``ignore_index``). All checks run before the first update, and nothing
        (parameters, gradients, buffers, optimizer state, generators, modes) is modified when
        ``fit`` raises: the data are checked by a dry forward of ``X[:2]`` and ``X_val[:2]`` in
        eval mode (two extra forward calls, plus a training-mode one of the last batch when it
        would hold one sample; see :mod:`ferroptim.train._preflight`).
    """
    dtype = model_dtype(model)
    labels = takes_class_indices(loss_fn)  # keep the caller's label dtype for the messages
    X, y = as_dataset(X, y, dtype, ("X", "y"), cast_target=not labels)
    check_label_dtype(loss_fn, y, "y")
    validation = validation_pair(validation_data, dtype, cast_target=not labels)
    if validation is not None:
        check_label_dtype(loss_fn, validation[1], "validation_data y")
    epochs = epochs_arg(epochs)
    batch_size = batch_size_arg(batch_size)
    validation_batch_size = batch_size_arg(
        batch_size if validation_batch_size is None else validation_batch_size,
        "validation_batch_size",
    )
    accumulate_steps = batch_size_arg(accumulate_steps, "accumulate_steps")
    l1 = check_penalty(l1, "l1")
    l2 = check_penalty(l2, "l2")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(
            f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
        )
    callbacks = _check_callbacks(callbacks)
    ema = None
    if ema_decay is not None:
        ema = ModelAveraging.ema(model, check_decay(ema_decay, "ema_decay"))
    if ema is not None:
        callbacks.append(ema)
    resolved_metrics = resolve_metrics(loss_fn, metrics)
    aligned_gradients(model, optimizer)  # checks that the optimizer holds model parameters
    check_fit_data(model, loss_fn, (X, y), validation, augment is not None, batch_size)
    comm = fit_comm(optimizer, distributed)
    if comm is not None:
        optimizer = averaging(optimizer, comm)
        seed = shared_seed(comm, seed)
    rank_zero = comm is None or comm.Get_rank() == 0

    log_names = ["loss", *resolved_metrics]
    if validation is not None:
        log_names += [f"val_{name}" for name in log_names]
    log_names += ["lr", "time"]
    plateau_monitor = _plateau_monitor(scheduler, scheduler_interval, scheduler_monitor, log_names)

    n_batches = math.ceil(len(X) / batch_size)
    state = FitState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=epochs,
        steps_per_epoch=math.ceil(n_batches / accumulate_steps),
        log_names=log_names,
    )
    history = History()
    history.rank_zero = rank_zero
    history.ema_model = None if ema is None else ema.averaged
    all_callbacks = [history, *callbacks]
    for callback in all_callbacks:
        callback.set_state(state)
        callback.check_monitors(log_names)
    consolidate = consolidation(comm, optimizer, all_callbacks)
    all_callbacks = [c for c in all_callbacks if rank_zero or not c.rank_zero_only]

    loop = _EpochRunner(
        model, loss_fn, optimizer, resolved_metrics, l1, l2, augment, state, all_callbacks, comm
    )
    rng = new_generator() if seed is None else np.random.default_rng(seed)
    saved_modes = [(module, module.training) for module in model.modules()]
    saved_max_norm = optimizer.max_grad_norm
    if max_grad_norm is not None:
        optimizer.max_grad_norm = max_grad_norm
    try:
        for callback in all_callbacks:
            callback.on_train_begin({})
        logs: dict[str, float] = {}
        for epoch in range(epochs):
            for callback in all_callbacks:
                callback.on_epoch_begin(epoch, {})
            started = time.perf_counter()
            order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
            step_scheduler = scheduler if scheduler_interval == "step" else None
            bar = _progress_bar(
                progress if rank_zero else False,
                state.steps_per_epoch,
                f"Epoch {epoch + 1}/{epochs}",
            )
            try:
                logs = loop.run(X, y, order, batch_size, accumulate_steps, step_scheduler, bar)
                if validation is not None:
                    val = loop.validate(*validation, validation_batch_size)
                    logs.update({f"val_{name}": value for name, value in val.items()})
                logs["lr"] = loop.last_lr
                logs["time"] = time.perf_counter() - started
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "time"})
            finally:
                if bar is not None:
                    bar.close()
            if scheduler is not None and scheduler_interval == "epoch":
                if plateau_monitor is None:
                    scheduler.step()
                else:
                    scheduler.step(logs[plateau_monitor])
            if consolidate is not None:
                consolidate()
            for callback in all_callbacks:
                callback.on_epoch_end(epoch, logs)
            if comm is not None:
                state.stop_training = any_rank(comm, state.stop_training)
            if state.stop_training:
                break
        for callback in all_callbacks:
            callback.on_train_end(logs)
    finally:
        optimizer.max_grad_norm = saved_max_norm
        for module, training in saved_modes:
            module.training = training
    return history


class _EpochRunner:
    """One epoch of optimizer steps (kept apart from ``fit``'s argument handling)."""

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        optimizer: Any,
        metrics: dict[str, Metric],
        l1: float,
        l2: float,
        augment: Callable | None,
        state: FitState,
        callbacks: list[Callback],
        comm: Any = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.metrics = metrics
        self.l1, self.l2 = l1, l2
        self.augment = augment
        self.state = state
        self.callbacks = callbacks
        #: the communicator of data-parallel training (None: one process)
        self.comm = comm
        #: whether a rank with no samples in a batch must still run forward and backward
        self.in_step = comm is not None and runs_on_empty_share(model)
        #: param_groups[0]["lr"] of the last optimizer step (before a per-step scheduler moved it)
        self.last_lr = float(optimizer.param_groups[0]["lr"])

    def run(
        self,
        X: np.ndarray,
        y: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        accumulate_steps: int,
        scheduler: Any,
        bar: Any,
    ) -> dict[str, float]:
        self.model.train()
        micro_batches = list(batches(order, batch_size))
        epoch_tracker = MeanTracker()
        for step, start in enumerate(range(0, len(micro_batches), accumulate_steps)):
            group = micro_batches[start : start + accumulate_steps]
            for callback in self.callbacks:
                callback.on_train_batch_begin(step, {"size": sum(len(i) for i in group)})
            step_tracker = self._step(X, y, group)
            epoch_tracker.update(step_tracker.means(), step_tracker.count)
            self.last_lr = float(self.optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            batch_logs = {**step_tracker.means(), "size": step_tracker.count}
            for callback in self.callbacks:
                callback.on_train_batch_end(step, batch_logs)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{epoch_tracker.means()['loss']:.4g}", refresh=False)
            if self.comm is not None:
                self.state.stop_training = any_rank(self.comm, self.state.stop_training)
            if self.state.stop_training:
                break
        if self.comm is not None:
            return global_means(self.comm, epoch_tracker, ["loss", *self.metrics])
        return epoch_tracker.means()

    def validate(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        """Loss (penalty included) and metrics over the validation data: this rank's share,
        combined over ranks when distributed."""
        if self.comm is None:
            sums = evaluation_sums(self.model, self.loss_fn, x, y, batch_size, self.metrics)
            result = sums.means()
        else:
            share = rank_slice(self.comm, np.arange(len(x)))
            sums = evaluation_sums(
                self.model, self.loss_fn, x[share], y[share], batch_size, self.metrics
            )
            result = global_means(self.comm, sums, ["loss", *self.metrics])
        result["loss"] += penalty(self.model, self.l1, self.l2)
        return result

    def _step(self, X: np.ndarray, y: np.ndarray, group: list[np.ndarray]) -> MeanTracker:
        """zero_grad, forward/backward every micro-batch of ``group`` (scaled 1/len(group)),
        penalty gradient, one optimizer step; returns the micro-batches' losses and metrics."""
        model = self.model
        model.zero_grad()
        reg = penalty(model, self.l1, self.l2)
        scale = 1.0 / len(group)
        tracker = MeanTracker()
        for index in group:
            xb, yb, weight = self._batch(X, y, index)
            if not len(yb):  # this rank's share of the batch is empty: its gradient counts as 0
                if self.in_step:  # but its layers take part (collectives, generators)
                    model.backward(np.zeros_like(self._forward(xb, len(index))))
                continue
            output = self._forward(xb, len(index))
            loss = float(self.loss_fn(output, yb))
            dout = self.loss_fn.backward()
            model.backward(dout * (scale * weight) if scale * weight != 1.0 else dout)
            values = {"loss": loss + reg}
            values.update({name: fn(output, yb) for name, fn in self.metrics.items()})
            tracker.update(values, len(yb))
        add_penalty_gradients(model, self.l1, self.l2)
        if self.comm is None:
            self.optimizer.step(model)
        else:  # the distributed optimizers take the gradient list
            self.optimizer.step(aligned_gradients(model, self.optimizer))
        return tracker

    def _forward(self, xb: np.ndarray, whole: int) -> np.ndarray:
        """``model(xb)``; distributed, with Dropout drawing its masks as one process would for
        the whole batch of ``whole`` samples (this rank's rows of it)."""
        if self.comm is None:
            return self.model(xb)
        with batch_share(whole, rank_slice(self.comm, np.arange(whole))):
            return self.model(xb)

    def _batch(
        self, X: np.ndarray, y: np.ndarray, index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """``(xb, yb, gradient weight)`` of the global batch ``index`` for this rank: the whole
        batch with weight 1 in one process, else this rank's share (maybe empty)."""
        if self.comm is None:
            xb = X[index]
            return (xb if self.augment is None else self.augment(xb)), y[index], 1.0
        share = rank_slice(self.comm, np.arange(len(index)))
        weight = gradient_scale(self.comm, len(share), len(index))
        if self.augment is not None:  # the whole batch on every rank: one process's draws
            xb = self.augment(X[index])[share]
        else:
            xb = X[index[share]]
        return xb, y[index[share]], weight


def aligned_gradients(model: Any, optimizer: Any) -> list[np.ndarray | None]:
    """The model's gradient arrays in the optimizer's parameter order (``None`` for frozen),
    matched by identity (see ``Optimizer.step(model)``).

    The optimizer may hold a subset of the model's parameters, in groups; every one must be a
    parameter array of ``model`` (the same object).
    """
    if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
        raise TypeError(f"optimizer must be a ferroptim optimizer, got {type(optimizer).__name__}")
    return model_gradients(optimizer, model)


def _check_callbacks(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks[{i}] must be a ferroptim.train.Callback, got {type(callback).__name__}"
            )
    return callbacks


def _plateau_monitor(
    scheduler: Any, interval: str, monitor: str | None, log_names: list[str]
) -> str | None:
    """The log name fed to a ReduceLROnPlateau scheduler (None for other schedulers)."""
    if scheduler is None:
        return None
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    if not any(cls.__name__ == "ReduceLROnPlateau" for cls in type(scheduler).__mro__):
        return None
    if interval != "epoch":
        raise ValueError("ReduceLROnPlateau needs scheduler_interval='epoch' (a metric per epoch)")
    monitor = monitor or ("val_loss" if "val_loss" in log_names else "loss")
    if monitor not in log_names:
        raise ValueError(
            f"scheduler_monitor {monitor!r} is not logged; available: {sorted(log_names)}"
        )
    return monitor


_warned_no_tqdm = False


def _progress_bar(progress: bool | None, total: int, desc: str) -> Any:
    """A tqdm bar, or None: for ``progress=False``, and without tqdm (silently for the default
    ``None``; ``True`` warns once per process)."""
    global _warned_no_tqdm
    if progress is False:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if progress is True and not _warned_no_tqdm:
            _warned_no_tqdm = True
            warnings.warn(
                "progress=True needs tqdm (pip install tqdm); training without progress bars",
                stacklevel=3,
            )
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)

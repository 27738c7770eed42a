"""K-fold cross-validation of a training recipe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ferroptim.train._data import as_dataset, batch_size_arg
from ferroptim.train.evaluate import evaluate
from ferroptim.train.fit import fit


def cross_validate(
    build_model: Callable[[], tuple[Any, ...]],
    X: Any,
    y: Any,
    *,
    k: int = 5,
    stratified: bool = True,
    shuffle: bool = True,
    seed: int | None = 0,
    eval_batch_size: int = 256,
    **fit_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Train a fresh model on each of ``k`` folds and score it on the held-out fold.

    For fold ``i`` the model is trained on the other ``k - 1`` folds with
    :func:`~ferroptim.train.fit` (the held-out fold is also its ``validation_data``, so
    ``EarlyStopping(monitor="val_loss")`` works), then evaluated on the held-out fold with the
    weights ``fit`` ends with (the best epoch's when ``restore_best_weights``).

    Parameters
    ----------
    build_model : callable
        ``build_model() -> (model, loss_fn, optimizer)`` or
        ``(model, loss_fn, optimizer, scheduler)``: called once per fold, it must build new,
        untrained objects (so folds do not share weights or optimizer state).
    X, y : array_like
        The whole dataset.
    k : int
        Number of folds (>= 2).
    stratified : bool
        Keep class proportions in every fold (``ferroptim.data.StratifiedKFold``; ``y`` must be
        1-D class labels). Use ``False`` for regression targets (``KFold``).
    shuffle : bool
        Shuffle before assigning folds.
    seed : int, optional
        Seeds the fold assignment and, unless ``fit_kwargs`` sets ``seed``, each fold's
        shuffling (``seed + fold``).
    eval_batch_size : int
        Batch size of the held-out evaluation.
    **fit_kwargs
        Passed to :func:`~ferroptim.train.fit` (``epochs``, ``batch_size``, ``callbacks``,
        ``l2``, ``metrics``, ``progress``...). Callbacks are shared by the folds; they reset at
        ``on_train_begin``.

    Returns
    -------
    dict of str to numpy.ndarray
        One float64 array of length ``k`` per score: ``val_loss`` and ``val_<metric>`` on the
        held-out folds, ``loss`` and ``<metric>`` of each run's last epoch, and ``epochs`` (epochs
        trained, ``< epochs`` after early stopping).

    Raises
    ------
    ValueError, TypeError
        Bad data or ``k``, stratification without class labels, ``validation_data`` in
        ``fit_kwargs``, or a ``build_model`` that does not return a 3- or 4-tuple.
    """
    from ferroptim.data.splits import KFold, StratifiedKFold

    X, y = as_dataset(X, y, None, ("X", "y"))
    eval_batch_size = batch_size_arg(eval_batch_size, "eval_batch_size")
    if "validation_data" in fit_kwargs:
        raise ValueError("cross_validate: validation_data is the held-out fold; do not pass it")
    if not callable(build_model):
        raise TypeError("build_model must be a callable returning (model, loss_fn, optimizer)")
    splitter_type = StratifiedKFold if stratified else KFold
    splitter = splitter_type(k, shuffle=shuffle, seed=seed if shuffle else None)
    if stratified and (y.ndim != 1 or y.dtype.kind == "f"):
        raise ValueError(
            f"cross_validate: stratified=True needs 1-D integer class labels y, got shape "
            f"{y.shape} dtype {y.dtype}; pass stratified=False for regression targets"
        )
    folds = list(splitter.split(X, y))
    scores: dict[str, list[float]] = {}
    for fold, (train_idx, test_idx) in enumerate(folds):
        model, loss_fn, optimizer, scheduler = _unpack(build_model())
        kwargs = dict(fit_kwargs)
        if "seed" not in kwargs and seed is not None:
            kwargs["seed"] = seed + fold
        if scheduler is not None:
            kwargs["scheduler"] = scheduler
        history = fit(
            model,
            loss_fn,
            optimizer,
            X[train_idx],
            y[train_idx],
            validation_data=(X[test_idx], y[test_idx]),
            **kwargs,
        )
        held_out = evaluate(
            model,
            loss_fn,
            X[test_idx],
            y[test_idx],
            batch_size=eval_batch_size,
            metrics=kwargs.get("metrics"),
            l1=kwargs.get("l1", 0.0),
            l2=kwargs.get("l2", 0.0),
        )
        row = {f"val_{name}": value for name, value in held_out.items()}
        for name, values in history.history.items():
            if not name.startswith("val_") and name not in ("lr", "time"):
                row[name] = values[-1]
        row["epochs"] = float(len(history.epoch))
        for name, value in row.items():
            scores.setdefault(name, []).append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}


def _unpack(built: Any) -> tuple[Any, Any, Any, Any]:
    if not isinstance(built, tuple) or len(built) not in (3, 4):
        raise TypeError(
            "build_model() must return (model, loss_fn, optimizer) or "
            f"(model, loss_fn, optimizer, scheduler), got {type(built).__name__}"
        )
    return (*built, None) if len(built) == 3 else built

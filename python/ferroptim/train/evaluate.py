"""Evaluation and prediction in eval mode, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ferroptim.train._data import (
    MeanTracker,
    as_array,
    as_dataset,
    batch_size_arg,
    batches,
    model_dtype,
)
from ferroptim.train._preflight import check_label_dtype, takes_class_indices
from ferroptim.train.metrics import Metric, resolve_metrics
from ferroptim.train.regularization import penalty


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``x`` in eval mode (the previous mode is restored).

    Parameters
    ----------
    model : ferroptim.nn.Module
    x : array_like
        Samples on axis 0.
    batch_size : int
        Samples per forward call.
    """
    x = as_array(x, "x", model_dtype(model))
    batch_size = batch_size_arg(batch_size)
    with eval_mode(model):
        outputs = [model(x[index]) for index in batches(np.arange(len(x)), batch_size)]
    return np.concatenate(outputs, axis=0)


def evaluate(
    model: Any,
    loss_fn: Callable[[np.ndarray, np.ndarray], float],
    x: Any,
    y: Any,
    *,
    batch_size: int = 256,
    metrics: Any = None,
    l1: float = 0.0,
    l2: float = 0.0,
) -> dict[str, float]:
    """Loss and metrics over a dataset, in eval mode (the previous mode is restored).

    .. math:: \\text{loss} = \\frac{1}{N} \\sum_b |b| \\, \\ell_b + R(w)

    where ``l_b`` is the (mean-reduced) loss of batch ``b`` and ``R`` the L1/L2 penalty of
    :func:`~ferroptim.train.regularization.penalty` (as Keras adds regularization losses to
    ``val_loss``). Metrics are averaged the same way.

    Parameters
    ----------
    model : ferroptim.nn.Module
    loss_fn : callable
        ``loss_fn(output, target) -> float``.
    x, y : array_like
        Samples and targets (same length); float ``y`` is refused for ``CrossEntropyLoss``
        (``TypeError`` naming its dtype), as in :func:`~ferroptim.train.fit`.
    batch_size : int
    metrics : see :func:`~ferroptim.train.metrics.resolve_metrics`
    l1, l2 : float

    Returns
    -------
    dict
        ``{"loss": ..., <metric>: ...}``.
    """
    x, y = as_dataset(
        x, y, model_dtype(model), ("x", "y"), cast_target=not takes_class_indices(loss_fn)
    )
    check_label_dtype(loss_fn, y, "y")
    batch_size = batch_size_arg(batch_size)
    resolved = metrics if _is_resolved(metrics) else resolve_metrics(loss_fn, metrics)
    result = evaluation_sums(model, loss_fn, x, y, batch_size, resolved).means()
    result["loss"] += penalty(model, l1, l2)
    return result


def _is_resolved(metrics: Any) -> bool:
    return isinstance(metrics, dict) and all(callable(m) for m in metrics.values())


def evaluation_sums(
    model: Any,
    loss_fn: Callable,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    metrics: Mapping[str, Metric],
) -> MeanTracker:
    """The sample-weighted sums of the loss and metrics over ``(x, y)`` in eval mode."""
    tracker = MeanTracker()
    with eval_mode(model):
        for index in batches(np.arange(len(x)), batch_size):
            output = model(x[index])
            target = y[index]
            values = {"loss": float(loss_fn(output, target))}
            values.update({name: fn(output, target) for name, fn in metrics.items()})
            tracker.update(values, len(index))
    return tracker


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """Every module of ``model`` in eval mode inside the block; each one's own mode after."""
    saved = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in saved:
            module.training = training

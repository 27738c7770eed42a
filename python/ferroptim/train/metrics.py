"""Metrics computed alongside the loss: accuracy for classification, errors for regression.

Every metric is ``metric(output, target) -> float``, the mean over the batch's samples (and any
spatial positions), so averaging batch values weighted by batch size gives the dataset value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def categorical_accuracy(output: np.ndarray, target: np.ndarray) -> float:
    """Fraction of samples whose highest score is the true class.

    ``pred = argmax(output, axis=1)``; ``target`` holds class indices (shape of ``output``
    without axis 1) or one-hot / probability rows (same shape as ``output``, argmax taken).
    Matches ``CrossEntropyLoss`` inputs, including ``(N, C, d1, ...)`` outputs.
    """
    output = np.asarray(output)
    target = np.asarray(target)
    if output.ndim < 2:
        raise ValueError(f"categorical_accuracy: output must be (N, C, ...), got {output.shape}")
    if target.shape == output.shape:
        target = np.argmax(target, axis=1)
    pred = np.argmax(output, axis=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"categorical_accuracy: target shape {target.shape} does not match output "
            f"{output.shape} (expected {pred.shape} or {output.shape})"
        )
    return float(np.mean(pred == target))


def binary_accuracy(output: np.ndarray, target: np.ndarray, threshold: float = 0.0) -> float:
    """Fraction of elements with ``(output > threshold) == (target > 0.5)``.

    ``threshold=0`` suits logits (``BCEWithLogitsLoss``); use ``0.5`` for probabilities.
    """
    output = np.asarray(output)
    target = np.asarray(target)
    if output.size != target.size:
        raise ValueError(
            f"binary_accuracy: output {output.shape} and target {target.shape} differ in size"
        )
    return float(np.mean((output.reshape(-1) > threshold) == (target.reshape(-1) > 0.5)))


def mean_absolute_error(output: np.ndarray, target: np.ndarray) -> float:
    """``mean(|output - target|)``."""
    diff = np.asarray(output, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


def mean_squared_error(output: np.ndarray, target: np.ndarray) -> float:
    """``mean((output - target)^2)``."""
    diff = np.asarray(output, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return float(np.mean(diff * diff))


def _probability_accuracy(output: np.ndarray, target: np.ndarray) -> float:
    return binary_accuracy(output, target, threshold=0.5)


def _shape_inferred_accuracy(output: np.ndarray, target: np.ndarray) -> float:
    """Accuracy when the loss does not say: several columns -> argmax, one -> threshold 0.5."""
    output = np.asarray(output)
    if output.ndim >= 2 and output.shape[1] > 1:
        return categorical_accuracy(output, target)
    return _probability_accuracy(output, target)


_LOSS_ACCURACY: dict[str, Metric] = {
    "CrossEntropyLoss": categorical_accuracy,
    "NLLLoss": categorical_accuracy,
    "BCEWithLogitsLoss": binary_accuracy,
    "BCELoss": _probability_accuracy,
}

_NAMED: dict[str, Metric] = {
    "mae": mean_absolute_error,
    "mse": mean_squared_error,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
}


def accuracy_for_loss(loss_fn: Any) -> Metric | None:
    """The accuracy matching a classification loss (by class name), else ``None``:
    ``CrossEntropyLoss``/``NLLLoss`` -> argmax, ``BCEWithLogitsLoss`` -> logit > 0,
    ``BCELoss`` -> probability > 0.5."""
    return _LOSS_ACCURACY.get(type(loss_fn).__name__)


def resolve_metrics(
    loss_fn: Any, metrics: Sequence[str | Metric] | Mapping[str, Metric] | None
) -> dict[str, Metric]:
    """The metrics :func:`ferroptim.train.fit` computes, by log name.

    Parameters
    ----------
    loss_fn : object
        Its class name decides the default: ``{"accuracy": ...}`` for classification losses
        (see :func:`accuracy_for_loss`), nothing otherwise.
    metrics : None, sequence or mapping
        ``None`` for that default; a sequence of names (``"accuracy"`` - matched to the loss,
        or inferred from the output shape -, ``"mae"``, ``"mse"``, ``"categorical_accuracy"``,
        ``"binary_accuracy"``) or callables (logged under ``__name__``); or a mapping
        ``name -> callable(output, target) -> float``.

    Raises
    ------
    ValueError
        For an unknown metric name, a reserved name (``loss``, ``lr``, ``time``, ``val_*``) or a
        duplicate.
    TypeError
        For an entry that is neither a name nor a callable.
    """
    if metrics is None:
        accuracy = accuracy_for_loss(loss_fn)
        return {} if accuracy is None else {"accuracy": accuracy}
    if isinstance(metrics, (str, bytes)):
        raise TypeError("metrics must be a list of names or callables, or a dict, not a string")
    items = metrics.items() if isinstance(metrics, Mapping) else ((None, m) for m in metrics)
    resolved: dict[str, Metric] = {}
    for name, metric in items:
        if isinstance(metric, str):
            name = name or metric
            if metric == "accuracy":
                metric = accuracy_for_loss(loss_fn) or _shape_inferred_accuracy
            elif metric in _NAMED:
                metric = _NAMED[metric]
            else:
                known = ["accuracy", *_NAMED]
                raise ValueError(f"metrics: unknown metric {metric!r}; known names: {known}")
        elif callable(metric):
            name = name or getattr(metric, "__name__", type(metric).__name__)
        else:
            raise TypeError(f"metrics: expected a name or a callable, got {metric!r}")
        if not isinstance(name, str) or name in ("loss", "lr", "time") or name.startswith("val_"):
            raise ValueError(f"metrics: {name!r} is reserved or not a string")
        if name in resolved:
            raise ValueError(f"metrics: duplicate metric name {name!r}")
        resolved[name] = metric
    return resolved

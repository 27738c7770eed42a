"""The "try a small subset first" check: a model that cannot overfit 32 samples has a bug."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferroptim.train._data import as_dataset, batch_size_arg, model_dtype
from ferroptim.train._preflight import check_label_dtype, takes_class_indices
from ferroptim.train.evaluate import evaluate
from ferroptim.train.fit import fit
from ferroptim.train.metrics import resolve_metrics


@dataclass
class OverfitReport:
    """Result of :func:`overfit_check`.

    Attributes
    ----------
    initial_loss, final_loss : float
        Loss on the subset (eval mode) before and after training.
    accuracy : float or None
        Final accuracy on the subset, for classification losses (else None).
    passed : bool
        Whether the model memorized the subset (see :func:`overfit_check`).
    n_samples, steps : int
        Subset size and full-batch steps taken.
    losses : list of float
        Training loss at every step.
    """

    initial_loss: float
    final_loss: float
    accuracy: float | None
    passed: bool
    n_samples: int
    steps: int
    losses: list[float]

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        acc = "" if self.accuracy is None else f", accuracy {self.accuracy:.3f}"
        return (
            f"overfit check {verdict}: loss {self.initial_loss:.4g} -> {self.final_loss:.4g}"
            f"{acc} on {self.n_samples} samples after {self.steps} steps"
        )


def overfit_check(
    model: Any,
    loss_fn: Any,
    optimizer: Any,
    X: Any,
    y: Any,
    *,
    n_samples: int = 32,
    steps: int = 200,
    min_accuracy: float = 1.0,
    loss_ratio: float = 0.05,
    restore: bool = True,
    seed: int | None = 0,
) -> OverfitReport:
    """Train on a small random subset until it is memorized: the guide's sanity check before a
    long run (a model, loss or gradient bug usually shows up as a failure here).

    ``steps`` full-batch optimizer steps on ``n_samples`` samples drawn without replacement
    (all of them when fewer), without regularization, then the loss and accuracy on the subset
    in eval mode. It passes when the accuracy reaches ``min_accuracy`` (classification losses,
    see :func:`~ferroptim.train.metrics.accuracy_for_loss`) or, for other losses, when
    ``final_loss <= loss_ratio * initial_loss``.

    Parameters
    ----------
    model, loss_fn, optimizer
        As for :func:`~ferroptim.train.fit`.
    X, y : array_like
    n_samples : int
    steps : int
    min_accuracy : float
    loss_ratio : float
    restore : bool
        Put the model's state_dict and the optimizer's state back afterwards (default), so the
        check can run on the model about to be trained.
    seed : int, optional
        Seeds the subset choice.

    Returns
    -------
    OverfitReport
    """
    X, y = as_dataset(
        X, y, model_dtype(model), ("X", "y"), cast_target=not takes_class_indices(loss_fn)
    )
    check_label_dtype(loss_fn, y, "y")
    n_samples = batch_size_arg(n_samples, "n_samples")
    steps = batch_size_arg(steps, "steps")
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(X), size=min(n_samples, len(X)), replace=False))
    xs, ys = X[subset], y[subset]
    metrics = resolve_metrics(loss_fn, None)
    saved_model = model.state_dict()
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    try:
        initial = evaluate(model, loss_fn, xs, ys, batch_size=len(xs), metrics=metrics)
        history = fit(
            model,
            loss_fn,
            optimizer,
            xs,
            ys,
            epochs=steps,
            batch_size=len(xs),
            shuffle=False,
            metrics=metrics,
            progress=False,
        )
        final = evaluate(model, loss_fn, xs, ys, batch_size=len(xs), metrics=metrics)
    finally:
        if restore:
            model.load_state_dict(saved_model)
            optimizer.load_state_dict(saved_optimizer)
    accuracy = final.get("accuracy")
    if accuracy is not None:
        passed = accuracy >= min_accuracy
    else:
        passed = final["loss"] <= loss_ratio * initial["loss"]
    return OverfitReport(
        initial_loss=initial["loss"],
        final_loss=final["loss"],
        accuracy=accuracy,
        passed=bool(passed),
        n_samples=len(xs),
        steps=steps,
        losses=list(history.history["loss"]),
    )

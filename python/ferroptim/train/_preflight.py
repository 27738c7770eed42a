"""fit's preflight: the data checked against the model and the loss before the first update.

A bad validation set or an out-of-range label used to surface only after an epoch of training
(or after the batches before it had stepped the optimizer). :func:`check_fit_data` instead runs
a *dry forward*: the model on the first ``min(2, N)`` samples of ``X`` (and of ``X_val``) in eval
mode, and the loss on those outputs and targets. Eval mode leaves batch-norm running statistics
and dropout generators alone (no batch statistics are folded in, no mask is drawn); every
module's and the loss's attributes (training flag, dtype of dtype-following layers, forward
caches, LSTM ``h_n``/``c_n``) are put back afterwards, so the dry run leaves no trace. Two
samples, not one, so that a batch norm computing batch statistics in eval mode
(``track_running_stats=False``) can run. Then, for classification losses, the *whole* target
arrays are checked against the model's output width.

Batch sizes: when ``fit`` would form a one-sample batch (``len(X) % batch_size == 1``, or
``batch_size == 1``), that sample goes through a *training-mode* forward too, with every buffer,
generator and attribute put back afterwards, so that a layer refusing it in training mode (batch
statistics of one value under ``BatchNorm1d``, as in torch) is reported before the first update,
with the fix, instead of after an epoch of training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: losses taking integer class indices on the output's axis 1 (by class name, as in metrics)
_CLASS_INDEX_LOSSES = ("CrossEntropyLoss", "NLLLoss")


def takes_class_indices(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` wants integer class labels (``CrossEntropyLoss``, ``NLLLoss``)."""
    return any(cls.__name__ in _CLASS_INDEX_LOSSES for cls in type(loss_fn).__mro__)


def check_label_dtype(loss_fn: Any, y: np.ndarray, name: str) -> None:
    """``TypeError`` naming ``name`` and the caller's dtype when a class-index loss gets
    non-integer labels. Integer-valued float labels (``1.0``) are refused as well, exactly as
    ``CrossEntropyLoss`` refuses them: convert with ``y.astype(np.int64)``. ``y`` must be the
    caller's array, not yet cast to the model's dtype."""
    if takes_class_indices(loss_fn) and y.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class indices for {type(loss_fn).__name__}, got dtype "
            f"{y.dtype} (float labels are refused even when integer-valued; convert with "
            f"{name}.astype(np.int64))"
        )


@contextmanager
def _no_trace(model: Any, loss_fn: Any, training: bool = False) -> Iterator[None]:
    """Eval mode (training mode with ``training``) inside the block; afterwards every module's
    and the loss's attribute bindings (training flags, caches, dtype, ...), buffer values
    (running statistics) and random generator states are exactly those from before."""
    objects = [*model.modules(), loss_fn]
    saved = [(obj, dict(vars(obj))) for obj in objects if hasattr(obj, "__dict__")]
    buffers = [(buffer, buffer.copy()) for _, buffer in model.named_buffers()]
    rng = model.rng_state()
    model.train(training)
    try:
        yield
    finally:
        for obj, attributes in saved:
            vars(obj).clear()
            vars(obj).update(attributes)
        for buffer, value in buffers:
            np.copyto(buffer, value)
        model.set_rng_state(rng)


def smallest_batch(n_samples: int, batch_size: int) -> int:
    """The size of the smallest batch of ``n_samples`` cut into batches of ``batch_size``."""
    return n_samples % batch_size or min(batch_size, n_samples)


def check_batch_sizes(model: Any, loss_fn: Any, X: np.ndarray, batch_size: int) -> None:
    """A training-mode forward of the smallest batch ``fit`` will form, leaving no trace;
    ``ValueError`` with the fix when the model refuses it (see the module docstring)."""
    size = smallest_batch(len(X), batch_size)
    if size >= 2:  # sizes the two-sample dry run covers (batch statistics need two)
        return
    with _no_trace(model, loss_fn, training=True):
        try:
            model(X[:size])
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"the last training batch would hold {size} sample(s) ({len(X)} samples in "
                f"batches of batch_size={batch_size}) and the model refuses it in training "
                f"mode: {exc}. Choose a batch_size that leaves a larger last batch, or drop the "
                f"last {size} sample(s) (X[:{len(X) - size}], as torch's DataLoader(drop_last="
                "True) would)"
            ) from exc


@contextmanager
def _explained(what: str) -> Iterator[None]:
    """Re-raise a ValueError, TypeError or IndexError of the block as ``"<what>: <error>"``
    (TypeError stays TypeError, the others become ValueError)."""
    try:
        yield
    except (ValueError, TypeError, IndexError) as exc:
        error = TypeError if isinstance(exc, TypeError) else ValueError
        raise error(f"{what}: {exc}") from exc


def _dry_output(model: Any, x: np.ndarray, name: str) -> np.ndarray:
    sample = x[: min(2, len(x))]
    with _explained(
        f"{name} does not fit the model: the forward of {name}[:{len(sample)}] (shape "
        f"{sample.shape}, dtype {sample.dtype}) failed"
    ):
        output = np.asarray(model(sample))
    return output


def _dry_loss(loss_fn: Any, output: np.ndarray, y: np.ndarray, name: str) -> None:
    target = y[: len(output)]
    with _explained(
        f"{name} does not match the model's output under {type(loss_fn).__name__} "
        f"(output shape {output.shape}, {name}[:{len(target)}] shape {target.shape})"
    ):
        loss_fn(output, target)


def _check_class_range(loss_fn: Any, y: np.ndarray, classes: int, name: str) -> None:
    """Every label in ``[0, classes)`` or equal to the loss's ``ignore_index``."""
    ignore_index = getattr(loss_fn, "ignore_index", None)
    bad = (y < 0) | (y >= classes)
    if ignore_index is not None:
        bad &= y != ignore_index
    if bad.any():
        where = np.argwhere(bad)[0]
        index = int(where[0]) if where.size == 1 else tuple(int(i) for i in where)
        allowed = f"0..{classes - 1}" + (
            "" if ignore_index is None else f" or ignore_index={ignore_index}"
        )
        raise ValueError(
            f"{name} holds class index {int(y[tuple(where)])} (at {name}[{index}]) but the model "
            f"outputs {classes} classes: {type(loss_fn).__name__} needs {allowed}"
        )


def _check_targets(loss_fn: Any, y: np.ndarray, output: np.ndarray, name: str) -> None:
    """Whole-array check of ``y`` against the dry output: the class range of class-index
    losses. (Shapes need no whole-array pass: every sample of ``y`` has the per-sample shape
    the dry loss call already accepted, which is how ``BCEWithLogitsLoss`` targets not shaped
    like the output are caught.)"""
    if takes_class_indices(loss_fn) and output.ndim >= 2:
        _check_class_range(loss_fn, y, output.shape[1], name)


def check_fit_data(
    model: Any,
    loss_fn: Any,
    train_data: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    augmented: bool,
    batch_size: int | None = None,
) -> None:
    """Raise before training when ``(X, y)`` or ``validation_data`` cannot go through the model
    and the loss; nothing is modified (see the module docstring).

    With ``augmented`` (``fit(augment=...)``) the training inputs the model sees are
    ``augment(xb)``, which may have another shape than ``X`` (a crop): a dry forward of the
    raw ``X`` that fails is then not an error, and ``y``'s class range is checked against the
    validation output instead (the augmenter itself is never called here: that would advance
    its random generator), and the batch-size check is skipped.
    """
    X, y = train_data
    with _no_trace(model, loss_fn):
        try:
            train_output: np.ndarray | None = _dry_output(model, X, "X")
        except (ValueError, TypeError):
            if not augmented:
                raise
            train_output = None
        if train_output is not None:
            _dry_loss(loss_fn, train_output, y, "y")
        val_output = None
        if validation is not None:
            X_val, y_val = validation
            val_output = _dry_output(model, X_val, "validation_data X")
            _dry_loss(loss_fn, val_output, y_val, "validation_data y")
    if train_output is not None and batch_size is not None:  # (augmented X may not fit)
        check_batch_sizes(model, loss_fn, X, batch_size)
    reference = train_output if train_output is not None else val_output
    if reference is not None:  # the class count does not depend on the input size
        _check_targets(loss_fn, y, reference, "y")
    if validation is not None and val_output is not None:
        _check_targets(loss_fn, validation[1], val_output, "validation_data y")

"""Input checks and batching shared by fit, evaluate and the workflow helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim._checks import check_int


def as_array(value: Any, name: str, dtype: np.dtype | None) -> np.ndarray:
    """``value`` as a numeric array with at least one axis (samples on axis 0).

    Floating data is converted to ``dtype`` (the model's); integer and bool data (class labels,
    token indices) keep their type.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{name} must have a sample axis, got a scalar")
    if array.dtype.kind == "f" and dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


def as_dataset(
    x: Any,
    y: Any,
    dtype: np.dtype | None,
    names: tuple[str, str] = ("X", "y"),
    cast_target: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(x, y)``: numeric, at least one sample, the same number of samples.

    ``cast_target=False`` keeps ``y``'s own dtype (class labels, whose dtype errors must name
    the caller's dtype rather than the model's)."""
    x = as_array(x, names[0], dtype)
    y = as_array(y, names[1], dtype if cast_target else None)
    if len(x) != len(y):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of samples, got "
            f"{len(x)} and {len(y)}"
        )
    if len(x) == 0:
        raise ValueError(f"{names[0]} is empty")
    return x, y


def batch_size_arg(value: Any, name: str = "batch_size") -> int:
    """A positive int (``TypeError`` for non-integers and bools, ``ValueError`` for <= 0)."""
    return check_int(name, value, low=1)


def validation_pair(
    validation_data: Any, dtype: np.dtype | None, cast_target: bool = True
) -> tuple[np.ndarray, np.ndarray] | None:
    """The checked ``(X_val, y_val)`` pair, or None (``cast_target`` as for :func:`as_dataset`)."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, y_val)")
    x_val, y_val = validation_data
    return as_dataset(x_val, y_val, dtype, ("validation_data X", "validation_data y"), cast_target)


def epochs_arg(epochs: Any) -> int:
    """An int >= 0 (``TypeError`` for non-integers and bools)."""
    return check_int("epochs", epochs, low=0)


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive index chunks of ``order`` of ``batch_size`` (the last may be smaller)."""
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def model_dtype(model: Any) -> np.dtype | None:
    dtype = getattr(model, "dtype", None)
    return None if dtype is None else np.dtype(dtype)


class MeanTracker:
    """Sample-weighted running means of named values (a batch mean weighted by batch size)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, values: dict[str, float], size: int) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * size
        self.count += size

    def means(self) -> dict[str, float]:
        if self.count == 0:
            return {name: float("nan") for name in self.sums}
        return {name: total / self.count for name, total in self.sums.items()}

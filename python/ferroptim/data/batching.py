"""Mini-batch iteration with a seeded per-epoch shuffle that can be saved and resumed exactly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ferroptim._checks import check_int, check_state_keys
from ferroptim.data._random import as_generator, generator_state, set_generator_state

Batch = tuple[np.ndarray, np.ndarray | None]
_STATE_KEYS = ("epoch", "batch", "rng")


def _as_samples(value: Any, name: str) -> np.ndarray:
    """``value`` as an array with a leading sample axis (not copied when already an array)."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array, got {type(value).__name__}")
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{name} must have a sample axis, got a scalar")
    return array


class BatchLoader:
    """Iterate over ``(X[idx], y[idx])`` mini-batches, one epoch per ``for`` loop.

    Each epoch draws a permutation ``idx = rng.permutation(n)`` from the loader's own generator
    (or uses ``arange(n)`` when ``shuffle=False``) and yields ``ceil(n / batch_size)`` batches
    (``floor`` with ``drop_last``); the last one may be smaller. ``batch_size=len(X)`` is full
    batch gradient descent, ``batch_size=1`` stochastic. Batches are copies: changing one never
    changes ``X``.

    Resuming: :meth:`state_dict` stores the completed epochs, the batches already yielded in the
    current epoch, and the generator state at the start of that epoch. A loader restored with
    :meth:`load_state_dict` redraws the same permutation and continues with the next batch, so
    an interrupted run sees exactly the batches an uninterrupted one would. For the same reason
    a ``for`` loop left early (``break``) is continued, not restarted, by the next loop.

    Parameters
    ----------
    x : array_like
        Inputs, samples on axis 0.
    y : array_like or None
        Targets with the same number of samples, or None (batches are then ``(xb, None)``).
    batch_size : int
        Samples per batch (positive; larger than ``len(x)`` gives one batch).
    shuffle : bool
        Draw a new permutation every epoch (default True).
    seed : None, int or numpy Generator
        Seed of the loader's generator (a Generator is used, and advanced, as is).
    drop_last : bool
        Skip the last, smaller batch (default False).

    Raises
    ------
    TypeError
        ``batch_size`` not an int, ``x``/``y`` not arrays, bad ``seed``.
    ValueError
        ``batch_size <= 0``, ``x`` empty, or ``x`` and ``y`` of different lengths.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        *,
        shuffle: bool = True,
        seed: Any = None,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.x = _as_samples(x, "X")
        self.y = None if y is None else _as_samples(y, "y")
        if len(self.x) == 0:
            raise ValueError("X must hold at least one sample")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(
                f"X and y must have the same number of samples, got {len(self.x)} and {len(self.y)}"
            )
        if not isinstance(shuffle, bool) or not isinstance(drop_last, bool):
            raise TypeError(f"shuffle and drop_last must be bools, got {shuffle!r}, {drop_last!r}")
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = as_generator(seed, owner=self)
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches of the current epoch already yielded
        self._order: np.ndarray | None = None
        self._epoch_start_state: dict[str, Any] | None = None

    @property
    def n_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.n_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def _start_epoch(self) -> np.ndarray:
        """The current epoch's order, drawn (and the generator state before it kept) if new."""
        if self._order is None:
            self._epoch_start_state = generator_state(self.rng)
            if self.shuffle:
                self._order = self.rng.permutation(self.n_samples)
            else:
                self._order = np.arange(self.n_samples)
        return self._order

    def __iter__(self) -> Iterator[Batch]:
        """Yield the remaining batches of the current epoch, then mark it completed."""
        order = self._start_epoch()
        for b in range(self.batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            self.batch = b + 1  # counted as consumed once handed out
            yield self.x[idx], None if self.y is None else self.y[idx]
        self.epoch += 1
        self.batch = 0
        self._order = None
        self._epoch_start_state = None

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batch", "rng"}`` as JSON-compatible ints and dicts (see the class doc)."""
        in_progress = self._order is not None and self._epoch_start_state is not None
        rng = self._epoch_start_state if in_progress else generator_state(self.rng)
        return {"epoch": self.epoch, "batch": self.batch, "rng": dict(rng or {})}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes).

        Raises
        ------
        KeyError
            A key is missing or unexpected.
        TypeError, ValueError
            Counters are not non-negative ints, ``batch`` exceeds the batches per epoch, or the
            generator state is malformed.
        """
        state = check_state_keys("BatchLoader", state, _STATE_KEYS)
        for key in ("epoch", "batch"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"BatchLoader state[{key!r}] must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"BatchLoader state[{key!r}] must be >= 0, got {value}")
        if state["batch"] > len(self):
            raise ValueError(
                f"BatchLoader state['batch'] = {state['batch']} exceeds the {len(self)} batches "
                "per epoch"
            )
        set_generator_state(self.rng, state["rng"], "BatchLoader rng")
        self.epoch = int(state["epoch"])
        self.batch = int(state["batch"])
        self._order = None
        self._epoch_start_state = None

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, epoch={self.epoch})"
        )


def iterate_minibatches(
    x: Any,
    y: Any = None,
    batch_size: int = 32,
    *,
    shuffle: bool = True,
    seed: Any = None,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """Yield one epoch of ``(xb, yb)`` mini-batches (see :class:`BatchLoader` for the arguments).

    Pass a numpy Generator as ``seed`` to get a different permutation every call (epoch); an int
    gives the same permutation every call. Arguments are checked when this is called, not at the
    first ``next``.
    """
    loader = BatchLoader(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    return iter(loader)

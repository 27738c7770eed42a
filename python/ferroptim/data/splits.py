"""Train/test splits and K-fold cross-validation with scikit-learn's semantics, optionally
stratified."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim._checks import check_flag, check_int
from ferroptim.data._random import as_generator
from ferroptim.data.batching import _as_samples

Fold = tuple[np.ndarray, np.ndarray]


def _encode_labels(y: Any, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, counts)``: class codes 0..K-1 (classes in order of first appearance, as
    scikit-learn's ``StratifiedKFold``) and members per class."""
    labels = _as_samples(y, "y")
    if labels.ndim != 1:
        raise ValueError(f"stratification labels y must be 1-D, got shape {labels.shape}")
    if len(labels) != n_samples:
        raise ValueError(
            f"X and y must have the same number of samples, got {n_samples} and {len(labels)}"
        )
    _, first_index, sorted_codes = np.unique(labels, return_index=True, return_inverse=True)
    codes = np.argsort(np.argsort(first_index))[sorted_codes.reshape(-1)]
    return codes, np.bincount(codes)


def _rank_within_class(codes: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Each sample's position among the members of its class: in sample order, or random."""
    keys = np.arange(len(codes)) if rng is None else rng.permutation(len(codes))
    order = np.lexsort((keys, codes))  # by class, then by key
    starts = np.concatenate(([0], np.cumsum(np.bincount(codes))[:-1]))
    ranks = np.empty(len(codes), dtype=np.intp)
    ranks[order] = np.arange(len(codes)) - starts[codes[order]]
    return ranks


def _test_size_count(test_size: Any, n_samples: int) -> int:
    """The number of test samples: ``ceil(test_size * n)`` for a fraction, else the int itself."""
    if isinstance(test_size, bool) or not isinstance(
        test_size, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1) as a fraction, got {test_size}")
        n_test = math.ceil(float(test_size) * n_samples)
    else:
        n_test = int(test_size)
    if not 1 <= n_test <= n_samples - 1:
        raise ValueError(
            f"test_size={test_size} gives {n_test} test samples of {n_samples}; both the train "
            "and the test set need at least one"
        )
    return n_test


def _stratified_test_counts(counts: np.ndarray, n_test: int) -> np.ndarray:
    """Test samples per class: ``n_test * counts / n`` rounded (largest remainder) so that the
    total is ``n_test`` and every class keeps at least one sample on each side."""
    n_classes = len(counts)
    if counts.min() < 2:
        raise ValueError(
            "stratify: the least populated class in y has only 1 member; every class needs at "
            "least 2 to appear in both the train and the test set"
        )
    n_train = int(counts.sum()) - n_test
    if n_test < n_classes or n_train < n_classes:
        raise ValueError(
            f"stratify: {n_test} test and {n_train} train samples cannot both hold each of the "
            f"{n_classes} classes"
        )
    ideal = n_test * counts / counts.sum()
    take = np.clip(np.floor(ideal).astype(np.intp), 1, counts - 1)
    # |n_test - take.sum()| < n_classes, so this loop runs at most once per class.
    while (gap := n_test - int(take.sum())) != 0:
        shortfall = ideal - take
        if gap > 0:
            shortfall[take >= counts - 1] = -np.inf
            take[np.argmax(shortfall)] += 1
        else:
            shortfall[take <= 1] = np.inf
            take[np.argmin(shortfall)] -= 1
    return take


def train_test_split(
    x: Any,
    y: Any = None,
    *,
    test_size: float | int = 0.2,
    stratify: Any = None,
    seed: Any = 0,
    shuffle: bool = True,
) -> tuple[np.ndarray, ...]:
    """Split ``x`` (and ``y``) into a train and a test part.

    ``n_test = ceil(test_size * n)`` for a fraction (an int is a count) and
    ``n_train = n - n_test``. With ``stratify`` (class labels, usually ``y``), every class ``k``
    with ``n_k`` members puts ``round(n_test * n_k / n)`` of them in the test set (largest
    remainder rounding, so the total is exact), and at least one in each part.

    Parameters
    ----------
    x, y : array_like
        Samples on axis 0; ``y`` may be None.
    test_size : float or int
        Test fraction in (0, 1), or test count (default 0.2).
    stratify : array_like or None
        Labels whose class proportions both parts keep.
    seed : None, int or numpy Generator
        Seed of the shuffle (default 0, so calls are reproducible).
    shuffle : bool
        Shuffle before splitting (default True). Without shuffling the test set is the last
        ``n_test`` samples (the last members of each class when stratified), in order.

    Returns
    -------
    tuple
        ``(x_train, x_test, y_train, y_test)``, or ``(x_train, x_test)`` when ``y`` is None.

    Raises
    ------
    ValueError
        Lengths differ, a part would be empty, or a class is too small to stratify.
    """
    samples = _as_samples(x, "X")
    n = len(samples)
    targets = None if y is None else _as_samples(y, "y")
    if targets is not None and len(targets) != n:
        raise ValueError(
            f"X and y must have the same number of samples, got {n} and {len(targets)}"
        )
    check_flag("shuffle", shuffle)
    n_test = _test_size_count(test_size, n)
    rng = as_generator(seed) if shuffle else None
    if stratify is None:
        order = rng.permutation(n) if rng is not None else np.roll(np.arange(n), n_test)
        test_idx, train_idx = order[:n_test], order[n_test:]  # unshuffled: the last n_test
    else:
        codes, counts = _encode_labels(stratify, n)
        take = _stratified_test_counts(counts, n_test)
        rank = _rank_within_class(codes, rng)
        # unshuffled: the last take[k] members of class k; shuffled: take[k] random ones
        is_test = rank >= (counts - take)[codes]
        test_idx, train_idx = np.flatnonzero(is_test), np.flatnonzero(~is_test)
        if rng is not None:
            test_idx, train_idx = rng.permutation(test_idx), rng.permutation(train_idx)
    parts = [samples[train_idx], samples[test_idx]]
    if targets is not None:
        parts += [targets[train_idx], targets[test_idx]]
    return tuple(parts)


class KFold:
    """K-fold cross-validation indices, as scikit-learn's ``KFold``.

    The ``n`` samples (shuffled first when ``shuffle``) are cut into ``n_splits`` consecutive
    folds; the first ``n % n_splits`` folds hold ``n // n_splits + 1`` samples, the others
    ``n // n_splits``. Each fold is the test set once; the train set is the rest.

    Parameters
    ----------
    n_splits : int
        Number of folds, at least 2 (default 5).
    shuffle : bool
        Shuffle the samples before cutting (default False).
    seed : None, int or numpy Generator
        Shuffle seed. An int gives the same folds on every ``split`` call; a Generator advances.
        Must be None without shuffling (as scikit-learn).
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = False, seed: Any = None) -> None:
        self.n_splits = check_int("n_splits", n_splits, low=2)
        check_flag("shuffle", shuffle)
        if not shuffle and seed is not None:
            raise ValueError("seed has no effect when shuffle=False; leave it None")
        as_generator(seed)  # checks the type now
        self.shuffle = shuffle
        self.seed = seed

    def get_n_splits(self) -> int:
        return self.n_splits

    def _generator(self) -> np.random.Generator | None:
        return as_generator(self.seed) if self.shuffle else None

    def _fold_of_samples(self, x: Any, y: Any) -> np.ndarray:
        """The test fold (0..n_splits-1) of every sample."""
        n = len(_as_samples(x, "X"))
        if self.n_splits > n:
            raise ValueError(f"n_splits={self.n_splits} is greater than the {n} samples")
        if y is not None and len(_as_samples(y, "y")) != n:
            raise ValueError(f"X and y must have the same number of samples, got {n} and {len(y)}")
        sizes = np.full(self.n_splits, n // self.n_splits)
        sizes[: n % self.n_splits] += 1
        rng = self._generator()
        order = rng.permutation(n) if rng is not None else np.arange(n)
        fold = np.empty(n, dtype=np.intp)
        fold[order] = np.repeat(np.arange(self.n_splits), sizes)
        return fold

    def split(self, x: Any, y: Any = None) -> Iterator[Fold]:
        """Yield ``(train_idx, test_idx)`` for every fold (sorted index arrays).

        Raises
        ------
        ValueError
            More folds than samples (or classes too small, for the stratified version).
        """
        fold = self._fold_of_samples(x, y)
        return (
            (np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(self.n_splits)
        )

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(n_splits={self.n_splits}, shuffle={self.shuffle}, seed={self.seed!r})"


class StratifiedKFold(KFold):
    """K-fold cross-validation that keeps class proportions, as scikit-learn's ``StratifiedKFold``.

    Samples sorted by class are dealt to folds in turn (position ``r`` of the sorted labels goes
    to fold ``r % n_splits``), which fixes how many members of each class every fold gets: those
    counts differ by at most 1 between folds, and so do the fold sizes. The members of a class
    then fill its folds in sample order, fold 0 first (in random order when ``shuffle``).

    ``split(x, y)`` requires labels ``y``; every class needs at least ``n_splits`` members.
    """

    def _fold_of_samples(self, x: Any, y: Any) -> np.ndarray:
        if y is None:
            raise TypeError("StratifiedKFold.split needs class labels y")
        codes, counts = _encode_labels(y, len(_as_samples(x, "X")))
        if counts.min() < self.n_splits:
            raise ValueError(
                f"n_splits={self.n_splits} is greater than the {counts.min()} members of the "
                "least populated class in y"
            )
        n_classes = len(counts)
        # per_fold[f, k]: members of class k in fold f, from dealing the sorted labels in turn
        sorted_codes = np.repeat(np.arange(n_classes), counts)
        dealt_fold = np.arange(len(codes)) % self.n_splits
        per_fold = np.zeros((self.n_splits, n_classes), dtype=np.intp)
        np.add.at(per_fold, (dealt_fold, sorted_codes), 1)
        fold_ends = np.cumsum(per_fold, axis=0)  # (n_splits, K): cumulative members per class
        rank = _rank_within_class(codes, self._generator())
        # a member of rank j lands in the first fold whose cumulative count exceeds j
        return (fold_ends[:, codes] <= rank).sum(axis=0)

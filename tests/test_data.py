"""ferroptim.data: Standardizer, BatchLoader / iterate_minibatches, train_test_split, K-fold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroptim.data import (
    BatchLoader,
    KFold,
    Standardizer,
    StratifiedKFold,
    iterate_minibatches,
    train_test_split,
)

sklearn_model_selection = pytest.importorskip("sklearn.model_selection")
sklearn_preprocessing = pytest.importorskip("sklearn.preprocessing")


def _features(n: int = 40, d: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(3.0, 2.0, size=(n, d)) * np.arange(1, d + 1)


def _labels(n: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Imbalanced labels in which every class has at least 5 members."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), 5)
    return rng.permutation(np.concatenate([y, rng.integers(0, n_classes, n - len(y))]))


# --- Standardizer -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardizer_train_mean_zero_std_one(dtype):
    x = _features()
    z = Standardizer(dtype=dtype).fit_transform(x)
    assert z.dtype == dtype and z.shape == x.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=tol)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=tol)


@pytest.mark.parametrize(("with_mean", "with_std"), [(True, True), (False, True), (True, False)])
def test_standardizer_matches_sklearn(with_mean, with_std):
    x_train, x_test = _features(seed=1), _features(n=7, seed=2)
    x_train[:, 2] = 4.25  # zero variance: scale 1, as sklearn
    ours = Standardizer(with_mean, with_std, dtype=np.float64).fit(x_train)
    theirs = sklearn_preprocessing.StandardScaler(with_mean=with_mean, with_std=with_std)
    theirs.fit(x_train)
    np.testing.assert_allclose(ours.transform(x_test), theirs.transform(x_test), rtol=1e-12)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-12)
    if with_std:
        np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-12)
    assert np.isfinite(ours.transform(x_test)).all()


def test_standardizer_uses_train_statistics_only():
    x_train, x_test = _features(seed=3), _features(seed=4) + 10.0
    scaler = Standardizer(dtype=np.float64).fit(x_train)
    expected = (x_test - x_train.mean(axis=0)) / x_train.std(axis=0)
    np.testing.assert_allclose(scaler.transform(x_test), expected, rtol=1e-12)
    assert abs(scaler.transform(x_test).mean()) > 1.0  # not re-centred on the test data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardizer_inverse_round_trip(dtype):
    x = _features(seed=5)
    scaler = Standardizer(dtype=dtype).fit(x)
    back = scaler.inverse_transform(scaler.transform(x))
    np.testing.assert_allclose(back, x, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_standardizer_per_channel_images():
    rng = np.random.default_rng(6)
    images = rng.normal(size=(10, 3, 4, 5)) * np.array([1.0, 5.0, 0.1])[:, None, None]
    images += np.array([0.0, -2.0, 7.0])[:, None, None]
    scaler = Standardizer(axis=(0, 2, 3), dtype=np.float64).fit(images)
    assert scaler.mean_.shape == (3,)
    np.testing.assert_allclose(scaler.mean_, images.mean(axis=(0, 2, 3)), rtol=1e-12)
    z = scaler.transform(images[:2, :, :3, :3])  # other batch and spatial sizes are fine
    assert z.shape == (2, 3, 3, 3)
    full = scaler.transform(images)
    np.testing.assert_allclose(full.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(full.std(axis=(0, 2, 3)), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="feature shape"):
        scaler.transform(images[:, :2])


def test_standardizer_state_dict_round_trip_and_json():
    x = _features(seed=7)
    scaler = Standardizer(dtype=np.float64).fit(x)
    state = scaler.state_dict()
    assert set(state) == {"mean", "var", "scale"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["mean"][0] = 1e9  # a copy: the scaler is unaffected
    assert scaler.mean_[0] != 1e9
    restored = Standardizer(dtype=np.float64)
    restored.load_state_dict({k: v.tolist() for k, v in scaler.state_dict().items()})
    np.testing.assert_array_equal(restored.transform(x), scaler.transform(x))


def test_standardizer_errors():
    scaler = Standardizer()
    with pytest.raises(RuntimeError, match="before fit"):
        scaler.transform(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="before fit"):
        scaler.inverse_transform(np.ones((2, 3)))
    with pytest.raises(TypeError, match="numeric"):
        scaler.fit(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="numeric array"):
        scaler.fit(None)
    with pytest.raises(ValueError, match="NaN"):
        scaler.fit(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="at least one sample"):
        scaler.fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        Standardizer(axis=(0, 2, 3)).fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="axis"):
        Standardizer(axis=1)
    with pytest.raises(TypeError, match="dtype"):
        Standardizer(dtype=np.int32)
    scaler.fit(_features(d=3))
    before = scaler.state_dict()
    with pytest.raises(ValueError, match="feature shape"):
        scaler.transform(np.ones((2, 4)))
    with pytest.raises(TypeError):
        scaler.fit(np.array([["x"] * 4]))  # a failed refit keeps the old statistics
    with pytest.raises(KeyError, match="missing"):
        scaler.load_state_dict({"mean": before["mean"]})
    with pytest.raises(ValueError, match="scale"):
        scaler.load_state_dict({**before, "scale": np.zeros(3)})
    with pytest.raises(ValueError, match="shapes"):
        scaler.load_state_dict({**before, "var": np.ones(4)})
    for key, value in scaler.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# --- batching -----------------------------------------------------------------------------------
def _collect(batches):
    return [(xb.copy(), None if yb is None else yb.copy()) for xb, yb in batches]


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last"), [(10, 3, False), (10, 3, True), (9, 3, False)]
)
def test_batches_cover_every_sample_once(n, batch_size, drop_last):
    x = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n)
    loader = BatchLoader(x, y, batch_size, seed=0, drop_last=drop_last)
    batches = _collect(loader)
    assert len(batches) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    seen = np.concatenate([yb for _, yb in batches])
    assert len(set(seen.tolist())) == len(seen)  # no repeats
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])  # pairs stay aligned
    assert all(len(yb) == batch_size for _, yb in batches[:-1])


def test_full_batch_and_stochastic():
    x = np.arange(12.0).reshape(6, 2)
    full = _collect(BatchLoader(x, None, 6, shuffle=False))
    assert len(full) == 1
    np.testing.assert_array_equal(full[0][0], x)
    assert full[0][1] is None
    single = _collect(BatchLoader(x, None, 1, seed=3))
    assert len(single) == 6 and all(xb.shape == (1, 2) for xb, _ in single)
    assert len(_collect(BatchLoader(x, None, 100))) == 1  # larger than the data: one batch


def test_shuffle_reproducible_and_new_each_epoch():
    x = np.arange(50)
    first = _collect(iterate_minibatches(x, x, 50, seed=1))[0][1]
    again = _collect(iterate_minibatches(x, x, 50, seed=1))[0][1]
    other = _collect(iterate_minibatches(x, x, 50, seed=2))[0][1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    loader = BatchLoader(x, x, 50, seed=1)
    epoch1, epoch2 = _collect(loader)[0][1], _collect(loader)[0][1]
    np.testing.assert_array_equal(epoch1, first)
    assert not np.array_equal(epoch1, epoch2) and loader.epoch == 2
    unshuffled = _collect(BatchLoader(x, x, 50, shuffle=False))[0][1]
    np.testing.assert_array_equal(unshuffled, x)
    gen = np.random.default_rng(9)  # a shared Generator advances between calls
    a = _collect(iterate_minibatches(x, None, 50, seed=gen))[0][0]
    b = _collect(iterate_minibatches(x, None, 50, seed=gen))[0][0]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("stop_after", [0, 1, 3, 4])
def test_resume_mid_epoch_is_exact(stop_after):
    x = np.arange(23)
    reference = BatchLoader(x, x, 5, seed=11)
    expected = [_collect(reference) for _ in range(3)]
    loader = BatchLoader(x, x, 5, seed=11)
    _collect(loader)  # epoch 0 done
    iterator = iter(loader)
    for _ in range(stop_after):
        next(iterator)
    state = json.loads(json.dumps(loader.state_dict()))  # JSON-compatible
    assert state["epoch"] == 1 and state["batch"] == stop_after
    resumed = BatchLoader(x, x, 5, seed=999)
    resumed.load_state_dict(state)
    rest = _collect(resumed)
    assert len(rest) == len(expected[1]) - stop_after
    for (_, got), (_, want) in zip(rest, expected[1][stop_after:], strict=True):
        np.testing.assert_array_equal(got, want)
    for (_, got), (_, want) in zip(_collect(resumed), expected[2], strict=True):
        np.testing.assert_array_equal(got, want)


def test_batch_loader_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        BatchLoader(x, np.zeros(3), 2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(x, None, 0)
    with pytest.raises(TypeError, match="batch_size"):
        BatchLoader(x, None, 2.0)
    with pytest.raises(TypeError, match="batch_size"):
        iterate_minibatches(x, None, True)
    with pytest.raises(ValueError, match="at least one sample"):
        BatchLoader(np.zeros((0, 2)), None, 2)
    with pytest.raises(TypeError, match="seed"):
        BatchLoader(x, None, 2, seed="abc")
    loader = BatchLoader(x, None, 2, seed=0)
    good = loader.state_dict()
    with pytest.raises(KeyError, match="missing"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="exceeds"):
        loader.load_state_dict({**good, "batch": 3})
    with pytest.raises(ValueError, match="bit generator"):
        loader.load_state_dict({**good, "epoch": 5, "rng": {"bit_generator": "MT19937"}})
    assert loader.epoch == 0 and loader.state_dict() == good  # nothing changed


# --- train_test_split ---------------------------------------------------------------------------
def test_split_sizes_match_sklearn_and_partition():
    x, y = _features(n=37), np.arange(37)
    for test_size in (0.2, 0.25, 0.5, 5):
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, seed=0)
        sk_tr, sk_te = sklearn_model_selection.train_test_split(y, test_size=test_size)
        assert (len(y_tr), len(y_te)) == (len(sk_tr), len(sk_te))
        assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(37))
        np.testing.assert_array_equal(x_tr, x[y_tr])
        np.testing.assert_array_equal(x_te, x[y_te])
    x_tr, x_te = train_test_split(x, test_size=0.25, shuffle=False)
    np.testing.assert_array_equal(x_tr, x[:27])
    np.testing.assert_array_equal(x_te, x[27:])


def test_split_seeded():
    y = np.arange(30)
    a = train_test_split(y, seed=4)[1]
    np.testing.assert_array_equal(a, train_test_split(y, seed=4)[1])
    assert not np.array_equal(a, train_test_split(y, seed=5)[1])


@given(
    n_classes=st.integers(2, 6),
    extra=st.integers(0, 60),
    test_size=st.floats(0.1, 0.6),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_stratified_split_keeps_proportions(n_classes, extra, test_size, seed):
    y = _labels(5 * n_classes + extra, n_classes, seed)
    n_test = int(np.ceil(test_size * len(y)))
    if not n_classes <= n_test <= len(y) - n_classes:
        return
    _, _, y_tr, y_te = train_test_split(y, y, test_size=test_size, stratify=y, seed=seed)
    counts = np.bincount(y, minlength=n_classes)
    test_counts = np.bincount(y_te, minlength=n_classes)
    assert len(y_te) == n_test
    np.testing.assert_array_equal(test_counts + np.bincount(y_tr, minlength=n_classes), counts)
    assert (test_counts >= 1).all() and (test_counts <= counts - 1).all()  # in both parts
    ideal = n_test * counts / len(y)
    assert (np.abs(test_counts - ideal) < 1.0 + 1e-9).all()


def test_stratified_split_unshuffled_and_string_labels():
    y = np.array(["b", "a", "b", "a", "b", "a", "b", "b"])  # b: 0 2 4 6 7, a: 1 3 5
    _, idx_te, _, y_te = train_test_split(np.arange(8), y, stratify=y, test_size=0.5, shuffle=False)
    # ideal test counts b 2.5, a 1.5: the tie goes to the class seen first (b); the last members
    # of each class are taken, in sample order
    np.testing.assert_array_equal(idx_te, [4, 5, 6, 7])
    np.testing.assert_array_equal(y_te, y[[4, 5, 6, 7]])


def test_split_errors():
    x = np.arange(10)
    with pytest.raises(ValueError, match="same number of samples"):
        train_test_split(x, np.arange(9))
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(x, test_size=1.5)
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(x, test_size=10)
    with pytest.raises(TypeError, match="test_size"):
        train_test_split(x, test_size="0.2")
    with pytest.raises(ValueError, match="only 1 member"):
        train_test_split(x, stratify=np.array([0] * 9 + [1]))
    with pytest.raises(ValueError, match="classes"):
        train_test_split(x, stratify=np.arange(10) % 3, test_size=2)
    with pytest.raises(ValueError, match="1-D"):
        train_test_split(x, stratify=np.zeros((10, 2)))


# --- K-fold -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k"), [(10, 2), (11, 3), (23, 5), (7, 7)])
def test_kfold_matches_sklearn(n, k):
    x = np.zeros((n, 2))
    ours = list(KFold(k).split(x))
    theirs = list(sklearn_model_selection.KFold(k).split(x))
    assert len(ours) == k
    for (tr, te), (sk_tr, sk_te) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(tr, sk_tr)
        np.testing.assert_array_equal(te, sk_te)


def _assert_partition(folds, n):
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(n))  # every sample is tested exactly once
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == n


def test_kfold_shuffled_partition_and_seed():
    x = np.zeros(29)
    folds = list(KFold(4, shuffle=True, seed=0).split(x))
    _assert_partition(folds, 29)
    assert sorted(len(te) for _, te in folds) == [7, 7, 7, 8]
    again = list(KFold(4, shuffle=True, seed=0).split(x))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = list(KFold(4, shuffle=True, seed=1).split(x))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))
    assert not np.array_equal(folds[0][1], np.arange(8))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_stratified_kfold_matches_sklearn_unshuffled(k):
    y = _labels(53, 4, seed=k)
    y[[0, 1, 2, 3, 4]] = 7  # a class seen first, encoded by first appearance as sklearn
    x = np.zeros((53, 1))
    ours = list(StratifiedKFold(k).split(x, y))
    theirs = list(sklearn_model_selection.StratifiedKFold(k).split(x, y))
    for (tr, te), (sk_tr, sk_te) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(tr, sk_tr)
        np.testing.assert_array_equal(te, sk_te)


@given(
    n_classes=st.integers(2, 5),
    extra=st.integers(0, 40),
    k=st.integers(2, 5),
    seed=st.integers(0, 999),
)
@settings(max_examples=40, deadline=None)
def test_stratified_kfold_balance(n_classes, extra, k, seed):
    y = _labels(5 * n_classes + extra, n_classes, seed)
    folds = list(StratifiedKFold(k, shuffle=True, seed=seed).split(y, y))
    _assert_partition(folds, len(y))
    per_fold = np.array([np.bincount(y[te], minlength=n_classes) for _, te in folds])
    assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all()
    sizes = [len(te) for _, te in folds]
    sk_sizes = [len(te) for _, te in sklearn_model_selection.StratifiedKFold(k).split(y, y)]
    assert sizes == sk_sizes


def test_kfold_errors():
    with pytest.raises(ValueError, match="n_splits"):
        KFold(1)
    with pytest.raises(TypeError, match="n_splits"):
        KFold(2.5)
    with pytest.raises(ValueError, match="seed"):
        KFold(3, seed=0)
    with pytest.raises(ValueError, match="n_splits"):
        list(KFold(5).split(np.zeros(4)))
    with pytest.raises(ValueError, match="least populated class"):
        list(StratifiedKFold(3).split(np.zeros(7), np.array([0] * 5 + [1] * 2)))
    with pytest.raises(TypeError, match="labels y"):
        list(StratifiedKFold(2).split(np.zeros(4)))
    with pytest.raises(ValueError, match="same number of samples"):
        list(StratifiedKFold(2).split(np.zeros(4), np.array([0, 1, 0, 1, 0])))

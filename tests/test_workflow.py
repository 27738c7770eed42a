"""Workflow helpers: cross-validation, the small-subset overfit check, greedy layer-wise
pretraining, freezing by prefix and loading torch-exported weights."""

from __future__ import annotations

import pathlib
from collections import OrderedDict

import numpy as np
import pytest

from ferroptim import train
from ferroptim.data.splits import KFold, StratifiedKFold
from ferroptim.nn.activation import ReLU, Sigmoid
from ferroptim.nn.container import Sequential
from ferroptim.nn.conv import Conv2d
from ferroptim.nn.linear import Linear
from ferroptim.nn.loss import CrossEntropyLoss, MSELoss
from ferroptim.nn.normalization import BatchNorm1d
from ferroptim.nn.shape import Flatten
from ferroptim.optim import SGD, Adam

FIXTURE = pathlib.Path(__file__).parent / "data" / "golden_train_transfer.npz"


def blobs(n=90, classes=3, features=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 4.0, size=(classes, features))
    y = np.arange(n) % classes
    return (centers[y] + rng.normal(0.0, 0.6, size=(n, features))).astype(np.float32), y


def build_classifier(seed=0, lr=0.05):
    def build():
        rng = np.random.default_rng(seed)
        model = Sequential(Linear(4, 16, rng=rng), ReLU(), Linear(16, 3, rng=rng))
        return model, CrossEntropyLoss(), Adam(model.parameters(), lr=lr)

    return build


# --- cross-validation -------------------------------------------------------------------------
def test_cross_validate_scores_every_fold_on_its_held_out_part():
    X, y = blobs()
    calls = []

    def build():
        calls.append(1)
        return build_classifier()()

    scores = train.cross_validate(build, X, y, k=3, epochs=5, batch_size=16, progress=False)
    assert len(calls) == 3
    assert set(scores) == {"loss", "accuracy", "val_loss", "val_accuracy", "epochs"}
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in scores.values())
    assert np.all(scores["val_accuracy"] >= 0.9)
    np.testing.assert_array_equal(scores["epochs"], [5, 5, 5])
    # fold 1 by hand: the same stratified split, a fresh model, fit seed 0 + 1
    train_idx, test_idx = list(StratifiedKFold(3, shuffle=True, seed=0).split(X, y))[1]
    model, loss_fn, opt = build_classifier()()
    train.fit(
        model,
        loss_fn,
        opt,
        X[train_idx],
        y[train_idx],
        epochs=5,
        batch_size=16,
        progress=False,
        seed=1,
    )
    held_out = train.evaluate(model, loss_fn, X[test_idx], y[test_idx])
    assert scores["val_loss"][1] == pytest.approx(held_out["loss"], rel=1e-6)
    assert scores["val_accuracy"][1] == held_out["accuracy"]


def test_cross_validate_regression_and_early_stopping():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [-1.0], [0.5]])

    def build():
        model = Linear(3, 1, dtype=np.float64, rng=0)
        return model, MSELoss(), SGD(model.parameters(), lr=0.05)

    with pytest.raises(ValueError, match="stratified=True needs 1-D integer class labels"):
        train.cross_validate(build, X, y, k=4, epochs=2, progress=False)
    scores = train.cross_validate(
        build,
        X,
        y,
        k=4,
        stratified=False,
        epochs=300,
        batch_size=8,
        callbacks=[train.EarlyStopping(patience=2, min_delta=1e-6)],
        progress=False,
    )
    assert set(scores) == {"loss", "val_loss", "epochs"}
    assert np.all(scores["epochs"] < 300)
    assert np.all(scores["val_loss"] < 1e-3)
    folds = [test for _, test in KFold(4, shuffle=True, seed=0).split(X)]
    assert sorted(np.concatenate(folds).tolist()) == list(range(40))


def test_cross_validate_errors():
    X, y = blobs(30)
    with pytest.raises(TypeError, match=r"build_model\(\) must return"):
        train.cross_validate(lambda: Linear(4, 3), X, y, k=3, progress=False)
    with pytest.raises(ValueError, match="validation_data is the held-out fold"):
        train.cross_validate(build_classifier(), X, y, validation_data=(X, y))
    with pytest.raises(ValueError, match="same number of samples"):
        train.cross_validate(build_classifier(), X, y[:-1])


# --- overfit a small subset first -------------------------------------------------------------
def test_overfit_check_passes_for_a_working_model_and_restores_it():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=200)  # random labels: only memorization fits them
    loss_fn = CrossEntropyLoss()
    model = Sequential(Linear(4, 64, rng=0), ReLU(), Linear(64, 3, rng=1))
    opt = Adam(model.parameters(), lr=0.02)
    before = model.state_dict()
    report = train.overfit_check(model, loss_fn, opt, X, y, n_samples=32, steps=150)
    assert report.passed and report.accuracy == 1.0
    assert report.final_loss < 0.1 * report.initial_loss
    assert report.n_samples == 32 and report.steps == 150 and len(report.losses) == 150
    assert "passed" in str(report)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert opt.state == {}  # the optimizer state was put back too


def test_overfit_check_fails_for_a_model_that_cannot_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    model = Sequential(Linear(4, 64, rng=0), ReLU(), Linear(64, 3, rng=1))
    model.freeze()  # a bug of the kind the check is for: nothing is trained
    report = train.overfit_check(
        model, CrossEntropyLoss(), Adam(model.parameters()), X, y, steps=20, restore=False
    )
    assert not report.passed and report.accuracy < 1.0
    assert report.final_loss == pytest.approx(report.initial_loss)
    assert "FAILED" in str(report)


def test_overfit_check_regression_uses_the_loss_ratio():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 40))
    y = rng.normal(size=(32, 1))
    wide = Linear(40, 1, dtype=np.float64, rng=0)  # more features than samples: can interpolate
    report = train.overfit_check(
        wide, MSELoss(), SGD(wide.parameters(), lr=0.02), X, y, steps=300, restore=False
    )
    assert report.accuracy is None and report.passed
    narrow = Linear(2, 1, dtype=np.float64, rng=0)
    report = train.overfit_check(
        narrow, MSELoss(), SGD(narrow.parameters(), lr=0.02), X[:, :2], y, steps=300
    )
    assert not report.passed


# --- greedy layer-wise pretraining ------------------------------------------------------------
def test_pretrain_layerwise_trains_each_hidden_layer_as_an_autoencoder():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(128, 3))
    X = np.tanh(codes @ rng.normal(size=(3, 8))).astype(np.float32)  # 8-D data, 3-D structure
    net = Sequential(
        Linear(8, 6, rng=0), Sigmoid(), Linear(6, 4, rng=1), Sigmoid(), Linear(4, 3, rng=2)
    )
    before = net.state_dict()
    decoders = []

    def make_decoder(layer):
        decoders.append(Linear(layer.out_features, layer.in_features, rng=3))
        return decoders[-1]

    histories = train.pretrain_layerwise(
        net,
        X,
        epochs=40,
        batch_size=32,
        make_decoder=make_decoder,
        make_optimizer=lambda params: Adam(params, lr=0.01),
    )
    assert len(histories) == 2
    assert [d.weight.shape for d in decoders] == [
        (8, 6),
        (6, 4),
    ]  # each decoder maps back to its block's input
    for history in histories:
        losses = history.history["loss"]
        assert len(losses) == 40 and losses[-1] < 0.5 * losses[0]
    after = net.state_dict()
    for key in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert not np.array_equal(after[key], before[key])
    for key in ("4.weight", "4.bias"):  # the output layer is left to fine-tuning
        np.testing.assert_array_equal(after[key], before[key])
    # the kept decoder 2 reconstructs block 2's input, block 1's output (not X)
    hidden = train.predict(net[:2], X)
    autoencoder = Sequential(net[2], net[3], decoders[1])
    recon = train.evaluate(autoencoder, MSELoss(), hidden, hidden)["loss"]
    assert recon == pytest.approx(histories[1].history["loss"][-1], rel=0.1)


def test_pretrain_layerwise_defaults_and_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    net = Sequential(Linear(5, 3, dtype=np.float64, rng=0), Sigmoid(np.float64))
    histories = train.pretrain_layerwise(net, X, epochs=30, batch_size=16, pretrain_last=True)
    losses = histories[0].history["loss"]
    assert losses[-1] < losses[0]
    with pytest.raises(
        ValueError, match=r"the only Linear layer, 0, is the last one.*pretrain_last"
    ):
        train.pretrain_layerwise(net, X, epochs=1)
    with pytest.raises(ValueError, match="no Linear"):
        train.pretrain_layerwise([ReLU()], X)
    with pytest.raises(TypeError, match="layers must be Modules"):
        train.pretrain_layerwise([Linear(5, 3), "relu"], X)


def test_pretrain_layerwise_expands_nested_sequentials():
    """[Sequential(Linear, ReLU), Sequential(Linear, ReLU), Linear] has three Linear blocks
    (it used to be read as one weight layer) and trains exactly as the flat stack."""
    X = np.random.default_rng(0).normal(size=(96, 64)).astype(np.float32)

    def layers(flat):
        mods = [Linear(64, 32, rng=0), ReLU(), Linear(32, 16, rng=1), ReLU(), Linear(16, 10, rng=2)]
        return mods if flat else [Sequential(*mods[:2]), Sequential(*mods[2:4]), mods[4]]

    nested, flat = layers(False), layers(True)
    before = [m.state_dict() for m in (nested[0][0], nested[1][0], nested[2])]
    kwargs = dict(epochs=3, batch_size=32, make_optimizer=lambda p: Adam(p, lr=0.01))
    histories = train.pretrain_layerwise(nested, X, **kwargs)
    flat_histories = train.pretrain_layerwise(flat, X, **kwargs)
    assert len(histories) == len(flat_histories) == 2
    for a, b in zip(histories, flat_histories, strict=True):
        assert a.history["loss"] == b.history["loss"]
    pairs = [(nested[0][0], flat[0]), (nested[1][0], flat[2]), (nested[2], flat[4])]
    for mine, theirs in pairs:
        for key, value in mine.state_dict().items():
            np.testing.assert_array_equal(value, theirs.state_dict()[key])
    assert not np.array_equal(nested[0][0].weight, before[0]["weight"])
    assert not np.array_equal(nested[1][0].weight, before[1]["weight"])
    np.testing.assert_array_equal(nested[2].weight, before[2]["weight"])  # output layer kept
    # a Sequential of Sequentials is expanded the same way; names follow named_modules
    segments = train.pretrain.split_segments(Sequential(*layers(False)))
    assert [s.names for s in segments] == [["0.0", "0.1"], ["1.0", "1.1"], ["2"]]


def test_pretrain_layerwise_reports_conv_layers_as_not_pretrained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 6, 6)).astype(np.float32)
    net = Sequential(
        Conv2d(1, 2, 3, rng=0), ReLU(), Flatten(), Linear(32, 8, rng=1), ReLU(), Linear(8, 3)
    )
    before = net.state_dict()
    decoders = []

    def make_decoder(layer):
        decoders.append(Linear(layer.out_features, layer.in_features, rng=3))
        return decoders[-1]

    with pytest.warns(UserWarning, match=r"only Linear layers are pretrained; 0 \(Conv2d\)"):
        histories = train.pretrain_layerwise(
            net, X, epochs=2, batch_size=20, make_decoder=make_decoder
        )
    assert len(histories) == 1 and decoders[0].weight.shape == (32, 8)  # rebuilds conv output
    after = net.state_dict()
    for key in ("0.weight", "0.bias", "5.weight", "5.bias"):
        np.testing.assert_array_equal(after[key], before[key])
    assert not np.array_equal(after["3.weight"], before["3.weight"])
    # the block was trained on the conv features: its autoencoder's loss is that of fit's end
    hidden = train.predict(net[:3], X)
    recon = train.evaluate(Sequential(net[3], net[4], decoders[0]), MSELoss(), hidden, hidden)
    assert recon["loss"] < histories[0].history["loss"][0]


def test_pretrain_layerwise_nothing_to_pretrain_says_why():
    X = np.zeros((4, 1, 6, 6), np.float32)
    conv = [Conv2d(1, 2, 3, rng=0), Flatten()]
    with pytest.raises(ValueError, match=r"no Linear layer .*layers\[0\] \(Conv2d\)"):
        train.pretrain_layerwise(conv, X)
    with pytest.raises(
        ValueError,
        match=r"the only Linear layer, layers\[2\], is the last one .*pretrain_last=True to "
        r"pretrain it; not pretrained \(not Linear\): layers\[0\] \(Conv2d\)",
    ):
        train.pretrain_layerwise([*conv, Linear(32, 3)], X)


# --- transfer learning ------------------------------------------------------------------------
def head_model():
    return Sequential(OrderedDict(fc=Linear(4, 8, rng=0), act=ReLU(), fc2=Linear(8, 3, rng=1)))


def test_freeze_by_prefix_and_fine_tune_the_head():
    model = head_model()
    assert train.freeze_layers(model, "fc") == ["fc.weight", "fc.bias"]  # not fc2
    assert train.trainable_names(model) == ["fc2.weight", "fc2.bias"]
    assert train.unfreeze_layers(model) == ["fc.weight", "fc.bias", "fc2.weight", "fc2.bias"]
    assert train.freeze_all_except(model, "fc2") == ["fc.weight", "fc.bias"]
    assert [g is None for g in model.gradients()] == [True, True, False, False]
    X, y = blobs(30)
    body = model.state_dict()
    train.fit(
        model, CrossEntropyLoss(), Adam(model.parameters(), lr=0.05), X, y, epochs=2, progress=False
    )
    np.testing.assert_array_equal(model.fc.weight, body["fc.weight"])
    assert not np.array_equal(model.fc2.weight, body["fc2.weight"])
    with pytest.raises(KeyError, match="no parameter under prefix 'fc3'"):
        train.freeze_layers(model, "fc3")
    assert train.trainable_names(model) == ["fc2.weight", "fc2.bias"]  # unchanged by the error
    with pytest.raises(ValueError, match="at least one prefix"):
        train.freeze_all_except(model)


def torch_like_model():
    return Sequential(
        Linear(4, 8, dtype=np.float64, rng=5),
        BatchNorm1d(8, dtype=np.float64),
        ReLU(np.float64),
        Linear(8, 3, dtype=np.float64, rng=6),
    )


def test_load_torch_exported_state_dict_reproduces_torch_outputs():
    with np.load(FIXTURE, allow_pickle=False) as golden:
        x, y = golden["x"], golden["y"]
    model = torch_like_model()
    report = train.load_npz_state_dict(model, FIXTURE, prefix="state/")
    assert report.loaded == list(model.state_dict())
    assert report.missing == report.unexpected == report.mismatched == []
    np.testing.assert_allclose(train.predict(model, x), y, rtol=1e-12, atol=1e-12)


def test_load_npz_non_strict_reports_and_skips(tmp_path):
    with np.load(FIXTURE, allow_pickle=False) as golden:
        state = {k[len("state/") :]: golden[k] for k in golden.files if k.startswith("state/")}
    # a new head with 5 classes, and an extra key the model does not know
    path = tmp_path / "export.npz"
    np.savez(path, **state, **{"9.weight": np.zeros((2, 2))})
    model = Sequential(
        Linear(4, 8, dtype=np.float64, rng=5),
        BatchNorm1d(8, dtype=np.float64),
        ReLU(np.float64),
        Linear(8, 5, dtype=np.float64, rng=6),
        Linear(5, 2, dtype=np.float64, rng=7),
    )
    before = model.state_dict()
    with pytest.raises(KeyError, match=r"missing key '4\.weight'"):
        train.load_npz_state_dict(model, path)
    with pytest.raises(ValueError, match=r"'3.weight' has shape \(3, 8\), the model expects"):
        train.load_npz_state_dict(model, path, strict=False)
    for key, value in model.state_dict().items():  # nothing written by the failed calls
        np.testing.assert_array_equal(value, before[key])
    report = train.load_npz_state_dict(model, path, strict=False, skip_mismatched=True)
    # every key of the Linear and the BatchNorm1d (names checked in test_nn_layers), in order
    assert report.loaded == [key for key in before if key.startswith(("0.", "1."))]
    assert len(report.loaded) == 7
    assert report.missing == ["4.weight", "4.bias"]
    assert report.unexpected == ["9.weight"]
    assert [(k, a, b) for k, a, b in report.mismatched] == [
        ("3.weight", (3, 8), (5, 8)),
        ("3.bias", (3,), (5,)),
    ]
    np.testing.assert_array_equal(model[0].weight, state["0.weight"])
    np.testing.assert_array_equal(model[3].weight, before["3.weight"])
    assert "shape mismatch (skipped)" in str(report)
    with pytest.raises(ValueError, match="skip_mismatched=True needs strict=False"):
        train.load_npz_state_dict(model, path, skip_mismatched=True)

"""fo.train.fit: learning, batching modes, accumulation, L1/L2, clipping, frozen parameters,
modes, schedulers, augmentation, metrics, evaluation, and argument errors."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from ferroptim import train
from ferroptim.nn.activation import ReLU
from ferroptim.nn.container import Sequential
from ferroptim.nn.dropout import Dropout
from ferroptim.nn.linear import Linear
from ferroptim.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ferroptim.nn.module import Module
from ferroptim.nn.normalization import BatchNorm1d
from ferroptim.optim import SGD, Adam
from ferroptim.train._preflight import check_fit_data
from ferroptim.train.regularization import penalty, regularized_parameters
from fitting import quiet_fit


def blobs(n: int = 120, classes: int = 3, features: int = 4, seed: int = 0):
    """Well separated Gaussian blobs: (X float32, y int64)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 4.0, size=(classes, features))
    y = np.arange(n) % classes
    X = centers[y] + rng.normal(0.0, 0.5, size=(n, features))
    return X.astype(np.float32), y.astype(np.int64)


def mlp(features: int = 4, hidden: int = 16, out: int = 3, dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    return Sequential(
        Linear(features, hidden, dtype=dtype, rng=rng),
        ReLU(dtype),
        Linear(hidden, out, dtype=dtype, rng=rng),
    )


def regression(n: int = 64, features: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    y = X @ rng.normal(size=(features, 2)) + 0.1 * rng.normal(size=(n, 2))
    return X, y


def weights(model: Module) -> dict[str, np.ndarray]:
    return model.state_dict()


def assert_same_state(a: dict, b: dict, **tol) -> None:
    assert list(a) == list(b)
    for key in a:
        if tol:
            np.testing.assert_allclose(a[key], b[key], err_msg=key, **tol)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class StepCounter(train.Callback):
    def __init__(self) -> None:
        self.batches: list[tuple[int, float, int]] = []
        self.epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((self.epoch, logs["loss"], logs["size"]))


# --- learning ---------------------------------------------------------------------------------
def test_fit_reaches_high_accuracy_and_records_history():
    X, y = blobs()
    Xv, yv = blobs(60, seed=0)
    model = mlp()
    opt = Adam(model.parameters(), lr=0.02)
    history = quiet_fit(
        model, opt, X, y, epochs=15, batch_size=16, validation_data=(Xv, yv), seed=0
    )
    assert list(history.history) == [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "time",
    ]
    assert history.epoch == list(range(15))
    assert all(len(v) == 15 for v in history.history.values())
    assert history.history["val_accuracy"][-1] >= 0.95
    assert history.history["accuracy"][-1] >= 0.95
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert history.history["lr"] == [0.02] * 15
    assert all(t > 0 for t in history.history["time"])
    assert history.params == {"epochs": 15, "steps": 8}
    # the logged validation numbers are those of evaluate() on the final weights
    final = train.evaluate(model, CrossEntropyLoss(), Xv, yv)
    assert final["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert final["accuracy"] == history.history["val_accuracy"][-1]


def test_fit_is_reproducible_with_a_seed():
    X, y = blobs(48)
    states = []
    for _ in range(2):
        model = mlp()
        quiet_fit(model, SGD(model.parameters(), lr=0.05), X, y, epochs=2, batch_size=8, seed=3)
        states.append(weights(model))
    assert_same_state(*states)


def test_full_batch_equals_manual_gradient_descent():
    X, y = regression()
    model = Linear(3, 2, dtype=np.float64, rng=0)
    manual = {k: v.copy() for k, v in weights(model).items()}
    history = quiet_fit(
        model, SGD(model.parameters(), lr=0.1), X, y, epochs=3, batch_size=len(X), loss=MSELoss()
    )
    W, b = manual["weight"], manual["bias"]
    losses = []
    for _ in range(3):
        err = X @ W.T + b - y
        losses.append(np.mean(err**2))
        dout = 2 * err / err.size
        W, b = W - 0.1 * dout.T @ X, b - 0.1 * dout.sum(axis=0)
    np.testing.assert_allclose(model.weight, W, rtol=1e-12)
    np.testing.assert_allclose(model.bias, b, rtol=1e-12)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-12)
    assert history.params["steps"] == 1


def test_stochastic_mode_steps_once_per_sample_in_seeded_order():
    X, y = regression(n=10)
    model = Linear(3, 2, dtype=np.float64, rng=0)
    W, b = model.weight.copy(), model.bias.copy()
    counter = StepCounter()
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.05),
        X,
        y,
        epochs=2,
        batch_size=1,
        callbacks=[counter],
        seed=7,
        loss=MSELoss(),
    )
    assert len(counter.batches) == 20
    assert all(size == 1 for _, _, size in counter.batches)
    rng = np.random.default_rng(7)
    for _ in range(2):
        for i in rng.permutation(len(X)):
            err = X[i] @ W.T + b - y[i]
            dout = 2 * err / err.size
            W, b = W - 0.05 * np.outer(dout, X[i]), b - 0.05 * dout
    np.testing.assert_allclose(model.weight, W, rtol=1e-12)
    np.testing.assert_allclose(model.bias, b, rtol=1e-12)


def test_shuffle_false_visits_samples_in_order():
    X, y = regression(n=10)
    seen = []
    model = Linear(3, 2, dtype=np.float64, rng=0)
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.0),
        X,
        y,
        epochs=1,
        batch_size=4,
        shuffle=False,
        augment=lambda xb: seen.append(xb.copy()) or xb,
        loss=MSELoss(),
    )
    assert [len(b) for b in seen] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(seen), X)


# --- gradient accumulation -------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
def test_accumulation_equals_one_big_batch(shuffle):
    X, y = blobs(128)
    X = X.astype(np.float64)
    states = []
    for batch_size, steps in ((64, 1), (16, 4)):
        model = mlp(dtype=np.float64)
        counter = StepCounter()
        history = quiet_fit(
            model,
            Adam(model.parameters(), lr=0.01),
            X,
            y,
            epochs=3,
            batch_size=batch_size,
            accumulate_steps=steps,
            shuffle=shuffle,
            callbacks=[counter],
            seed=5,
        )
        assert len(counter.batches) == 6  # 2 optimizer steps per epoch either way
        assert history.params["steps"] == 2
        states.append((weights(model), history.history["loss"]))
    assert_same_state(states[0][0], states[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(states[0][1], states[1][1], rtol=1e-10)


def test_accumulation_last_partial_group_averages_its_micro_batches():
    # 3 micro-batches with k=2: the second step averages one micro-batch (scale 1, not 1/2)
    X, y = regression(n=12)
    a = Linear(3, 2, dtype=np.float64, rng=0)
    b = Linear(3, 2, dtype=np.float64, rng=0)
    common = dict(epochs=1, shuffle=False, progress=False)
    train.fit(
        a, MSELoss(), SGD(a.parameters(), lr=0.1), X, y, batch_size=4, **common, accumulate_steps=2
    )
    train.fit(b, MSELoss(), SGD(b.parameters(), lr=0.1), X[:8], y[:8], batch_size=8, **common)
    train.fit(b, MSELoss(), SGD(b.parameters(), lr=0.1), X[8:], y[8:], batch_size=4, **common)
    assert_same_state(weights(a), weights(b), rtol=1e-12)


# --- L1 / L2 -----------------------------------------------------------------------------------
def test_l1_l2_gradient_terms_are_analytic():
    X, y = regression()
    l1, l2, lr = 0.03, 0.2, 0.5
    base = Linear(3, 2, dtype=np.float64, rng=0)
    base.weight[0, 0] = 0.0  # sign(0) = 0
    reg = Linear(3, 2, dtype=np.float64, rng=0)
    reg.load_state_dict(base.state_dict())
    w0 = base.weight.copy()
    common = dict(epochs=1, batch_size=len(X), progress=False, seed=0)
    h0 = train.fit(base, MSELoss(), SGD(base.parameters(), lr=lr), X, y, **common)
    h1 = train.fit(reg, MSELoss(), SGD(reg.parameters(), lr=lr), X, y, l1=l1, l2=l2, **common)
    expected_step = lr * (l1 * np.sign(w0) + 2 * l2 * w0)
    np.testing.assert_allclose(base.weight - reg.weight, expected_step, rtol=1e-12, atol=1e-15)
    assert reg.weight[0, 0] == base.weight[0, 0] - lr * 2 * l2 * 0.0
    np.testing.assert_array_equal(base.bias, reg.bias)  # biases are not penalized
    extra = l1 * np.abs(w0).sum() + l2 * (w0**2).sum()
    assert h1.history["loss"][0] - h0.history["loss"][0] == pytest.approx(extra, rel=1e-12)


def test_penalty_excludes_biases_and_frozen_weights():
    model = mlp(dtype=np.float64)
    names = [name for name, _, _ in regularized_parameters(model)]
    assert names == ["0.weight", "2.weight"]
    w0, w2 = model[0].weight, model[2].weight
    assert penalty(model, l1=0.5) == pytest.approx(0.5 * (np.abs(w0).sum() + np.abs(w2).sum()))
    model.freeze("2.weight")
    assert penalty(model, l2=2.0) == pytest.approx(2.0 * (w0**2).sum())
    before = model[2].grad("weight").copy()
    train.add_penalty_gradients(model, l1=0.1, l2=0.1)
    np.testing.assert_array_equal(model[2].grad("weight"), before)
    np.testing.assert_allclose(model[0].grad("weight"), 0.1 * np.sign(w0) + 0.2 * w0)
    assert penalty(model) == 0.0


# --- clipping, frozen parameters, optimizer subsets -------------------------------------------
def test_max_grad_norm_goes_through_the_optimizer():
    X, y = blobs(32)
    seen = []

    class Probe(train.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((self.state.optimizer.max_grad_norm, self.state.optimizer.last_grad_norm))

    a, b = mlp(), mlp()
    opt_a = SGD(a.parameters(), lr=0.5)
    quiet_fit(
        a, opt_a, X, y, epochs=2, batch_size=8, max_grad_norm=0.1, callbacks=[Probe()], seed=0
    )
    opt_b = SGD(b.parameters(), lr=0.5, max_grad_norm=0.1)
    quiet_fit(b, opt_b, X, y, epochs=2, batch_size=8, seed=0)
    assert_same_state(weights(a), weights(b))
    assert all(limit == 0.1 and norm is not None and norm > 0 for limit, norm in seen)
    assert opt_a.max_grad_norm is None  # the optimizer's own setting is restored


def test_frozen_parameters_do_not_change_and_optimizer_may_hold_a_subset():
    X, y = blobs(48)
    model = mlp()
    model.freeze("0.weight", "0.bias")
    frozen = weights(model)
    quiet_fit(model, Adam(model.parameters(), lr=0.05), X, y, epochs=2, batch_size=16)
    after = weights(model)
    np.testing.assert_array_equal(after["0.weight"], frozen["0.weight"])
    np.testing.assert_array_equal(after["0.bias"], frozen["0.bias"])
    assert not np.array_equal(after["2.weight"], frozen["2.weight"])
    # an optimizer over the head only, in two groups
    head = mlp()
    body = weights(head)
    opt = SGD([{"params": [head[2].weight]}, {"params": [head[2].bias], "lr": 0.0}], lr=0.1)
    quiet_fit(head, opt, X, y, epochs=1, batch_size=16)
    np.testing.assert_array_equal(head[0].weight, body["0.weight"])
    np.testing.assert_array_equal(head[2].bias, body["2.bias"])
    assert not np.array_equal(head[2].weight, body["2.weight"])


def test_a_callback_can_unfreeze_layers_between_epochs():
    X, y = blobs(48)
    model = mlp()
    model.freeze("0.weight", "0.bias")
    first_layer = []

    class GradualUnfreeze(train.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            first_layer.append(self.model[0].weight.copy())
            if epoch == 1:
                self.model.unfreeze()

    opt = Adam(model.parameters(), lr=0.05)
    quiet_fit(model, opt, X, y, epochs=2, batch_size=16, callbacks=[GradualUnfreeze()])
    np.testing.assert_array_equal(first_layer[0], first_layer[1])  # frozen in epoch 0
    assert not np.array_equal(first_layer[1], model[0].weight)  # trained in epoch 1


def test_optimizer_over_another_model_is_rejected():
    X, y = blobs(16)
    model = mlp()
    before = weights(model)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\].*not a parameter"):
        quiet_fit(model, SGD(mlp().parameters()), X, y)
    assert_same_state(before, weights(model))


# --- modes -------------------------------------------------------------------------------------
class ModeProbe(Module):
    """Identity that records ``training`` at every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return x

    def backward(self, dy):
        return dy


def test_train_mode_for_training_and_eval_mode_for_validation():
    X, y = blobs(20)
    probe = ModeProbe()
    model = Sequential(Linear(4, 3, rng=0), probe)
    model.eval()
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.01),
        X,
        y,
        epochs=2,
        batch_size=10,
        validation_data=(X[:5], y[:5]),
    )
    # the preflight's dry forwards of X[:2] and X_val[:2] in eval mode, then per epoch:
    # 2 training batches then 1 validation batch
    assert probe.modes == [False, False] + [True, True, False] * 2
    assert not model.training and not probe.training  # the caller's mode is restored
    probe.modes.clear()
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.0),
        X,
        y,
        epochs=1,
        batch_size=10,
        validation_data=(X, y),
        validation_batch_size=3,
    )
    assert probe.modes == [False] * 2 + [True] * 2 + [False] * 7  # 20 val samples, 3 at a time
    full = train.evaluate(model, CrossEntropyLoss(), X, y, batch_size=20)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(full, rel=1e-6)


# --- schedulers --------------------------------------------------------------------------------
class HalvingScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.calls = 0

    def step(self):
        self.calls += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5


class LearningRates(train.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.lrs.append(self.state.optimizer.param_groups[0]["lr"])


class ReduceLROnPlateau:  # recognized by class name, like the real one
    def __init__(self):
        self.metrics: list[float] = []

    def step(self, metrics):
        self.metrics.append(metrics)


@pytest.mark.parametrize(("interval", "calls"), [("epoch", 3), ("step", 9)])
def test_scheduler_interval(interval, calls):
    X, y = blobs(24)
    model = mlp()
    opt = SGD(model.parameters(), lr=1.0)
    sched = HalvingScheduler(opt)
    history = quiet_fit(
        model,
        opt,
        X,
        y,
        epochs=3,
        batch_size=8,
        scheduler=sched,
        scheduler_interval=interval,
        callbacks=[used := LearningRates()],
    )
    assert sched.calls == calls
    per_epoch = calls // 3
    # the lr each step used: halved after every step or after every epoch
    assert used.lrs == [0.5 ** (s // (3 // per_epoch)) for s in range(9)]
    # logged: the lr of each epoch's last step
    assert history.history["lr"] == [used.lrs[3 * e + 2] for e in range(3)]


def test_plateau_scheduler_gets_the_monitored_metric():
    X, y = blobs(24)
    model = mlp()
    sched = ReduceLROnPlateau()
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=2,
        validation_data=(X, y),
        scheduler=sched,
    )
    assert sched.metrics == history.history["val_loss"]
    sched = ReduceLROnPlateau()
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=2,
        validation_data=(X, y),
        scheduler=sched,
        scheduler_monitor="val_accuracy",
    )
    assert len(sched.metrics) == 2 and all(0 <= m <= 1 for m in sched.metrics)
    with pytest.raises(ValueError, match="scheduler_interval='epoch'"):
        quiet_fit(model, SGD(model.parameters()), X, y, scheduler=sched, scheduler_interval="step")
    with pytest.raises(ValueError, match=r"'val_loss' is not logged.*available"):
        quiet_fit(
            model, SGD(model.parameters()), X, y, scheduler=sched, scheduler_monitor="val_loss"
        )


def test_real_reduce_on_plateau():
    from ferroptim.optim.lr_scheduler import ReduceLROnPlateau as Plateau

    X, y = blobs(24)
    model = mlp().freeze()  # nothing trains: the monitored loss stays flat
    opt = SGD(model.parameters(), lr=0.1)
    sched = Plateau(opt, factor=0.5, patience=1)
    history = quiet_fit(
        model, opt, X, y, epochs=5, batch_size=24, validation_data=(X, y), scheduler=sched
    )
    assert history.history["lr"] == [0.1, 0.1, 0.1, 0.05, 0.05]
    assert opt.param_groups[0]["lr"] == 0.025


def test_real_step_scheduler_if_available():
    from ferroptim.optim import lr_scheduler

    X, y = blobs(24)
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    history = quiet_fit(model, opt, X, y, epochs=3, batch_size=8, scheduler=sched)
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.01, 0.001])


# --- augmentation, metrics, progress, plot ---------------------------------------------------
def test_augment_applies_to_training_batches_only():
    X, y = blobs(20)
    calls = []

    def augment(xb):
        calls.append(len(xb))
        return xb + 1.0

    model = Sequential(Linear(4, 3, rng=0), probe := ModeProbe())
    opt = SGD(model.parameters(), lr=0.0)
    history = quiet_fit(
        model, opt, X, y, epochs=1, batch_size=8, validation_data=(X, y), augment=augment
    )
    assert calls == [8, 8, 4]
    assert probe.modes == [False] * 2 + [True] * 3 + [False] * 3  # dry run, train, val
    # lr=0: the same weights, so only the augmentation separates train loss from val loss
    plain = train.evaluate(model, CrossEntropyLoss(), X, y)["loss"]
    shifted = train.evaluate(model, CrossEntropyLoss(), X + 1.0, y)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(plain, rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(shifted, rel=1e-6)
    assert plain != pytest.approx(shifted, rel=1e-3)


def test_binary_and_custom_metrics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2)).astype(np.float32)
    y = (X[:, :1] + X[:, 1:] > 0).astype(np.float32)
    model = Linear(2, 1, rng=0)
    history = quiet_fit(
        model,
        Adam(model.parameters(), lr=0.1),
        X,
        y,
        epochs=20,
        batch_size=16,
        seed=0,
        loss=BCEWithLogitsLoss(),
    )
    assert history.history["accuracy"][-1] >= 0.95
    out = train.predict(model, X)
    assert train.evaluate(model, BCEWithLogitsLoss(), X, y)["accuracy"] == np.mean(
        (out > 0) == (y > 0.5)
    )
    X, y = regression()
    model = Linear(3, 2, dtype=np.float64, rng=0)
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.0),
        X,
        y,
        epochs=1,
        batch_size=len(X),
        metrics=["mae", "accuracy"],
        loss=MSELoss(),
    )
    assert "accuracy" not in history.history or len(history.history) == 5
    pred = X @ model.weight.T + model.bias
    assert history.history["mae"][0] == pytest.approx(np.mean(np.abs(pred - y)))
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        quiet_fit(model, SGD(model.parameters()), X, y, metrics=["f1"], loss=MSELoss())


def test_categorical_accuracy_targets():
    out = np.array([[0.1, 2.0], [3.0, 0.0], [0.0, 1.0]])
    assert train.categorical_accuracy(out, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert train.categorical_accuracy(out, np.eye(2)[[1, 0, 1]]) == 1.0
    assert train.binary_accuracy(np.array([-1.0, 2.0]), np.array([0.0, 0.0])) == 0.5
    with pytest.raises(ValueError, match="target shape"):
        train.categorical_accuracy(out, np.array([1, 0]))


def test_progress_bar_and_plot(tmp_path, capsys):
    X, y = blobs(24)
    model = mlp()
    history = train.fit(
        model,
        CrossEntropyLoss(),
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=2,
        batch_size=8,
        validation_data=(X, y),
        progress=True,
    )
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "val_loss" in err
    path = tmp_path / "curves.png"
    history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no epochs"):
        train.History().plot(tmp_path / "empty.png")


def test_zero_epochs_trains_nothing():
    X, y = blobs(16)
    model = mlp()
    before = weights(model)
    history = quiet_fit(model, SGD(model.parameters(), lr=1.0), X, y, epochs=0)
    assert len(history) == 0 and history.history == {}
    assert_same_state(before, weights(model))


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(X=np.zeros((5, 4), np.float32)), ValueError, "same number of samples, got 5 and 16"),
        (dict(X=np.full((16, 4), "a")), TypeError, "X must be numeric"),
        (dict(y=[object()] * 16), TypeError, "y must be numeric"),
        (dict(X="abc"), TypeError, "X must be a numeric array"),
        (dict(X=np.zeros((0, 4)), y=np.zeros(0, np.int64)), ValueError, "X is empty"),
        (dict(batch_size=0), ValueError, r"invalid batch_size: 0 \(expected an int >= 1\)"),
        (dict(batch_size=2.0), TypeError, "batch_size must be an int, got float"),
        (dict(epochs=-1), ValueError, r"invalid epochs: -1 \(expected an int >= 0\)"),
        (dict(epochs=True), TypeError, "epochs must be an int"),
        (dict(accumulate_steps=0), ValueError, "accumulate_steps"),
        (dict(l1=-0.1), ValueError, r"invalid l1: -0.1 \(expected l1 >= 0\)"),
        (dict(l2=float("nan")), ValueError, r"invalid l2: nan \(expected l2 >= 0\)"),
        (dict(validation_data=(np.zeros((3, 4)),)), TypeError, "validation_data must be a pair"),
        (
            dict(validation_data=(np.zeros((3, 4)), np.zeros(2, np.int64))),
            ValueError,
            "validation_data X and validation_data y must have the same number",
        ),
        (dict(callbacks=[object()]), TypeError, r"callbacks\[0\] must be a ferroptim"),
        (dict(augment=3), TypeError, "augment must be callable"),
        (dict(scheduler_interval="batch"), ValueError, "scheduler_interval"),
        (
            dict(callbacks=[train.EarlyStopping(monitor="val_acc")]),
            ValueError,
            r"monitor 'val_acc' is not logged; available: \['accuracy', 'loss', 'lr', 'time'\]",
        ),
    ],
)
def test_bad_arguments_raise_before_any_update(kwargs, error, match):
    X, y = blobs(16)
    model = mlp()
    before = weights(model)
    args = dict(X=X, y=y, epochs=1, batch_size=4, progress=False)
    args.update(kwargs)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(error, match=match):
        train.fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=1.0), X, y, **args)
    assert_same_state(before, weights(model))


def test_missing_optional_dependencies(monkeypatch, tmp_path):
    X, y = blobs(16)
    model = mlp()
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setattr(sys.modules["ferroptim.train.fit"], "_warned_no_tqdm", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default progress=None trains silently
        history = train.fit(model, CrossEntropyLoss(), SGD(model.parameters()), X, y)
    assert len(history) == 1
    with pytest.warns(UserWarning, match="progress=True needs tqdm"):
        train.fit(model, CrossEntropyLoss(), SGD(model.parameters()), X, y, progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process
        train.fit(model, CrossEntropyLoss(), SGD(model.parameters()), X, y, progress=True)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"History\.plot needs matplotlib"):
        history.plot(tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


# --- data checked against the model and the loss before the first update -------------------
def stochastic_mlp(seed: int = 0):
    """Linear-BatchNorm1d-ReLU-Dropout-Linear: running statistics and a dropout generator."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Linear(4, 8, rng=rng),
        BatchNorm1d(8),
        ReLU(),
        Dropout(0.3, seed=seed),
        Linear(8, 3, rng=rng),
    )


def array_bytes(value):
    """Every array in a nested state (dicts, lists) as (shape, dtype, bytes), scalars as is."""
    if isinstance(value, dict):
        return {key: array_bytes(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [array_bytes(item) for item in value]
    if isinstance(value, np.ndarray):
        return (value.shape, value.dtype.str, value.tobytes())
    return value


def full_snapshot(model, optimizer):
    """Bytes of parameters, gradients, buffers, optimizer state, generator states, modes."""
    return array_bytes(
        {
            "params": model.named_parameters(),
            "grads": model.named_gradients(),
            "buffers": model.named_buffers(),
            "optimizer": optimizer.state_dict(),
            "rng": model.rng_state(),
            "modes": [m.training for m in model.modules()],
            "dtypes": [str(m.dtype) for m in model.modules()],
        }
    )


def trained_model_and_optimizer():
    """A model with moved running statistics, a used dropout generator, non-zero gradients and
    Adam moments; one module left in eval mode (modes must come back as they were)."""
    X, y = blobs(24)
    model = stochastic_mlp()
    opt = Adam(model.parameters(), lr=0.01)
    quiet_fit(model, opt, X, y, epochs=1, batch_size=8)
    model[3].eval()
    return model, opt


def bad_labels():
    _, y = blobs(24)
    y = y.copy()
    y[-1] = 7
    return y


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(validation_data=(blobs(24)[0][:, :3], blobs(24)[1])),
            ValueError,
            r"validation_data X does not fit the model.*shape \(2, 3\).*must have shape",
        ),
        (
            dict(validation_data=(blobs(24)[0], blobs(24)[1] + 3)),
            ValueError,
            "validation_data y does not match the model's output under CrossEntropyLoss",
        ),
        (
            dict(validation_data=(blobs(24)[0], np.r_[blobs(24)[1][:23], 3])),
            ValueError,
            r"validation_data y holds class index 3 \(at validation_data y\[23\]\) but the "
            "model outputs 3 classes",
        ),
        (
            dict(y=bad_labels(), shuffle=False),
            ValueError,
            r"y holds class index 7 \(at y\[23\]\) but the model outputs 3 classes: "
            r"CrossEntropyLoss needs 0..2 or ignore_index=-100",
        ),
        (dict(X=blobs(24)[0][:, :3]), ValueError, "X does not fit the model"),
        (dict(y=np.zeros((24, 3), np.int64)), ValueError, "y does not match the model's output"),
        (
            dict(y=blobs(24)[1].astype(float)),
            TypeError,
            r"y must hold integer class indices for CrossEntropyLoss, got dtype float64",
        ),
        (
            dict(validation_data=(blobs(24)[0], blobs(24)[1].astype(np.float32))),
            TypeError,
            "validation_data y must hold integer class indices .* got dtype float32",
        ),
    ],
)
def test_bad_data_raises_before_training_and_modifies_nothing(kwargs, error, match):
    model, opt = trained_model_and_optimizer()
    X, y = blobs(24)
    args = dict(X=X, y=y, epochs=2, batch_size=4, progress=False, seed=0)
    args.update(kwargs)
    X, y = args.pop("X"), args.pop("y")
    before = full_snapshot(model, opt)
    with pytest.raises(error, match=match):
        train.fit(model, CrossEntropyLoss(), opt, X, y, **args)
    assert full_snapshot(model, opt) == before


def test_bce_targets_not_shaped_like_the_output_are_refused_up_front():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2)).astype(np.float32)
    model = Linear(2, 1, rng=0)
    opt = SGD(model.parameters(), lr=0.1)
    before = full_snapshot(model, opt)
    with pytest.raises(
        ValueError, match=r"^y does not match .* BCEWithLogitsLoss .*y\[:2\] shape \(2,\)"
    ):
        quiet_fit(model, opt, X, (X[:, 0] > 0).astype(float), loss=BCEWithLogitsLoss())
    with pytest.raises(ValueError, match="validation_data y does not match"):
        y = (X[:, :1] > 0).astype(float)
        quiet_fit(model, opt, X, y, validation_data=(X, y[:, 0]), loss=BCEWithLogitsLoss())
    assert full_snapshot(model, opt) == before


def test_ignore_index_labels_pass_the_checks():
    X, y = blobs(24)
    y = y.copy()
    y[::5] = -1
    model = mlp()
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        validation_data=(X, y),
        loss=CrossEntropyLoss(ignore_index=-1),
    )
    assert np.isfinite(history.history["val_loss"][0])


def test_dry_run_leaves_no_trace_in_running_stats_generators_or_caches():
    """The preflight forward runs in eval mode: batch norm neither uses nor updates batch
    statistics, dropout draws nothing, and the caches of a pending train-mode forward survive
    (a backward after it gives the gradients of that forward)."""
    X, y = blobs(24)
    checked, twin = stochastic_mlp(), stochastic_mlp()
    outputs = []
    for model in (checked, twin):
        model.train()
        outputs.append(model(X))  # train-mode forward: caches, batch statistics, a mask
    opt = SGD(checked.parameters(), lr=0.1)
    before = full_snapshot(checked, opt)
    check_fit_data(checked, CrossEntropyLoss(), (X, y), (X[:5], y[:5]), augmented=False)
    assert full_snapshot(checked, opt) == before
    for model, out in zip((checked, twin), outputs, strict=True):
        model.backward(np.ones_like(out))
    assert_same_state(checked.state_dict(), twin.state_dict())
    for (name, a), (_, b) in zip(checked.named_gradients(), twin.named_gradients(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert checked.rng_state() == twin.rng_state()


def test_fit_with_the_preflight_equals_a_manual_loop_bit_for_bit():
    """Training results are those of the plain loop: the dry run changes nothing."""
    X, y = blobs(24)
    fitted, manual = stochastic_mlp(), stochastic_mlp()
    opt_fit = SGD(fitted.parameters(), lr=0.1, momentum=0.9)
    opt_manual = SGD(manual.parameters(), lr=0.1, momentum=0.9)
    loss = CrossEntropyLoss()
    quiet_fit(
        fitted,
        opt_fit,
        X,
        y,
        epochs=3,
        batch_size=len(X),
        shuffle=False,
        validation_data=(X, y),
        loss=loss,
    )
    for _ in range(3):
        manual.train()
        manual.zero_grad()
        loss(manual(X), y)
        manual.backward(loss.backward())
        opt_manual.step(manual.gradients())
    assert_same_state(fitted.state_dict(), manual.state_dict())
    assert fitted.rng_state() == manual.rng_state()


def test_augment_that_changes_the_input_shape_is_not_a_false_error():
    """A crop makes the raw X unfit for the model; that alone must not stop fit, while labels
    out of range are still caught up front (class count from the validation output)."""
    X, y = blobs(24, features=5)
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    history = quiet_fit(model, opt, X, y, augment=lambda xb: xb[:, :4])
    assert len(history) == 1
    y_bad = y.copy()
    y_bad[-1] = 5
    before = full_snapshot(model, opt)
    with pytest.raises(ValueError, match=r"y holds class index 5 \(at y\[23\]\)"):
        quiet_fit(model, opt, X, y_bad, augment=lambda xb: xb[:, :4], validation_data=(X[:, :4], y))
    assert full_snapshot(model, opt) == before


def test_float_labels_are_refused_everywhere_naming_the_callers_dtype():
    """Integer-valued float labels are refused consistently (fit, evaluate, overfit_check),
    and the message names the dtype passed, not the model's float32."""
    X, y = blobs(24)
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    match = "y must hold integer class indices for CrossEntropyLoss, got dtype float64"
    with pytest.raises(TypeError, match=match):
        quiet_fit(model, opt, X, y.astype(np.float64))
    with pytest.raises(TypeError, match=match):
        train.evaluate(model, CrossEntropyLoss(), X, y.astype(np.float64))
    with pytest.raises(TypeError, match=match):
        train.overfit_check(model, CrossEntropyLoss(), opt, X, y.astype(np.float64), steps=1)
    # float targets are still cast to the model's dtype for regression losses
    Xr, yr = regression()
    reg = Linear(3, 2, rng=0)
    history = quiet_fit(reg, SGD(reg.parameters(), lr=0.01), Xr, yr, loss=MSELoss())
    assert np.isfinite(history.history["loss"][0])


def test_a_one_sample_last_batch_under_batch_norm_is_refused_before_training():
    """10 samples in batches of 3 leave a last batch of 1, which BatchNorm1d refuses in training
    mode (as torch does): fit raises before the first step, with the fix, and nothing changed
    (issue 11, item 7)."""
    rng = np.random.default_rng(0)
    model = Sequential(Linear(4, 5), BatchNorm1d(5), ReLU(), Linear(5, 2))
    X = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.integers(0, 2, 10)
    opt = Adam(model.parameters(), lr=0.01)
    before = [a.copy() for a in model.state_dict().values()]
    with pytest.raises(ValueError, match=r"batch_size=3.*drop the last 1 sample"):
        quiet_fit(model, opt, X, y, batch_size=3)
    for a, b in zip(model.state_dict().values(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt.state_dict()["state"] == {}
    assert all(module.training for module in model.modules())
    history = quiet_fit(model, opt, X[:9], y[:9], batch_size=3)
    assert len(history.history["loss"]) == 1

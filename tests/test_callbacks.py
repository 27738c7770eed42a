"""Callbacks: EarlyStopping (Keras semantics, exact weight restore), TerminateOnNaN,
ModelCheckpoint, CSVLogger, monitor validation."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from ferroptim import train
from ferroptim.nn.linear import Linear
from ferroptim.nn.loss import MSELoss
from ferroptim.optim import SGD
from ferroptim.train.callbacks import FitState
from fitting import quiet_fit


# --- EarlyStopping driven directly with a sequence of monitored values ------------------------
def drive(callback, values, monitor="val_loss"):
    """Run the hooks over ``values``; epoch ``e``'s weights are all ``e``. Returns the model
    and the epoch training stopped at (None if it ran through)."""
    model = Linear(2, 1, dtype=np.float64, rng=0)
    state = FitState(model=model, log_names=["loss", monitor])
    callback.set_state(state)
    callback.check_monitors(state.log_names)
    callback.on_train_begin({})
    stopped = None
    for epoch, value in enumerate(values):
        model.weight[...] = epoch
        model.bias[...] = epoch
        callback.on_epoch_end(epoch, {"loss": 0.0, monitor: value})
        if state.stop_training:
            stopped = epoch
            break
    callback.on_train_end({})
    return model, stopped


@pytest.mark.parametrize(
    ("kwargs", "values", "stopped", "best", "best_epoch"),
    [
        (dict(patience=2), [5, 4, 4.5, 4.2, 3], 3, 4, 1),
        (dict(patience=0), [3, 4, 2], 1, 3, 0),
        (dict(patience=1, min_delta=0.5), [5, 4.6, 4.2, 3], 1, 5, 0),
        (dict(patience=1, min_delta=-0.5), [5, 4.6, 4.2, 3], 1, 5, 0),  # |min_delta| used
        (dict(patience=2, baseline=2.0), [5, 4, 3, 3.5], 3, 3, 2),
        (dict(patience=2), [5, 4, 3, 3.5], None, 3, 2),
        (dict(patience=1, start_from_epoch=2), [1, 9, 9, 9, 9], 3, 9, 2),
        (dict(patience=1), [1, math.nan, math.nan], 1, 1, 0),
        (dict(patience=1, mode="max"), [1, 2, 1.5, 3], 2, 2, 1),
    ],
)
def test_early_stopping_follows_keras(kwargs, values, stopped, best, best_epoch):
    callback = train.EarlyStopping(restore_best_weights=True, **kwargs)
    model, stopped_at = drive(callback, values)
    assert stopped_at == stopped
    assert callback.stopped_epoch == (stopped or 0)
    assert callback.best == best
    assert callback.best_epoch == best_epoch
    # the best epoch's weights are back, whether or not training stopped early
    np.testing.assert_array_equal(model.weight, np.full((1, 2), float(best_epoch)))


def test_early_stopping_auto_mode_maximizes_accuracy_and_keeps_weights_without_restore():
    callback = train.EarlyStopping(monitor="val_accuracy", patience=1)
    model, stopped = drive(callback, [0.5, 0.6, 0.55, 0.58], monitor="val_accuracy")
    assert (stopped, callback.best, callback.monitor.mode) == (2, 0.6, "max")
    np.testing.assert_array_equal(model.weight, np.full((1, 2), 2.0))  # not restored


def test_early_stopping_restores_the_first_watched_epoch_when_nothing_improves():
    callback = train.EarlyStopping(patience=5, restore_best_weights=True, start_from_epoch=1)
    model, stopped = drive(callback, [0.0, math.nan, math.nan])
    assert stopped is None
    np.testing.assert_array_equal(model.weight, np.full((1, 2), 1.0))


def test_early_stopping_argument_errors():
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max'"):
        train.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match=r"invalid patience: -1 \(expected an int >= 0\)"):
        train.EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="patience"):
        train.EarlyStopping(patience=1.5)
    with pytest.raises(TypeError, match="monitor must be a metric name"):
        train.EarlyStopping(monitor=3)
    callback = train.EarlyStopping()
    callback.set_state(FitState(model=Linear(2, 1)))
    with pytest.raises(ValueError, match=r"'val_loss' is not in the logs; available: \['loss'\]"):
        callback.on_epoch_end(0, {"loss": 1.0})


# --- with fit: a validation loss that falls then rises ---------------------------------------
def shifted_problem():
    """Training targets X w, validation targets X w / 2: gradient descent from w = 0 towards w
    passes the validation optimum halfway, so val_loss falls and then rises."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    w = np.array([[1.0, -2.0, 0.5]])
    return X, X @ w.T, X @ w.T / 2


def fit_shifted(model, problem, callbacks, epochs: int):
    """Seeded SGD (lr 0.05, batches of 16) on a :func:`shifted_problem`, validated on its
    validation targets."""
    X, y, y_val = problem
    return quiet_fit(
        model,
        SGD(model.parameters(), lr=0.05),
        X,
        y,
        epochs=epochs,
        batch_size=16,
        validation_data=(X, y_val),
        callbacks=callbacks,
        seed=0,
        loss=MSELoss(),
    )


def zero_model():
    model = Linear(3, 1, dtype=np.float64, rng=0)
    model.weight[...] = 0.0
    model.bias[...] = 0.0
    return model


class Recorder(train.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


def test_early_stopping_in_fit_stops_and_restores_the_best_epoch_bit_for_bit():
    X, y, y_val = shifted_problem()
    model = zero_model()
    recorder = Recorder()
    stop = train.EarlyStopping(patience=3, restore_best_weights=True)
    history = fit_shifted(model, (X, y, y_val), [recorder, stop], epochs=200)
    val = history.history["val_loss"]
    best = int(np.argmin(val))
    assert 0 < best < len(val) - 1
    assert len(history) == best + 4 < 200  # stopped `patience` epochs after the best
    assert stop.best_epoch == best and stop.stopped_epoch == best + 3
    assert stop.best == val[best]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, recorder.states[best][key])
        assert not np.array_equal(value, recorder.states[-1][key])


def test_terminate_on_nan_stops_after_the_bad_batch():
    X, y, _ = shifted_problem()
    X = X.copy()
    X[9] = np.nan  # third batch of 4 without shuffling
    model = zero_model()
    batches = []

    class Count(train.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    nan_stop = train.TerminateOnNaN()
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.01),
        X,
        y,
        epochs=3,
        batch_size=4,
        shuffle=False,
        callbacks=[nan_stop, Count()],
        loss=MSELoss(),
    )
    assert nan_stop.terminated_batch == (0, 2)
    assert batches == [0, 1, 2]
    assert len(history) == 1 and math.isnan(history.history["loss"][0])


# --- ModelCheckpoint --------------------------------------------------------------------------
def read_model_state(path):
    try:
        from ferroptim.checkpoint import load
    except ImportError:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    return load(path).model.state_dict


def test_model_checkpoint_best_only_writes_improving_epochs(tmp_path):
    X, y, y_val = shifted_problem()
    model = zero_model()
    recorder = Recorder()
    checkpoint = train.ModelCheckpoint(
        tmp_path / "ckpt-{epoch:03d}-{val_loss:.5f}.npz", save_best_only=True
    )
    history = fit_shifted(model, (X, y, y_val), [recorder, checkpoint], epochs=40)
    val = history.history["val_loss"]
    improving = [e for e in range(len(val)) if val[e] < min(val[:e], default=math.inf)]
    expected = [str(tmp_path / f"ckpt-{e + 1:03d}-{val[e]:.5f}.npz") for e in improving]
    assert checkpoint.saved == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.split("/")[-1] for p in expected)
    best = int(np.argmin(val))
    assert checkpoint.best_epoch == best
    saved = read_model_state(checkpoint.saved[-1])
    for key, value in recorder.states[best].items():
        np.testing.assert_array_equal(saved[key], value)
    with np.load(checkpoint.saved[-1], allow_pickle=False) as archive:  # plain npz, no pickle
        assert archive.files


def test_model_checkpoint_every_epoch_and_resume(tmp_path):
    X, y, _ = shifted_problem()
    model = zero_model()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    checkpoint = train.ModelCheckpoint(tmp_path / "last.ckpt")
    quiet_fit(
        model, opt, X, y, epochs=3, batch_size=16, callbacks=[checkpoint], seed=0, loss=MSELoss()
    )
    assert checkpoint.saved == [str(tmp_path / "last.ckpt")] * 3
    saved = read_model_state(tmp_path / "last.ckpt")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(saved[key], value)
    load = pytest.importorskip("ferroptim.checkpoint").load
    fresh = zero_model()
    fresh_opt = SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    load(tmp_path / "last.ckpt", model=fresh, optimizer=fresh_opt)
    np.testing.assert_array_equal(
        fresh_opt.state[0]["momentum_buffer"], opt.state[0]["momentum_buffer"]
    )


def test_model_checkpoint_errors(tmp_path):
    X, y, _ = shifted_problem()
    model = zero_model()
    before = model.state_dict()
    best_only = train.ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)

    def fit(checkpoint, epochs: int):
        opt = SGD(model.parameters(), lr=0.1)
        quiet_fit(model, opt, X, y, epochs=epochs, callbacks=[checkpoint], loss=MSELoss())

    with pytest.raises(ValueError, match=r"ModelCheckpoint: monitor 'val_loss' is not logged"):
        fit(best_only, 2)
    np.testing.assert_array_equal(model.weight, before["weight"])
    bad_name = train.ModelCheckpoint(tmp_path / "m-{val_acc}.npz")
    with pytest.raises(ValueError, match="names 'val_acc'"):
        fit(bad_name, 1)
    with pytest.raises(TypeError, match="filepath"):
        train.ModelCheckpoint(3)


# --- CSVLogger --------------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Linear(2, 2, dtype=np.float64, rng=0)
    path = tmp_path / "log.csv"
    history = quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=3,
        validation_data=(X, y),
        callbacks=[train.CSVLogger(path)],
    )
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for column, name in enumerate(rows[0][1:], start=1):
        assert [float(r[column]) for r in rows[1:]] == history.history[name]
    # append keeps the rows and adds no second header; the default truncates
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=2,
        validation_data=(X, y),
        callbacks=[train.CSVLogger(path, append=True)],
    )
    assert len(path.read_text().splitlines()) == 6
    quiet_fit(
        model,
        SGD(model.parameters(), lr=0.1),
        X,
        y,
        epochs=1,
        callbacks=[train.CSVLogger(path, separator=";")],
    )
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch;loss;accuracy;lr;time" and len(lines) == 2


def test_history_behaves_like_keras():
    history = train.History()
    history.on_epoch_end(0, {"loss": 2.0, "val_loss": 3.0})
    history.on_epoch_end(1, {"loss": 1.0, "val_loss": 2.5})
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [2.0, 1.0], "val_loss": [3.0, 2.5]}
    assert history["loss"] == [2.0, 1.0] and len(history) == 2
    assert "loss" in repr(history)

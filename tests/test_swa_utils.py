"""fo.optim.swa_utils against torch's formulas (torch/optim/swa_utils.py, CPU path): SWA and EMA
averages over several updates, torch's state_dict keys, SWALR's schedule, update_bn, and the
fit callback."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import nn
from ferroptim.optim import swa_utils as swa


def model(seed: int = 0, dtype=np.float32) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(3, 5, rng=rng, dtype=dtype), nn.BatchNorm1d(5, dtype=dtype), nn.ReLU()
    )


def snapshots(n: int, dtype=np.float32) -> list[nn.Sequential]:
    """n models with different weights and running statistics."""
    out = []
    for k in range(n):
        m = model(k, dtype)
        m(np.random.default_rng(10 + k).normal(size=(8, 3)).astype(dtype))
        out.append(m)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swa_is_the_running_mean_of_the_snapshots(dtype) -> None:
    models = snapshots(4, dtype)
    averaged = swa.AveragedModel(models[0])
    for m in models:
        averaged.update_parameters(m)
    assert int(averaged.n_averaged) == 4 and averaged.n_averaged.shape == ()
    for i, p in enumerate(averaged.module.parameters()):
        # torch's recurrence, step by step in the arrays' dtype
        expected = models[0].parameters()[i].copy()
        for n, m in enumerate(models[1:], start=1):
            expected = expected + (m.parameters()[i] - expected) / (n + 1)
        np.testing.assert_array_equal(p, expected)
        mean = np.mean([m.parameters()[i].astype(np.float64) for m in models], axis=0)
        np.testing.assert_allclose(p, mean, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # buffers follow the last model when use_buffers=False
    for (_, b), (_, last) in zip(
        averaged.module.named_buffers(), models[-1].named_buffers(), strict=True
    ):
        np.testing.assert_array_equal(b, last)


def _torch_lerp(p: np.ndarray, q: np.ndarray, w: float) -> np.ndarray:
    w_ = p.dtype.type(w)
    if w < 0.5:
        return p + w_ * (q - p)
    return q - (q - p) * (p.dtype.type(1) - w_)


@pytest.mark.parametrize("decay", [0.9, 0.3])  # both lerp branches
def test_ema_multi_avg_fn_with_buffers(decay) -> None:
    models = snapshots(3)
    averaged = swa.AveragedModel(
        models[0], multi_avg_fn=swa.get_ema_multi_avg_fn(decay), use_buffers=True
    )
    for m in models:
        averaged.update_parameters(m)
    mine = averaged.module.parameters() + [b for _, b in averaged.module.named_buffers()]
    for i, p in enumerate(mine):
        arrays = [m.parameters() + [b for _, b in m.named_buffers()] for m in models]
        expected = arrays[0][i].copy()
        for later in arrays[1:]:
            if expected.dtype.kind == "f":
                expected = _torch_lerp(expected, later[i], 1 - decay)
            else:  # num_batches_tracked: p * decay + q * (1 - decay), cast back
                expected = (expected * decay + later[i] * (1 - decay)).astype(expected.dtype)
        np.testing.assert_array_equal(p, expected)


def test_avg_fn_and_its_single_array_ema() -> None:
    models = snapshots(3)
    averaged = swa.AveragedModel(models[0], avg_fn=swa.get_ema_avg_fn(0.5))
    for m in models:
        averaged.update_parameters(m)
    a, b, c = (m.parameters()[0] for m in models)
    np.testing.assert_allclose(averaged.module.parameters()[0], 0.5 * (0.5 * a + 0.5 * b) + 0.5 * c)


def test_state_dict_keys_are_torchs_and_round_trip() -> None:
    averaged = swa.AveragedModel(model())
    keys = list(averaged.state_dict())
    assert keys[0] == "n_averaged"
    assert keys[1:] == [f"module.{k}" for k in model().state_dict()]
    averaged.update_parameters(model(3))
    other = swa.AveragedModel(model())
    other.load_state_dict(averaged.state_dict())
    assert int(other.n_averaged) == 1
    np.testing.assert_array_equal(other.module.parameters()[0], model(3).parameters()[0])


def test_averaged_model_runs_and_copies() -> None:
    source = model()
    averaged = swa.AveragedModel(source)
    assert averaged.module is not source
    assert all(p is not q for p, q in zip(averaged.parameters(), source.parameters(), strict=True))
    x = np.ones((4, 3), np.float32)
    averaged.eval()
    source.eval()
    np.testing.assert_array_equal(averaged(x), source(x))


def test_averaged_model_errors() -> None:
    with pytest.raises(ValueError, match="Only one of avg_fn and multi_avg_fn"):
        swa.AveragedModel(
            model(), avg_fn=swa.get_swa_avg_fn(), multi_avg_fn=swa.get_swa_multi_avg_fn()
        )
    with pytest.raises(TypeError, match="Module"):
        swa.AveragedModel(np.ones(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay"):
        swa.get_ema_multi_avg_fn(1.5)
    averaged = swa.AveragedModel(model())
    with pytest.raises(ValueError, match="shape"):
        averaged.update_parameters(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(5), nn.ReLU()))
    assert int(averaged.n_averaged) == 0


def _torch_swalr(lr0: float, swa_lr: float, epochs: int, strategy: str, steps: int) -> list[float]:
    """torch's SWALR recurrence, written out from torch/optim/swa_utils.py."""
    anneal = (lambda t: (1 - math.cos(math.pi * t)) / 2) if strategy == "cos" else (lambda t: t)
    lr, out = lr0, []
    for step_count in range(1, steps + 1):
        step = step_count - 1
        if epochs == 0:
            step = max(1, step)
        prev_alpha = anneal(max(0, min(1, (step - 1) / max(1, epochs))))
        prev = swa_lr if prev_alpha == 1 else (lr - prev_alpha * swa_lr) / (1 - prev_alpha)
        alpha = anneal(max(0, min(1, step / max(1, epochs))))
        lr = swa_lr * alpha + prev * (1 - alpha)
        out.append(lr)
    return out


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("epochs", [0, 1, 4])
def test_swalr_follows_torchs_recurrence(strategy, epochs) -> None:
    opt = fo.optim.SGD([np.zeros(2, np.float32)], lr=0.5)
    scheduler = swa.SWALR(opt, swa_lr=0.05, anneal_epochs=epochs, anneal_strategy=strategy)
    got = [scheduler.get_last_lr()[0]]
    for _ in range(7):
        scheduler.step()
        got.append(scheduler.get_last_lr()[0])
    assert got == _torch_swalr(0.5, 0.05, epochs, strategy, 8)
    assert opt.param_groups[0]["swa_lr"] == 0.05
    restored = swa.SWALR(
        fo.optim.SGD([np.zeros(2, np.float32)], lr=0.5), swa_lr=0.05, anneal_strategy="linear"
    )
    restored.load_state_dict(scheduler.state_dict())
    assert restored.anneal_func is scheduler.anneal_func


def test_swalr_errors() -> None:
    opt = fo.optim.SGD([np.zeros(2, np.float32)], lr=0.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        swa.SWALR(opt, swa_lr=0.1, anneal_strategy="exp")
    with pytest.raises(ValueError, match="one value per param group"):
        swa.SWALR(opt, swa_lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="anneal_epochs"):
        swa.SWALR(opt, swa_lr=0.1, anneal_epochs=-1)


def test_update_bn_recomputes_the_plain_average() -> None:
    net = model()
    bn = net[1]
    bn.momentum = 0.3
    net.eval()
    batches = [np.random.default_rng(k).normal(size=(6, 3)).astype(np.float32) for k in range(3)]
    swa.update_bn([(b, None) for b in batches], net)
    hidden = [net[0](b) for b in batches]
    np.testing.assert_allclose(bn.running_mean, np.mean([h.mean(0) for h in hidden], 0), rtol=1e-5)
    unbiased = np.mean([h.var(0, ddof=1) for h in hidden], 0)
    np.testing.assert_allclose(bn.running_var, unbiased, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 3
    assert bn.momentum == 0.3 and not net.training and not bn.training


def test_fit_keeps_an_ema() -> None:
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = (x.sum(1) > 0).astype(np.int64)
    net = nn.Sequential(nn.Linear(3, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=1))
    ema = fo.train.ModelAveraging.ema(net, decay=0.5)
    manual = swa.AveragedModel(net, multi_avg_fn=swa.get_ema_multi_avg_fn(0.5), use_buffers=True)
    twin = nn.Sequential(nn.Linear(3, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=1))
    fo.train.fit(
        net,
        nn.CrossEntropyLoss(),
        fo.optim.SGD(net.parameters(), lr=0.1),
        x,
        y,
        batch_size=8,
        shuffle=False,
        callbacks=[ema],
        progress=False,
    )
    opt = fo.optim.SGD(twin.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    for start in range(0, 32, 8):
        twin.zero_grad()
        loss_fn(twin(x[start : start + 8]), y[start : start + 8])
        twin.backward(loss_fn.backward())
        opt.step(twin)
        manual.update_parameters(twin)
    assert int(ema.averaged.n_averaged) == 4
    for a, b in zip(ema.averaged.parameters(), manual.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def _tiny_fit(ema_decay=None, callbacks=None) -> tuple[nn.Sequential, fo.train.History]:
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = (x.sum(1) > 0).astype(np.int64)
    net = nn.Sequential(
        nn.Linear(3, 8, rng=0), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2, rng=1)
    )
    history = fo.train.fit(
        net,
        nn.CrossEntropyLoss(),
        fo.optim.SGD(net.parameters(), lr=0.1),
        x,
        y,
        epochs=2,
        batch_size=8,
        seed=3,
        ema_decay=ema_decay,
        callbacks=callbacks(net) if callbacks else None,
        progress=False,
    )
    return net, history


def test_fit_ema_decay_is_the_ema_callback() -> None:
    net, history = _tiny_fit(ema_decay=0.7)
    holder = []

    def ema_callback(model):
        holder.append(fo.train.ModelAveraging.ema(model, 0.7))
        return holder

    twin, twin_history = _tiny_fit(callbacks=ema_callback)
    assert twin_history.ema_model is None
    ema = history.ema_model
    assert isinstance(ema, swa.AveragedModel) and int(ema.n_averaged) == 8  # 2 epochs x 4 steps
    expected = holder[0].averaged.state_dict()
    got = ema.state_dict()
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    # the average is not the final model (decay 0.7 over 8 steps), and training is unchanged
    assert not np.array_equal(ema.module[0].weight, net[0].weight)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("bad", "error"), [(1.5, ValueError), (-0.1, ValueError), (True, TypeError), ("0.9", TypeError)]
)
def test_fit_ema_decay_refused_before_training(bad, error) -> None:
    x = np.ones((4, 3), np.float32)
    net = nn.Sequential(nn.Linear(3, 2, rng=0))
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(error, match="ema_decay"):
        fo.train.fit(
            net,
            nn.MSELoss(),
            fo.optim.SGD(net.parameters(), lr=0.1),
            x,
            np.zeros((4, 2), np.float32),
            ema_decay=bad,
            progress=False,
        )
    for a, b in zip(net.parameters(), before, strict=True):
        np.testing.assert_array_equal(a, b)

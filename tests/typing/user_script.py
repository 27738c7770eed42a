"""A user's script over the public API, type-checked with ``mypy --strict`` by ``make test``
(not run: see examples/torch_port/train_ferroptim.py for one that runs)."""

from __future__ import annotations

import numpy as np

import ferroptim as fo


def build(seed: int) -> fo.nn.Sequential:
    fo.manual_seed(seed)
    return fo.nn.Sequential(
        fo.nn.Linear(8, 16),
        fo.nn.BatchNorm1d(16),
        fo.nn.ReLU(),
        fo.nn.Dropout(0.1),
        fo.nn.Linear(16, 3),
    )


def train(x: np.ndarray, y: np.ndarray, path: str) -> float:
    model = build(0)
    linear = model[0]
    assert isinstance(linear, fo.nn.Linear)
    weight: np.ndarray = linear.weight
    loss_fn = fo.nn.CrossEntropyLoss()
    groups = fo.optim.param_groups(model, weight_decay=0.01, no_decay=("bias", "norm"))
    opt = fo.optim.AdamW(groups, lr=1e-3, fused=True)
    sched = fo.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    ema = fo.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=fo.optim.swa_utils.get_ema_multi_avg_fn(0.99), use_buffers=True
    )
    loader = fo.data.BatchLoader(x, y, batch_size=32)
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        dx: np.ndarray = model.backward(loss_fn.backward())
        norm: float = fo.clip.clip_grad_norm_(model, 1.0)
        opt.step(model)
        ema.update_parameters(model)
        print(float(loss), norm, dx.shape)
    sched.step()
    model.eval()
    with fo.no_grad():
        val = loss_fn(model(x), y)
    fo.save(path, model=model, optimizer=opt, scheduler=sched)
    checkpoint: fo.Checkpoint = fo.load(path, model=model, optimizer=opt)
    print(checkpoint.version, weight.shape)
    history = fo.train.fit(
        model,
        loss_fn,
        opt,
        x,
        y,
        epochs=2,
        batch_size=32,
        callbacks=[fo.train.EarlyStopping(patience=2), fo.train.ModelAveraging.ema(model)],
        progress=False,
    )
    print(history.history["loss"])
    return float(val)

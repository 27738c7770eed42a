"""Cases for tests/test_distributed_fit.py: fit over ranks == fit in one process on the same
global batches; global logs, rank-0-only side effects, the same stopping decision everywhere."""

import io
import os
import sys
from contextlib import redirect_stderr

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _case import run_cases
from mpi4py import MPI

import ferroptim as fo
from ferroptim import distributed as dist

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def distributed_optimizer(optimizer):
    return dist.DistributedOptimizer(optimizer)


def data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 6)).astype(dtype)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y


def model(dtype, seed=3):
    return fo.nn.Sequential(
        fo.nn.Linear(6, 16, bias=False, dtype=dtype, rng=seed),  # a bias before BN: noise
        fo.nn.BatchNorm1d(16, dtype=dtype),
        fo.nn.ReLU(),
        fo.nn.Dropout(0.25, seed=seed),  # masks drawn for the whole batch on every rank
        fo.nn.Linear(16, 3, dtype=dtype, rng=seed + 1),
    )


class NoiseAugmenter:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, xb):
        return xb + self.rng.normal(0.0, 0.1, xb.shape).astype(xb.dtype)


def run_fit(distributed, dtype, optimizer="ddp", n=53, **kwargs):
    """fit in one process, or over the ranks with SyncBatchNorm and ``optimizer``: "ddp"
    (DistributedOptimizer), "zero" (ZeroRedundancyOptimizer) or "plain" (AdamW that
    ``fit(distributed=True)`` wraps)."""
    net = model(dtype)
    hyper = {"lr": 1e-2, "weight_decay": 1e-2}
    if distributed:
        net = dist.convert_sync_batchnorm(net)
    if not distributed or optimizer == "plain":
        opt = fo.optim.AdamW(net.parameters(), **hyper)
        kwargs["distributed"] = distributed
    elif optimizer == "zero":
        opt = dist.ZeroRedundancyOptimizer(
            net.parameters(), optimizer_class=fo.optim.AdamW, **hyper
        )
    else:
        opt = dist.DistributedOptimizer(fo.optim.AdamW(net.parameters(), **hyper))
    x, y = data(n, dtype)
    xv, yv = data(19, dtype, seed=1)
    history = fo.train.fit(
        net,
        fo.nn.CrossEntropyLoss(),
        opt,
        x,
        y,
        validation_data=(xv, yv),
        progress=False,
        seed=11,
        **kwargs,
    )
    return net, history


def same_as_one_process() -> None:
    """53 samples in batches of 8 (uneven last slices; 50: an empty one at 3 ranks),
    SyncBatchNorm, Dropout, AdamW through
    DistributedOptimizer or ZeRO; with gradient accumulation, augmentation, clipping and an L2
    penalty too."""
    variants = [
        (np.float64, {"epochs": 3, "batch_size": 8}),
        (np.float64, {"epochs": 2, "batch_size": 7, "accumulate_steps": 2, "l2": 1e-3}),
        (np.float64, {"epochs": 2, "batch_size": 9, "augment": "noise"}),
        (np.float32, {"epochs": 2, "batch_size": 8, "max_grad_norm": 0.5}),
        (np.float64, {"epochs": 2, "batch_size": 8, "max_grad_norm": 0.5, "optimizer": "zero"}),
        (np.float64, {"epochs": 2, "batch_size": 8, "optimizer": "plain"}),
        # a last batch of 2: at 3 ranks one rank has no samples (SyncBatchNorm and Dropout
        # still run there, so collectives and generators stay in step)
        (np.float64, {"epochs": 3, "batch_size": 8, "n": 50}),
    ]
    for dtype, kwargs in variants:
        tol = 1e-9 if dtype == np.float64 else 2e-4
        runs = []
        for distributed in (False, True):
            args = dict(kwargs)
            if not distributed:
                args.pop("optimizer", None)
            if args.get("augment") == "noise":
                args["augment"] = NoiseAugmenter(5)
            runs.append(run_fit(distributed, dtype, **args))
        (one, h_one), (many, h_many) = runs
        what = f"rank {RANK} {np.dtype(dtype).name} {kwargs}"
        for (name, a), (_, b) in zip(
            one.state_dict().items(), many.state_dict().items(), strict=True
        ):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol, err_msg=f"{what}: {name}")
        assert list(h_one.history) == list(h_many.history)
        for name in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            np.testing.assert_allclose(
                h_many.history[name], h_one.history[name], rtol=tol, err_msg=f"{what}: {name}"
            )
        params = np.concatenate([p.ravel().astype(np.float64) for p in many.parameters()])
        everyone = np.empty((SIZE, params.size))
        COMM.Allgather(params, everyone)
        np.testing.assert_allclose(everyone, np.broadcast_to(params, everyone.shape), rtol=1e-12)


class StopOnRank(fo.train.Callback):
    """Requests a stop on one rank only, after one batch of epoch 1."""

    def __init__(self, rank):
        self.rank = rank
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if RANK == self.rank and self.epoch == 1 and batch == 1:
            self.state.stop_training = True


def rank_zero_side_effects_and_stopping(tmp: str) -> None:
    stop = StopOnRank(SIZE - 1)
    early = fo.train.EarlyStopping(monitor="val_loss", patience=0)
    ckpt = fo.train.ModelCheckpoint(os.path.join(tmp, f"ckpt-rank{RANK}.npz"))
    csv = fo.train.CSVLogger(os.path.join(tmp, f"log-rank{RANK}.csv"))
    net = dist.convert_sync_batchnorm(model(np.float64))
    opt = distributed_optimizer(fo.optim.SGD(net.parameters(), lr=0.1))
    x, y = data(40, np.float64)
    err = io.StringIO()
    with redirect_stderr(err):
        history = fo.train.fit(
            net,
            fo.nn.CrossEntropyLoss(),
            opt,
            x,
            y,
            epochs=4,
            batch_size=8,
            validation_data=data(10, np.float64, seed=2),
            callbacks=[stop, early, ckpt, csv],
            progress=True,
            seed=None,
        )
    # the stop on the last rank ends epoch 1 after its second step on every rank
    assert len(history) == 2, history.history
    lengths = COMM.allgather((len(history), early.stopped_epoch, history.history["loss"]))
    assert all(item == lengths[0] for item in lengths), lengths
    wrote = os.path.exists(ckpt.filepath), os.path.exists(csv.filename)
    assert wrote == ((True, True) if RANK == 0 else (False, False)), wrote
    has_bar = "Epoch 1/4" in err.getvalue()
    assert has_bar == (RANK == 0), err.getvalue()
    plot = os.path.join(tmp, f"plot-rank{RANK}.png")
    history.plot(plot)
    assert os.path.exists(plot) == (RANK == 0)


class RaiseOnRank(fo.train.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if RANK == SIZE - 1 and batch == 2:
            raise RuntimeError("deliberate failure inside fit on one rank")


def raise_in_fit() -> None:
    """The other ranks wait in the next collective; ``-m mpi4py`` must end the whole job."""
    net = dist.convert_sync_batchnorm(model(np.float64))
    opt = distributed_optimizer(fo.optim.SGD(net.parameters(), lr=0.1))
    x, y = data(64, np.float64)
    fo.train.fit(
        net,
        fo.nn.CrossEntropyLoss(),
        opt,
        x,
        y,
        batch_size=8,
        callbacks=[RaiseOnRank()],
        progress=False,
    )


def zero_checkpoint_is_the_single_process_state(tmp: str) -> None:
    """ModelCheckpoint with ZeRO: rank 0's file holds the whole optimizer state (consolidated),
    loadable by the single-process AdamW and equal to a one-process run's."""
    paths = [os.path.join(tmp, name) for name in (f"one-rank{RANK}.npz", "zero.npz")]
    for distributed, path in zip((False, True), paths, strict=True):
        callback = fo.train.ModelCheckpoint(path)
        args = {"optimizer": "zero"} if distributed else {}
        run_fit(distributed, np.float64, epochs=2, batch_size=8, callbacks=[callback], **args)
    COMM.Barrier()
    if RANK != 0:
        return
    states = []
    for path in paths:
        net = model(np.float64)
        opt = fo.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2)
        fo.checkpoint.load(path, model=net, optimizer=opt)
        states.append(opt.state_dict())
    one, zero = states
    assert one["param_groups"] == zero["param_groups"]
    assert sorted(one["state"]) == sorted(zero["state"])
    for index, entry in one["state"].items():
        for key, value in entry.items():
            np.testing.assert_allclose(zero["state"][index][key], value, rtol=1e-9, atol=1e-12)


def demo_model_steps(steps: str = "6") -> None:
    """The demo's training (its CNN, split, augmentation, Dropout, AdamW and warm-up schedule)
    for a few steps of the global batch of 64: over the ranks (SyncBatchNorm,
    DistributedOptimizer, as ``mpiexec -n 2 python -m mpi4py -m ferroptim demo``) the parameters
    and running statistics equal one process's within float32 rounding."""
    from ferroptim.demo.digits import demo_cnn, digits_augmenter, load_digits_nchw, split_digits

    parts = split_digits(*load_digits_nchw(), seed=0)
    n = 64 * int(steps)
    nets = []
    for distributed in (False, True):
        net = demo_cnn(seed=0)
        adamw = fo.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)
        opt = adamw
        if distributed:
            net = dist.convert_sync_batchnorm(net)
            opt = dist.DistributedOptimizer(adamw)
        schedule = fo.optim.lr_scheduler.warmup_cosine(
            adamw, warmup_steps=4, total_steps=100, min_lr=3e-5
        )
        fo.train.fit(
            net,
            fo.nn.CrossEntropyLoss(),
            opt,
            parts.x_train[:n],
            parts.y_train[:n],
            epochs=1,
            batch_size=64,
            scheduler=schedule,
            scheduler_interval="step",
            augment=digits_augmenter(0),
            progress=False,
            seed=0,
        )
        nets.append(net)
    one, many = (dict(net.state_dict()) for net in nets)
    assert list(one) == list(many)
    for name, want in one.items():
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(
            many[name], want, rtol=0, atol=5e-5 * scale, err_msg=f"rank {RANK}: {name}"
        )


def everything(tmp: str) -> None:
    same_as_one_process()
    rank_zero_side_effects_and_stopping(tmp)
    zero_checkpoint_is_the_single_process_state(tmp)


run_cases({"all": everything, "raise_in_fit": raise_in_fit, "demo_model": demo_model_steps})

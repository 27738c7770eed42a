"""``python -m ferroptim demo``: a small CNN trained on the digits with the guide's practices.

Standardize (training statistics only), shuffle, augment, Conv2d/BatchNorm2d/ReLU/MaxPool2d/
Dropout/Linear, AdamW with a warm-up + cosine schedule stepped per optimizer step, early stopping
on a validation part of the training set with the best weights restored, then the accuracy on
the held-out 20% test split, a PNG of the training curves, and the time spent in optimizer steps
with the native kernels and with the NumPy reference doing the same steps.

Launched on several MPI ranks (``mpiexec -n 2 python -m mpi4py -m ferroptim demo``) it trains
data-parallel: BatchNorm becomes SyncBatchNorm, AdamW is wrapped in ``DistributedOptimizer``,
each rank trains on its share of every global batch of ``--batch-size``, and rank 0 prints and
plots.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.demo.digits import (
    accuracy,
    demo_cnn,
    digits_augmenter,
    load_digits_nchw,
    split_digits,
)


@dataclass
class StepClock:
    """Wraps an optimizer's ``step`` to count calls and add up their wall time."""

    calls: int = 0
    seconds: float = 0.0

    def wrap(self, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


@dataclass(frozen=True)
class DemoResult:
    test_accuracy: float
    ranks: int
    epochs_run: int
    stopped_early: bool
    best_epoch: int
    training_step_us: float
    native_step_us: float
    reference_step_us: float
    optimizer_steps: int
    plot_path: Path | None
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=60, help="maximum epochs (default 60)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot", default="ferroptim-demo.png", help="PNG of the training curves ('' to skip)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_from_args(args: argparse.Namespace) -> int:
    result = run_demo(
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        plot=args.plot or None,
        progress=False if args.quiet else None,
    )
    return 0 if result.test_accuracy >= 0.97 else 1


def run_demo(
    *,
    epochs: int = 60,
    patience: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    plot: str | None = "ferroptim-demo.png",
    progress: bool | None = None,
) -> DemoResult:
    """Train, evaluate and report (printing as it goes, on rank 0 only when distributed); see
    the module docstring."""
    comm = mpi_world()
    quiet = comm is not None and comm.Get_rank() != 0
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        return _run(epochs, patience, batch_size, lr, seed, plot, progress, comm)


def mpi_world() -> Any:
    """mpi4py's world communicator when this process was launched with ``python -m mpi4py``
    on more than one rank, else None (without that launcher the demo never imports mpi4py)."""
    if "mpi4py" not in sys.modules:
        return None
    from ferroptim import distributed as dist

    comm = dist.init()
    return comm if comm.Get_size() > 1 else None


def _run(
    epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    seed: int,
    plot: str | None,
    progress: bool | None,
    comm: Any,
) -> DemoResult:
    started = time.perf_counter()
    ranks = 1 if comm is None else comm.Get_size()
    x, y = load_digits_nchw()
    parts = split_digits(x, y, seed=seed)
    print(
        f"digits: {len(x)} images 8x8, train {len(parts.x_train)} / validation "
        f"{len(parts.x_val)} / test {len(parts.x_test)} (stratified); "
        f"ferroptim {fo.__version__}, SIMD {fo.simd_level()}, {fo.get_num_threads()} threads"
    )
    model: fo.nn.Module = demo_cnn(seed=seed)
    loss_fn = fo.nn.CrossEntropyLoss()
    adamw = fo.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    opt: Any = adamw
    if comm is not None:
        from ferroptim import distributed as dist

        model = dist.convert_sync_batchnorm(model, comm)
        opt = dist.DistributedOptimizer(adamw, comm=comm)
    steps_per_epoch = math.ceil(len(parts.x_train) / batch_size)
    total_steps = epochs * steps_per_epoch
    schedule = fo.optim.lr_scheduler.warmup_cosine(
        adamw, warmup_steps=2 * steps_per_epoch, total_steps=total_steps, min_lr=lr * 1e-2
    )
    stop = fo.train.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    clock = StepClock()
    opt.step = clock.wrap(opt.step)
    print(
        f"model: {model.num_parameters()} parameters; AdamW lr {lr:g} (warm-up 2 epochs, cosine "
        f"to {lr * 1e-2:g} over {epochs} epochs), batch {batch_size}, early stopping "
        f"(patience {patience})"
    )
    if comm is not None:
        print(
            f"data-parallel over {ranks} MPI ranks: each trains on 1/{ranks} of every batch of "
            f"{batch_size} (SyncBatchNorm, gradients averaged by DistributedOptimizer)"
        )
    history = fo.train.fit(
        model,
        loss_fn,
        opt,
        parts.x_train,
        parts.y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(parts.x_val, parts.y_val),
        scheduler=schedule,
        scheduler_interval="step",
        callbacks=[stop],
        augment=digits_augmenter(seed),
        progress=progress,
        seed=seed,
    )
    test_acc = accuracy(model, parts.x_test, parts.y_test)
    if comm is None or comm.Get_rank() == 0:
        native_seconds, reference_seconds = _replay(model, adamw, clock.calls)
    else:
        native_seconds = reference_seconds = 0.0
    plot_path = None
    if plot:
        plot_path = Path(plot)
        history.plot(plot_path, title="ferroptim demo: small CNN on digits")
    result = DemoResult(
        test_accuracy=test_acc,
        ranks=ranks,
        epochs_run=len(history),
        stopped_early=stop.stopped_epoch > 0,
        best_epoch=stop.best_epoch + 1,
        training_step_us=1e6 * clock.seconds / max(clock.calls, 1),
        native_step_us=1e6 * native_seconds / max(clock.calls, 1),
        reference_step_us=1e6 * reference_seconds / max(clock.calls, 1),
        optimizer_steps=clock.calls,
        plot_path=plot_path,
        seconds=time.perf_counter() - started,
    )
    _print_report(result, history)
    if comm is not None:  # rank 0's report is out before any rank exits (a non-zero exit aborts)
        sys.stdout.flush()
        comm.Barrier()
    return result


def _replay(model: fo.nn.Module, opt: fo.optim.Optimizer, steps: int) -> tuple[float, float]:
    """Seconds that ``steps`` AdamW steps of this model's parameters take back to back with the
    native kernels and with the NumPy reference (copies of the parameters, the last gradients,
    the optimizer's final hyperparameters), timed the same way."""
    grads = [
        np.full_like(p, 1e-3) if g is None else g.copy()
        for p, g in zip(model.parameters(), model.gradients(), strict=True)
    ]
    group = opt.param_groups[0]
    seconds = []
    for backend in ("native", "reference"):
        params = [p.copy() for p in model.parameters()]
        replay = fo.optim.AdamW(
            params, lr=group["lr"], weight_decay=group["weight_decay"], backend=backend
        )
        started = time.perf_counter()
        for _ in range(steps):
            replay.step(grads)
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1]


def _print_report(result: DemoResult, history: Any) -> None:
    how = "stopped early" if result.stopped_early else "ran all epochs"
    print(
        f"\ntrained {result.epochs_run} epochs ({how}); best validation loss at epoch "
        f"{result.best_epoch}, whose weights were restored"
    )
    ranks = f" on {result.ranks} MPI ranks" if result.ranks > 1 else " (one process)"
    print(f"test accuracy (held-out 20%): {100 * result.test_accuracy:.2f}%{ranks}")
    steps = result.optimizer_steps
    waits = ", the gradient allreduce and the wait for other ranks" if result.ranks > 1 else ""
    print(
        f"optimizer: {steps} AdamW steps took {steps * result.training_step_us / 1e3:.1f} ms "
        f"during training ({result.training_step_us:.1f} µs/step, caches cold after backward"
        f"{waits})"
    )
    ratio = result.reference_step_us / max(result.native_step_us, 1e-9)
    print(
        f"the same {steps} steps back to back: native {result.native_step_us:.1f} µs/step "
        f"({steps * result.native_step_us / 1e3:.1f} ms), NumPy reference "
        f"{result.reference_step_us:.1f} µs/step ({steps * result.reference_step_us / 1e3:.1f} "
        f"ms): {ratio:.1f}x"
    )
    if result.plot_path is not None:
        print(f"training curves: {result.plot_path}")
    print(f"demo time: {result.seconds:.1f} s")

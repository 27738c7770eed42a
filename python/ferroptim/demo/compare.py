"""``python -m ferroptim compare``: the guide's claims, measured on the digits.

Every run trains the same small CNN (``digits.small_cnn``) on the same split with the same seed
and batch size, changing one thing: the optimizer; the initialization (the guide's 0.02*randn,
Xavier, Kaiming); batch norm on or off; sigmoid + MSE against softmax + cross-entropy; dropout on
or off. Validation accuracy is logged every epoch; the result is one PNG with a panel per
question and a printed table (final training loss, validation and test accuracy, time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.demo.digits import DigitsSplit, accuracy, load_digits_nchw, small_cnn, split_digits


@dataclass(frozen=True)
class Variant:
    """One training run: a label, how to build the model, optimizer and loss."""

    label: str
    model: Callable[[], fo.nn.Module]
    optimizer: Callable[[list[np.ndarray]], fo.optim.Optimizer]
    mse: bool = False


@dataclass
class RunResult:
    question: str
    label: str
    loss: list[float]
    val_accuracy: list[float]
    test_accuracy: float
    seconds: float


def _argmax_accuracy(output: np.ndarray, target: np.ndarray) -> float:
    labels = target if target.ndim == 1 else np.argmax(target, axis=1)
    return float(np.mean(np.argmax(output, axis=1) == labels))


def questions(seed: int) -> dict[str, list[Variant]]:
    """The guide's comparisons, each a list of variants of one setup."""
    optim = fo.optim

    def cnn(**kwargs: Any) -> Callable[[], fo.nn.Module]:
        return lambda: small_cnn(seed=seed, **kwargs)

    def adam(params: list[np.ndarray]) -> fo.optim.Optimizer:
        return optim.Adam(params, lr=1e-3)

    def momentum(params: list[np.ndarray]) -> fo.optim.Optimizer:
        return optim.SGD(params, lr=0.02, momentum=0.9)

    def mse_model() -> fo.nn.Module:
        return small_cnn(seed=seed).append(fo.nn.Sigmoid())

    return {
        "optimizer (train loss)": [
            Variant("SGD", cnn(), lambda p: optim.SGD(p, lr=0.05)),
            Variant("Momentum", cnn(), lambda p: optim.SGD(p, lr=0.02, momentum=0.9)),
            Variant(
                "Nesterov", cnn(), lambda p: optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True)
            ),
            Variant("Adagrad", cnn(), lambda p: optim.Adagrad(p, lr=0.05)),
            Variant("Adadelta", cnn(), lambda p: optim.Adadelta(p, lr=1.0)),
            Variant("RMSprop", cnn(), lambda p: optim.RMSprop(p, lr=1e-3)),
            Variant("Adam", cnn(), adam),
            Variant("Adamax", cnn(), lambda p: optim.Adamax(p, lr=2e-3)),
            Variant("NAdam", cnn(), lambda p: optim.NAdam(p, lr=2e-3)),
        ],
        "initialization (no batch norm, momentum SGD)": [
            Variant("normal 0.02", cnn(batch_norm=False, init="normal"), momentum),
            Variant("Xavier", cnn(batch_norm=False, init="xavier_uniform"), momentum),
            Variant("Kaiming", cnn(batch_norm=False, init="kaiming_normal"), momentum),
        ],
        "batch norm (momentum SGD)": [
            Variant("with batch norm", cnn(), momentum),
            Variant("without", cnn(batch_norm=False), momentum),
        ],
        "output + loss (Adam)": [
            Variant("softmax + cross-entropy", cnn(), adam),
            Variant("sigmoid + MSE", mse_model, adam, mse=True),
        ],
        "dropout (Adam)": [
            Variant("dropout 0.25", cnn(), adam),
            Variant("no dropout", cnn(dropout=0.0), adam),
        ],
    }


def run_variant(
    question: str, variant: Variant, parts: DigitsSplit, epochs: int, seed: int
) -> RunResult:
    model = variant.model()
    opt = variant.optimizer(model.parameters())
    if variant.mse:
        loss_fn: Any = fo.nn.MSELoss()
        y_train, y_val = np.eye(10)[parts.y_train], np.eye(10)[parts.y_val]
    else:
        loss_fn = fo.nn.CrossEntropyLoss()
        y_train, y_val = parts.y_train, parts.y_val
    started = time.perf_counter()
    history = fo.train.fit(
        model,
        loss_fn,
        opt,
        parts.x_train,
        y_train,
        epochs=epochs,
        batch_size=64,
        validation_data=(parts.x_val, y_val),
        metrics={"accuracy": _argmax_accuracy},
        progress=False,
        seed=seed,
    )
    return RunResult(
        question,
        variant.label,
        list(history.history["loss"]),
        list(history.history["val_accuracy"]),
        accuracy(model, parts.x_test, parts.y_test),
        time.perf_counter() - started,
    )


def plot_results(results: list[RunResult], path: Path, epochs: int) -> None:
    """One panel per question: training loss for the optimizers, validation accuracy else."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(r.question for r in results))
    fig = Figure(figsize=(5.0 * len(names), 4.2))
    FigureCanvasAgg(fig)
    x = np.arange(1, epochs + 1)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for r in (r for r in results if r.question == name):
            if name.startswith("optimizer"):
                ax.semilogy(x[: len(r.loss)], r.loss, label=r.label)
            else:
                ax.plot(x[: len(r.val_accuracy)], r.val_accuracy, label=r.label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss" if name.startswith("optimizer") else "validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def results_table(results: list[RunResult]) -> str:
    lines = [
        "| question | variant | final train loss | val accuracy | test accuracy | seconds |",
        "|:--|:--|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.question} | {r.label} | {r.loss[-1]:.4f} | {100 * r.val_accuracy[-1]:.1f}% "
            f"| {100 * r.test_accuracy:.1f}% | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def run_compare(
    *,
    epochs: int = 12,
    seed: int = 0,
    plot: str | None = "ferroptim-compare.png",
    only: list[str] | None = None,
) -> list[RunResult]:
    """Run every question (or those whose name starts with one of ``only``); print the table."""
    x, y = load_digits_nchw()
    parts = split_digits(x, y, seed=seed)
    results = []
    for question, variants in questions(seed).items():
        if only and not any(question.startswith(prefix) for prefix in only):
            continue
        for variant in variants:
            result = run_variant(question, variant, parts, epochs, seed)
            print(
                f"{question:>45} | {variant.label:<24} test accuracy "
                f"{100 * result.test_accuracy:5.1f}%  ({result.seconds:.1f} s)",
                flush=True,
            )
            results.append(result)
    print()
    print(results_table(results))
    if plot:
        plot_results(results, Path(plot), epochs)
        print(f"\nfigure: {plot}")
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=12, help="epochs per run (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="ferroptim-compare.png", help="PNG path ('' to skip)")
    parser.add_argument(
        "--state-formats",
        action="store_true",
        help="instead: Adam with float32, bfloat16 and 8-bit state (speed by tensor size, and "
        "digits accuracy over --seeds seeds); figure ferroptim-state-formats.png",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds for --state-formats")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="question prefixes to run (optimizer, initialization, batch, output, dropout)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    if args.state_formats:
        from ferroptim.demo.state_formats import run_state_formats

        plot = args.plot if args.plot != "ferroptim-compare.png" else "ferroptim-state-formats.png"
        run_state_formats(epochs=args.epochs, seeds=args.seeds, plot_path=plot or None)
        return 0
    run_compare(epochs=args.epochs, seed=args.seed, plot=args.plot or None, only=args.only)
    return 0

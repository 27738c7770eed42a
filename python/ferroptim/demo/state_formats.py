"""``python -m ferroptim compare --state-formats``: float32, bfloat16 and 8-bit optimizer state.

Two panels:

* speed: nanoseconds per parameter of one Adam step against tensor size, from L2-resident to
  DRAM-sized, for float32 state (28 bytes per element), bfloat16 state (20) and 8-bit blockwise
  state (~16), with the roofline kernels that move 28 and 20 bytes per element and no arithmetic
  (the 16-byte line is the 20-byte roofline scaled by 16/20);
* accuracy: final test accuracy on the digits (the demo CNN, whose second convolution has 8-bit
  state, and a 64-128-128-10 MLP, whose two larger weights do) with AdamW in each state format,
  mean and spread over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.bench.state_formats import FORMATS, make_adam
from ferroptim.bench.timing import Budget, measure
from ferroptim.demo.digits import accuracy, demo_cnn, load_digits_nchw, split_digits

__all__ = ["accuracy_runs", "run_state_formats", "speed_sweep"]

SIZES = tuple(2**k for k in range(12, 25, 2))
SWEEP_BUDGET = Budget(seconds=0.25, min_n=3, max_n=2000, warmup=2, warmup_s=0.05, blocks=6)
LR = 3e-3


def speed_sweep(
    sizes: Sequence[int] = SIZES, threads: int = 2, budget: Budget = SWEEP_BUDGET
) -> dict[str, list[float]]:
    """ns per parameter of one Adam step per state format and of the 20/28-byte rooflines, for
    one tensor of each size (timed interleaved per size)."""
    out: dict[str, list[float]] = {k: [] for k in (*FORMATS, "roofline20", "roofline28")}
    old = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        for n in sizes:
            rng = np.random.default_rng(n)
            p = rng.standard_normal(n, dtype=np.float32)
            g = [rng.standard_normal(n, dtype=np.float32) * np.float32(0.01)]
            fns: dict[str, Callable[[], Any]] = {f: make_adam(f, [p.copy()], g)[0] for f in FORMATS}
            for k, roof in ((1, "roofline20"), (2, "roofline28")):
                fns[roof] = _roofline_step(
                    [p.copy()], g, [[np.zeros(n, np.float32)] for _ in range(k)]
                )
            for name, t in measure(fns, budget).items():
                out[name].append(t.median_ns / n)
    finally:
        fo.set_num_threads(old)
    return out


def _roofline_step(
    params: list[np.ndarray], grads: list[np.ndarray], states: list[list[np.ndarray]]
) -> Callable[[], None]:
    return lambda: fo._native.roofline_step(params, grads, *states)


def _mlp(seed: int) -> fo.nn.Sequential:
    rng = np.random.default_rng(seed)
    nn = fo.nn
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128, rng=rng),
        nn.ReLU(),
        nn.Linear(128, 128, rng=rng),
        nn.ReLU(),
        nn.Linear(128, 10, rng=rng),
    )


def _optimizer(fmt: str, params: list[np.ndarray]) -> fo.optim.Optimizer:
    if fmt == "8bit":
        return fo.optim.AdamW8bit(params, lr=LR)
    state_dtype = "bfloat16" if fmt == "bfloat16" else None
    return fo.optim.AdamW(params, lr=LR, state_dtype=state_dtype)


def accuracy_runs(
    seeds: Sequence[int] = range(5), epochs: int = 15, progress: bool = True
) -> list[dict[str, Any]]:
    """Test accuracy of the demo CNN and the MLP trained with AdamW in each state format."""
    x, y = load_digits_nchw()
    rows = []
    for model_name, build in (("CNN", demo_cnn), ("MLP", _mlp)):
        for fmt in FORMATS:
            scores = []
            for seed in seeds:
                parts = split_digits(x, y, seed=seed)
                model = build(seed)
                started = time.perf_counter()
                fo.train.fit(
                    model,
                    fo.nn.CrossEntropyLoss(),
                    _optimizer(fmt, model.parameters()),
                    parts.x_train,
                    parts.y_train,
                    epochs=epochs,
                    batch_size=64,
                    progress=False,
                    seed=seed,
                )
                scores.append(accuracy(model, parts.x_test, parts.y_test))
                if progress:
                    print(
                        f"{model_name} {fmt:>8} seed {seed}: test accuracy "
                        f"{100 * scores[-1]:.2f}% ({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
            rows.append({"model": model_name, "state": fmt, "accuracy": scores})
    return rows


def accuracy_table(rows: Sequence[dict[str, Any]]) -> str:
    """Mean, standard deviation and range of the test accuracy, and the gap to float32."""
    lines = [
        "| model | state | test accuracy (mean ± sd) | min - max | vs float32 |",
        "|:--|:--|--:|--:|--:|",
    ]
    base = {r["model"]: np.mean(r["accuracy"]) for r in rows if r["state"] == "float32"}
    for r in rows:
        a = 100 * np.asarray(r["accuracy"])
        # rounded first, + 0.0: a gap of a few ulps either way (the same accuracies summed in
        # another order) shows as +0.00, not -0.00
        gap = round(a.mean() - 100 * base[r["model"]], 2) + 0.0
        lines.append(
            f"| {r['model']} | {r['state']} | {a.mean():.2f}% ± {a.std(ddof=1):.2f} "
            f"| {a.min():.2f} - {a.max():.2f} | {gap:+.2f} pp |"
        )
    return "\n".join(lines)


def plot(speed: dict[str, list[float]], sizes: Sequence[int], rows: Sequence[dict], path: Path):
    """The two panels (see the module docstring) into ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    for fmt, label in zip(FORMATS, ("float32 state", "bfloat16 state", "8-bit state"), strict=True):
        ax.loglog(sizes, speed[fmt], "o-", label=f"Adam, {label}")
    ax.loglog(sizes, speed["roofline28"], "k--", lw=1, label="roofline 28 B/elem")
    ax.loglog(sizes, speed["roofline20"], "k-.", lw=1, label="roofline 20 B/elem")
    ax.loglog(sizes, np.asarray(speed["roofline20"]) * 16 / 20, "k:", lw=1, label="16 B/elem")
    ax.set_xlabel("parameters in the tensor")
    ax.set_ylabel("ns per parameter per step")
    ax.set_title("Adam step cost by state format", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.25
    for k, fmt in enumerate(FORMATS):
        acc = [100 * np.asarray(r["accuracy"]) for m in models for r in rows
               if r["model"] == m and r["state"] == fmt]  # fmt: skip
        xs = np.arange(len(models)) + (k - 1) * width
        ax.bar(xs, [a.mean() for a in acc], width, yerr=[a.std(ddof=1) for a in acc], label=fmt)
    ax.set_xticks(np.arange(len(models)), models)
    lows = [100 * min(r["accuracy"]) for r in rows]
    ax.set_ylim(max(0.0, min(lows) - 3), 100)
    ax.set_ylabel("test accuracy (%), mean ± sd over seeds")
    ax.set_title("digits, AdamW", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run_state_formats(
    *, epochs: int = 15, seeds: int = 5, plot_path: str | None = "ferroptim-state-formats.png"
) -> dict[str, Any]:
    """Measure both panels, print the tables, draw the figure."""
    speed = speed_sweep()
    print("| tensor size | " + " | ".join(f"{k} ns/param" for k in speed) + " |")
    print("|--:|" + "--:|" * len(speed))
    for i, n in enumerate(SIZES):
        print(f"| {n:,} | " + " | ".join(f"{speed[k][i]:.3f}" for k in speed) + " |")
    rows = accuracy_runs(range(seeds), epochs)
    print()
    print(accuracy_table(rows))
    if plot_path:
        plot(speed, SIZES, rows, Path(plot_path))
        print(f"\nfigure: {plot_path}")
    return {"sizes": list(SIZES), "speed": speed, "accuracy": rows}

"""Training-step benchmark (rows for the ``bench`` command): where one step's time goes.

For a small CNN on 8x8 images (the demo's model, batch 64) and the MLP of the nn contract
(Linear(64, 128), BatchNorm1d, ReLU, Dropout, Linear(128, 10); batch 64),
float32, the parts of one training step are timed interleaved in the same run:

* ``forward``: ``model(x)`` in training mode;
* ``loss+backward``: ``loss_fn(out, y)``, ``loss_fn.backward()`` and ``model.backward`` (after
  a forward, which is not counted);
* ``optimizer (native)`` / ``optimizer (reference)``: ``Adam.step(model.gradients())`` with the
  Rust kernels / the NumPy reference;
* ``full step``: zero_grad + forward + loss + backward + native Adam step.

Numbers are medians; the optimizer's share is its time over the full step's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.bench.table import fmt_time, markdown_table
from ferroptim.bench.timing import Budget, kernel_threads, measure

__all__ = ["MODELS", "run_training_bench", "training_markdown"]

FULL_BUDGET = Budget(seconds=0.4, min_n=20, max_n=5000, warmup=5, warmup_s=0.05, blocks=10)
QUICK_BUDGET = Budget(seconds=0.02, min_n=2, max_n=20, warmup=1, warmup_s=0.0, blocks=2)
BATCH = 64


def _cnn() -> tuple[fo.nn.Module, tuple[int, ...]]:
    from ferroptim.demo.digits import small_cnn

    return small_cnn(seed=0), (BATCH, 1, 8, 8)


def _mlp() -> tuple[fo.nn.Module, tuple[int, ...]]:
    """The MLP of the nn contract: Linear(64, 128), BatchNorm1d, ReLU, Dropout(0.2), Linear."""
    rng = np.random.default_rng(0)
    nn = fo.nn
    model = nn.Sequential(
        nn.Linear(64, 128, rng=rng), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2, seed=0),
        nn.Linear(128, 10, rng=rng),
    )  # fmt: skip
    return model, (BATCH, 64)


#: name -> builder of (model, input shape)
MODELS: dict[str, Callable[[], tuple[fo.nn.Module, tuple[int, ...]]]] = {
    "cnn (demo, 8x8)": _cnn,
    "mlp 64-128(BN, dropout)-10": _mlp,
}


def _model_rows(name: str, budget: Budget, seed: int) -> list[dict[str, Any]]:
    model, shape = MODELS[name]()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, size=BATCH)
    loss_fn = fo.nn.CrossEntropyLoss()
    native = fo.optim.Adam(model.parameters(), lr=1e-4)
    reference = fo.optim.Adam([p.copy() for p in model.parameters()], lr=1e-4, backend="reference")
    model.train()

    def backward() -> None:
        out = model(x)
        loss_fn(out, y)
        model.backward(loss_fn.backward())

    def full_step() -> None:
        model.zero_grad()
        backward()
        native.step(model.gradients())

    backward()
    grads = [None if g is None else g.copy() for g in model.gradients()]
    forward_only = measure({"forward": lambda: model(x)}, budget)["forward"].median_ns
    timings = measure(
        {
            "forward+loss+backward": backward,
            "optimizer (native)": lambda: native.step(grads),
            "optimizer (reference)": lambda: reference.step(grads),
            "full step": full_step,
        },
        budget,
    )
    step_ns = timings["full step"].median_ns
    parts = {"forward": forward_only, "loss+backward": 0.0}
    parts["loss+backward"] = timings["forward+loss+backward"].median_ns - forward_only
    for key in ("optimizer (native)", "optimizer (reference)", "full step"):
        parts[key] = timings[key].median_ns
    return [
        {
            "model": name,
            "params": model.num_parameters(),
            "tensors": len(model.parameters()),
            "part": part,
            "median_us": ns / 1e3,
            "share_of_step": ns / step_ns,
        }
        for part, ns in parts.items()
    ]


def run_training_bench(
    models: Sequence[str] = tuple(MODELS), *, threads: int = 2, quick: bool = False, seed: int = 0
) -> list[dict[str, Any]]:
    """Time the parts of a training step of each model; one row per (model, part) with
    ``median_us`` and ``share_of_step`` (time over the full native step's time)."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown training models {unknown}; choose from {list(MODELS)}")
    with kernel_threads(threads):
        budget = QUICK_BUDGET if quick else FULL_BUDGET
        return [row for name in models for row in _model_rows(name, budget, seed)]


def training_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`run_training_bench` as one markdown table per model."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        out.append(
            f"\ntraining step, {model}: {group[0]['params']:,} params in {group[0]['tensors']} "
            f"tensors, batch {BATCH}, float32, Adam; µs, medians\n"
        )
        cells = [
            [r["part"], fmt_time(r["median_us"]), f"{100 * r['share_of_step']:.0f}%"] for r in group
        ]
        out.append(markdown_table(cells, ["part", "µs", "of full step"]))
    return "\n".join(out) + "\n"

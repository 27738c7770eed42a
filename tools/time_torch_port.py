"""Time one training step of examples/torch_port/train_ferroptim.py (batch 64), and its parts.

Usage: python tools/time_torch_port.py [repeats]. Prints medians in microseconds; the machine is
shared, so compare figures from one run only.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import ferroptim as fo


def median_us(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main(repeats: int = 2000) -> None:
    fo.manual_seed(0)
    rng = np.random.default_rng(0)
    xb = rng.normal(size=(64, 20)).astype(np.float32)
    yb = rng.integers(0, 4, 64)
    model = fo.nn.Sequential(
        fo.nn.Linear(20, 64),
        fo.nn.BatchNorm1d(64),
        fo.nn.ReLU(),
        fo.nn.Dropout(0.2),
        fo.nn.Linear(64, 4),
    )
    loss_fn = fo.nn.CrossEntropyLoss()
    opt = fo.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)

    def forward_backward() -> None:
        opt.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())

    def step(how: str) -> Callable[[], None]:
        def run() -> None:
            forward_backward()
            fo.clip.clip_grad_norm_(model, 1.0)
            if how == "model":
                opt.step(model)
            elif how == "none":
                opt.step()
            else:
                opt.step(model.gradients())

        return run

    rows = {
        "full step, opt.step(model)": step("model"),
        "full step, opt.step()": step("none"),
        "full step, opt.step(model.gradients())": step("list"),
        "zero_grad + forward + loss + backward": forward_backward,
        "clip_grad_norm_(model, 1.0)": lambda: fo.clip.clip_grad_norm_(model, 1.0),
        "opt.step(model)": lambda: opt.step(model),
        "opt.step(model.gradients())": lambda: opt.step(model.gradients()),
    }
    for name, fn in rows.items():
        print(f"{name:45s} {median_us(fn, repeats):8.1f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

"""Time one training step of the torch port (examples/torch_port, batch 64): torch vs ferroptim.

Usage::

    python tools/time_torch_port.py [--repeats N]                   # ferroptim, step and parts
    python tools/time_torch_port.py --torch-python /path/to/python  # both, side by side

A step is what the scripts' inner loop does: zero_grad, forward, loss, backward,
``clip_grad_norm_(…, 1.0)``, the optimizer step (AdamW, lr 1e-2, weight decay 1e-2) on
``Linear(20, 64) - BatchNorm1d - ReLU - Dropout(0.2) - Linear(64, 4)`` in float32. With
``--torch-python`` (an interpreter that has torch; torch is never a ferroptim dependency) the two
sides run in child processes, alternately for ``--rounds`` rounds (ferroptim first), and each
figure is the median over all rounds' steps. Prints medians in microseconds; the machine may be
shared, so compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

BATCH, FEATURES, CLASSES = 64, 20, 4


def step_times(fn: Callable[[], object], repeats: int, warmup: int = 20) -> list[float]:
    """``repeats`` timings of ``fn()`` in microseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(BATCH, FEATURES)).astype(np.float32), rng.integers(0, CLASSES, BATCH)


def ferroptim_rows() -> dict[str, Callable[[], object]]:
    import ferroptim as fo

    fo.manual_seed(0)
    xb, yb = batch()
    model = fo.nn.Sequential(
        fo.nn.Linear(FEATURES, 64),
        fo.nn.BatchNorm1d(64),
        fo.nn.ReLU(),
        fo.nn.Dropout(0.2),
        fo.nn.Linear(64, CLASSES),
    )
    loss_fn = fo.nn.CrossEntropyLoss()
    opt = fo.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)

    def forward_backward() -> None:
        opt.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())

    def full_step() -> None:
        forward_backward()
        fo.clip.clip_grad_norm_(model, 1.0)
        opt.step(model)

    return {
        "step": full_step,
        "zero_grad + forward + loss + backward": forward_backward,
        "clip_grad_norm_": lambda: fo.clip.clip_grad_norm_(model, 1.0),
        "optimizer step": lambda: opt.step(model),
        "optimizer step, opt.step(model.gradients())": lambda: opt.step(model.gradients()),
    }


def torch_rows(threads: int | None) -> dict[str, Callable[[], object]]:
    import torch
    from torch import nn

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    xb, yb = (torch.as_tensor(a) for a in batch())
    model = nn.Sequential(
        nn.Linear(FEATURES, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 4)
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)

    def forward_backward() -> None:
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()

    def full_step() -> None:
        forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return {
        "step": full_step,
        "zero_grad + forward + loss + backward": forward_backward,
        "clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0),
        "optimizer step": opt.step,
    }


def side_info(side: str) -> str:
    if side == "torch":
        import torch

        return f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    import ferroptim

    return f"ferroptim {getattr(ferroptim, '__version__', '?')}"


def measure(side: str, repeats: int, threads: int | None = None) -> dict[str, object]:
    rows = torch_rows(threads) if side == "torch" else ferroptim_rows()
    return {
        "info": side_info(side),
        "times": {name: step_times(fn, repeats) for name, fn in rows.items()},
    }


def child(python: str, side: str, repeats: int, threads: int | None) -> dict[str, object]:
    """Measure ``side`` in a child process running ``python``."""
    extra = [] if threads is None else ["--torch-threads", str(threads)]
    out = subprocess.run(
        [python, __file__, "--side", side, "--repeats", str(repeats), *extra],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    return json.loads(out.stdout)


def compare(torch_python: str, repeats: int, rounds: int, threads: int | None) -> None:
    times: dict[str, dict[str, list[float]]] = {"ferroptim": {}, "torch": {}}
    info = {}
    for _ in range(rounds):
        for side, python in (("ferroptim", sys.executable), ("torch", torch_python)):
            result = child(python, side, repeats, threads)
            info[side] = result["info"]
            for name, values in result["times"].items():  # type: ignore[union-attr]
                times[side].setdefault(name, []).extend(values)
    print(f"{rounds} rounds x {repeats} steps per side, alternating; medians in us")
    print(f"  {info['ferroptim']}; {info['torch']}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':45s} {'torch':>9s} {'ferroptim':>9s} {'ratio':>6s}")
    for name in times["ferroptim"]:
        fo_median = statistics.median(times["ferroptim"][name])
        if name in times["torch"]:
            th_median = statistics.median(times["torch"][name])
            ratio = f"{th_median / fo_median:6.2f}"
            print(f"{name:45s} {th_median:9.1f} {fo_median:9.1f} {ratio}")
        else:
            print(f"{name:45s} {'':9s} {fo_median:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (comparison)")
    parser.add_argument("--torch-python", help="an interpreter with torch: compare both")
    parser.add_argument(
        "--torch-threads", type=int, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument("--side", choices=("ferroptim", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.repeats, args.torch_threads)))
    elif args.torch_python:
        compare(args.torch_python, args.repeats, args.rounds, args.torch_threads)
    else:
        result = measure("ferroptim", args.repeats)
        for name, values in result["times"].items():  # type: ignore[union-attr]
            print(f"{name:45s} {statistics.median(values):8.1f} us")


if __name__ == "__main__":
    main()

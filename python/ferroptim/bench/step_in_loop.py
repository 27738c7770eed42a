"""Why an optimizer step costs more inside a training loop than back to back (rows for the
``training`` section of the ``bench`` command).

On the demo's CNN (batch 64, native Adam), each row times ``Adam.step`` in one situation, all
interleaved round by round in the same run, so that one cause differs between two rows:

* ``in loop``: right after ``zero_grad``, forward, loss and backward, as in training;
* ``in loop, step(model)``: the same, the gradients found in the model (``opt.step(model)``);
* ``in loop, arrays re-read first``: the same, but the step's parameter, gradient and state
  arrays are read (untimed) just before: what is left is not the step's data being out of cache;
* ``back to back``: the step repeated on the same gradients (caches warm);
* ``back to back, caches flushed``: after writing a 16 MB buffer (more than the L2 of every core),
  with nothing else between steps: all caches cold, no layers run;
* ``1-element step in loop`` / ``1-element step back to back``: an Adam on one float32 parameter
  (no data to speak of): the fixed cost of the call path (Python wrapper, argument checks, the
  native call), cold after the layers ran and warm;
* ``in loop, 1 kernel thread``: as ``in loop`` with one kernel thread (no pool, no helper thread).

The demo's step (6,186 elements) is below the size that uses the helper thread or the pool
(``ferroptim._native.ASSIST_MIN_ELEMENTS``), so thread wake-up and the helper's spin window can
only matter through the layers' own kernels; the last row shows whether they do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.bench.table import fmt_time, markdown_table
from ferroptim.bench.timing import kernel_threads

__all__ = ["run_step_in_loop_bench", "step_in_loop_markdown"]

#: bytes written between steps to evict the caches (more than the L2 of both cores)
FLUSH_BYTES = 16 << 20
FULL_ROUNDS = 200
QUICK_ROUNDS = 3


def _touch(opt: fo.optim.Optimizer, grads: list[np.ndarray | None]) -> None:
    """Read every array a step of ``opt`` reads."""
    arrays = [p for g in opt.param_groups for p in g["params"]]
    arrays += [g for g in grads if g is not None]
    arrays += [a for st in opt._group_states for lst in st.arrays.values() for a in lst]
    for a in arrays:
        a.sum()


def run_step_in_loop_bench(
    *, threads: int = 2, quick: bool = False, seed: int = 0
) -> list[dict[str, Any]]:
    """Time the demo CNN's Adam step in the situations of the module docstring; one row per
    situation with ``situation``, ``median_us`` and ``p25_us``."""
    from ferroptim.demo.digits import small_cnn

    with kernel_threads(threads):
        model = small_cnn(seed=0)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, size=64)
        loss_fn = fo.nn.CrossEntropyLoss()
        opt = fo.optim.Adam(model.parameters(), lr=1e-4)
        tiny = fo.optim.Adam([np.zeros(1, np.float32)], lr=1e-4)
        tiny_grads = [np.zeros(1, np.float32)]
        flush = np.zeros(FLUSH_BYTES, np.uint8)

        def layers() -> list[np.ndarray | None]:
            model.zero_grad()
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            return model.gradients()

        layers()
        opt.step(model.gradients())
        fixed = [None if g is None else g.copy() for g in model.gradients()]
        times: dict[str, list[int]] = {}

        def timed(name: str, step: Callable[[Any], None], grads: Any) -> None:
            start = time.perf_counter_ns()
            step(grads)
            times.setdefault(name, []).append(time.perf_counter_ns() - start)

        def one_thread_step() -> None:
            fo.set_num_threads(1)
            grads = layers()
            timed("in loop, 1 kernel thread", opt.step, grads)
            fo.set_num_threads(threads)

        for _ in range(QUICK_ROUNDS if quick else FULL_ROUNDS):
            grads = layers()
            timed("in loop", opt.step, grads)
            layers()
            timed("in loop, step(model)", opt.step, model)
            grads = layers()
            _touch(opt, grads)
            timed("in loop, arrays re-read first", opt.step, grads)
            for _ in range(3):
                opt.step(fixed)
            timed("back to back", opt.step, fixed)
            flush += 1
            timed("back to back, caches flushed", opt.step, fixed)
            layers()
            timed("1-element step in loop", tiny.step, tiny_grads)
            for _ in range(3):
                tiny.step(tiny_grads)
            timed("1-element step back to back", tiny.step, tiny_grads)
            one_thread_step()
        return [
            {
                "situation": name,
                "median_us": statistics.median(ns) / 1e3,
                "p25_us": float(np.percentile(ns, 25)) / 1e3,
            }
            for name, ns in times.items()
        ]


def step_in_loop_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`run_step_in_loop_bench` as a markdown table."""
    cells = [[r["situation"], fmt_time(r["median_us"]), fmt_time(r["p25_us"])] for r in rows]
    return (
        "\nAdam step of the demo CNN (6,186 params, 10 tensors) by situation; µs\n\n"
        + markdown_table(cells, ["situation", "median", "p25"])
        + "\n"
    )

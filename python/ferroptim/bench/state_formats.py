"""Optimizer state formats benchmark (rows for ``bench --sections state_formats``).

On each workload, timed interleaved in the same run (medians of per-call samples):

* Adam with float32 state (28 bytes per element per step: read p, g, m, v; write p, m, v);
* Adam with bfloat16 state and stochastic rounding (20 bytes: m and v are 2 bytes each);
* Adam with 8-bit blockwise state, ``min_8bit_size`` 4096 as in bitsandbytes (about 16 bytes:
  1-byte codes, plus a float32 absmax per 256 elements; smaller tensors keep float32 state);
* AdamW (decoupled weight decay 0.01) with bfloat16 state;
* the roofline kernels moving 20 and 28 bytes per element (``roofline_step`` with 1 and 2 state
  arrays), which do no arithmetic: the speed limit of each traffic volume on this machine;
* if PyTorch happens to be importable (never a dependency), ``torch.optim.Adam(fused=True)`` with
  float32 state on copies of the same arrays, as an anchor.

State bytes per parameter are measured from the arrays each format allocates. Every state list
(the roofline kernels' too) is laid out as the optimizer classes lay out one state name: views of
one allocation (``_flat_layout.packed_copies``); parameters and gradients are separate arrays.

Two timings: :func:`~ferroptim.bench.timing.measure`'s interleaved blocks (several calls of one
function back to back), and one step of each ferroptim function in turn
(:func:`~ferroptim.bench.timing.measure_call_by_call`), where no step follows itself. They differ
where the last-level cache holds much of a workload (this machine kind has a 260 MB L3 against the
transformer's 165 MB of bfloat16-step arrays): back to back, a kernel finds part of its arrays
still cached, and the roofline kernels, with no arithmetic, gain the most from that; call by call,
every step starts as in training, after other work. Every timed function has its own copies of
the parameters and gradients, so no call finds arrays another function just touched. torch is
left out of the call-by-call rounds: its OpenMP threads keep spinning after its step and would
slow whichever call comes next.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim import _native
from ferroptim._flat_layout import packed_copies
from ferroptim.bench.configs import Roofline
from ferroptim.bench.table import fmt_ratio, fmt_time, markdown_table
from ferroptim.bench.timing import Budget, kernel_threads, measure, measure_call_by_call
from ferroptim.bench.workloads import WORKLOADS

__all__ = ["FORMATS", "make_adam", "run_state_formats_bench", "state_formats_markdown"]

FORMATS = ("float32", "bfloat16", "8bit")
BLOCK = 256
MIN_8BIT_SIZE = 4096
HYPER: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                             amsgrad=False, maximize=False,
                             decoupled_weight_decay=False)  # fmt: skip

FULL_BUDGET = Budget(seconds=0.5, min_n=5, max_n=2000, warmup=3, warmup_s=0.1, blocks=10)
QUICK_BUDGET = Budget(seconds=0.02, min_n=2, max_n=10, warmup=1, warmup_s=0.0, blocks=2)
#: Rounds of the call-by-call timing (one call of each function per round).
FULL_ROUNDS, QUICK_ROUNDS = 30, 2


def _copies(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Fresh copies of ``arrays``, so each timed function has arrays of its own."""
    return [a.copy() for a in arrays]


def make_adam(
    fmt: str, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]
) -> tuple[Callable[[], None], int]:
    """A closure doing one Adam step with ``fmt`` state on ``params``, and its state bytes."""
    steps = np.zeros(len(params), np.int64)
    if fmt == "float32":
        m, v = (packed_copies([np.zeros_like(p) for p in params]) for _ in range(2))
        nbytes = sum(a.nbytes for a in m + v)
        return lambda: _native.adam_step(params, grads, m, v, None, steps, **HYPER), nbytes
    if fmt == "bfloat16":
        m16, v16 = (packed_copies([np.zeros(p.shape, np.uint16) for p in params]) for _ in range(2))
        nbytes = sum(a.nbytes for a in m16 + v16)
        kw = dict(HYPER, stochastic_rounding=True, seed=0, stream_offset=0)
        return lambda: _native.adam_step_bf16(params, grads, m16, v16, None, steps, **kw), nbytes
    if fmt != "8bit":
        raise ValueError(f"unknown state format {fmt!r}; choose from {FORMATS}")
    big = [i for i, p in enumerate(params) if p.size >= MIN_8BIT_SIZE]
    small = [i for i, p in enumerate(params) if p.size < MIN_8BIT_SIZE]
    small_step, small_bytes = make_adam(
        "float32", [params[i] for i in small], [grads[i] for i in small]
    )
    bp, bg = [params[i] for i in big], [grads[i] for i in big]
    codes = [packed_copies([np.zeros(p.shape, np.uint8) for p in bp]) for _ in range(2)]
    absmax = [
        packed_copies([np.zeros(-(-p.size // BLOCK), np.float32) for p in bp]) for _ in range(2)
    ]
    big_steps = np.zeros(len(bp), np.int64)
    nbytes = small_bytes + sum(a.nbytes for lst in codes + absmax for a in lst)

    def step() -> None:
        _native.adam_step_8bit(bp, bg, codes[0], absmax[0], codes[1], absmax[1], None, None,
                               big_steps, **HYPER)  # fmt: skip
        if small:
            small_step()

    return step, nbytes


def _adamw_bf16(params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> Callable[[], None]:
    """AdamW (weight decay 0.01) with bfloat16 state and stochastic rounding."""
    steps = np.zeros(len(params), np.int64)
    m16, v16 = (packed_copies([np.zeros(p.shape, np.uint16) for p in params]) for _ in range(2))
    kw = dict(HYPER, weight_decay=0.01, decoupled_weight_decay=True, stochastic_rounding=True,
              seed=0, stream_offset=0)  # fmt: skip
    return lambda: _native.adam_step_bf16(params, grads, m16, v16, None, steps, **kw)


def _torch_fused_adam(
    params: Sequence[np.ndarray], grads: Sequence[np.ndarray], threads: int
) -> Callable[[], None] | None:
    """``torch.optim.Adam(fused=True)`` on copies of the arrays, or None without PyTorch."""
    try:  # an optional anchor, never a dependency
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    torch.set_num_threads(threads)
    tensors = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.from_numpy(g.copy())
    opt = torch.optim.Adam(tensors, lr=HYPER["lr"], fused=True)
    return opt.step


def run_state_formats_bench(
    workloads: Sequence[str] = ("transformer", "single"),
    *,
    threads: int = 2,
    quick: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per workload: median ms per step of each format and of the 20/28-byte rooflines,
    and the state bytes per parameter of each format."""
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    rows = []
    with kernel_threads(threads):
        for name in workloads:
            workload = WORKLOADS[name]
            params, grads = workload.make_arrays(seed)
            grads = [g * np.float32(0.01) for g in grads]
            fns, state_bytes = {}, {}
            for fmt in FORMATS:
                fns[fmt], state_bytes[fmt] = make_adam(fmt, _copies(params), _copies(grads))
            fns["bfloat16_adamw"] = _adamw_bf16(_copies(params), _copies(grads))
            # Roofline copies the parameters itself.
            fns["roofline20"] = Roofline(params, _copies(grads)).step_fn(1)
            fns["roofline28"] = Roofline(params, _copies(grads)).step_fn(2)
            ours = dict(fns)
            torch_step = _torch_fused_adam(params, grads, threads)
            if torch_step is not None:
                fns["torch_fused"] = torch_step
            timings = measure(fns, budget)
            ms = {k: t.median_ns / 1e6 for k, t in timings.items()}
            alternated = measure_call_by_call(ours, QUICK_ROUNDS if quick else FULL_ROUNDS)
            rows.append(
                {
                    "workload": name,
                    "n_params": workload.n_params,
                    "threads": threads,
                    "ms": ms,
                    "ms_call_by_call": {k: t.median_ns / 1e6 for k, t in alternated.items()},
                    "state_bytes_per_param": {
                        f: state_bytes[f] / workload.n_params for f in FORMATS
                    },
                }
            )
            del params, grads, fns
            gc.collect()
    return rows


def _pct(ms: dict[str, float], roof: str | None, key: str) -> str:
    """``key``'s time as a share of the roofline kernel ``roof`` in ``ms``, or "-"."""
    return f"{ms[roof] / ms[key] * 100:.1f}%" if roof and key in ms else "-"


def state_formats_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The section's table: time per step, speed-up over float32 state, share of the roofline
    of the same traffic (from the blocked and from the call-by-call timing), and state bytes per
    parameter."""
    header = [
        "workload",
        "state",
        "B/elem",
        "ms/step",
        "vs float32",
        "% of roofline",
        "% of roofline, call by call",
        "state B/param",
    ]
    traffic = {"float32": (28, "roofline28"), "bfloat16": (20, "roofline20"), "8bit": (16, None)}
    entries = [(fmt, fmt, traffic[fmt][0], traffic[fmt][1], fmt) for fmt in FORMATS]
    entries += [
        ("bfloat16_adamw", "bfloat16 AdamW", 20, "roofline20", "bfloat16"),
        ("torch_fused", "torch fused Adam (float32)", 28, "roofline28", "float32"),
    ]
    out = []
    for r in rows:
        ms, alt = r["ms"], r["ms_call_by_call"]
        for key, label, nbytes, roof, state in entries:
            if key not in ms:
                continue  # torch only when it is importable
            out.append(
                [
                    r["workload"],
                    label,
                    f"~{nbytes}" if key == "8bit" else str(nbytes),
                    fmt_time(ms[key]),
                    fmt_ratio(ms["float32"] / ms[key]),
                    _pct(ms, roof, key),
                    _pct(alt, roof, key),
                    f"{r['state_bytes_per_param'][state]:.3f}",
                ]
            )
        for roof, nbytes in (("roofline20", 20), ("roofline28", 28)):
            out.append([r["workload"], f"roofline {nbytes} B", str(nbytes), fmt_time(ms[roof]),
                        fmt_ratio(ms["float32"] / ms[roof]), "-", "-", "-"])  # fmt: skip
    threads = rows[0]["threads"] if rows else 0
    title = (
        f"Adam with float32, bfloat16 and 8-bit state ({threads} threads, medians of interleaved "
        "steps in one run; call by call: one step of each ferroptim function in turn, so no step "
        "follows itself)\n\n"
    )
    return title + markdown_table(out, header) + "\n"

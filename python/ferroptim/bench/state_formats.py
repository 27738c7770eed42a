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

State bytes per parameter are measured from the arrays each format allocates.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim import _native
from ferroptim.bench.configs import Roofline
from ferroptim.bench.table import fmt_ratio, fmt_time, markdown_table
from ferroptim.bench.timing import Budget, kernel_threads, measure
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


def make_adam(
    fmt: str, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]
) -> tuple[Callable[[], None], int]:
    """A closure doing one Adam step with ``fmt`` state on ``params``, and its state bytes."""
    steps = np.zeros(len(params), np.int64)
    if fmt == "float32":
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        nbytes = sum(a.nbytes for a in m + v)
        return lambda: _native.adam_step(params, grads, m, v, None, steps, **HYPER), nbytes
    if fmt == "bfloat16":
        m16 = [np.zeros(p.shape, np.uint16) for p in params]
        v16 = [np.zeros(p.shape, np.uint16) for p in params]
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
    codes = [[np.zeros(p.shape, np.uint8) for p in bp] for _ in range(2)]
    absmax = [[np.zeros(-(-p.size // BLOCK), np.float32) for p in bp] for _ in range(2)]
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
    m16, v16 = ([np.zeros(p.shape, np.uint16) for p in params] for _ in range(2))
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
                fns[fmt], state_bytes[fmt] = make_adam(fmt, [p.copy() for p in params], grads)
            fns["bfloat16_adamw"] = _adamw_bf16([p.copy() for p in params], grads)
            fns["roofline20"] = Roofline(params, grads).step_fn(1)
            fns["roofline28"] = Roofline(params, grads).step_fn(2)
            torch_step = _torch_fused_adam(params, grads, threads)
            if torch_step is not None:
                fns["torch_fused"] = torch_step
            timings = measure(fns, budget)
            ms = {k: t.median_ns / 1e6 for k, t in timings.items()}
            rows.append(
                {
                    "workload": name,
                    "n_params": workload.n_params,
                    "threads": threads,
                    "ms": ms,
                    "state_bytes_per_param": {
                        f: state_bytes[f] / workload.n_params for f in FORMATS
                    },
                }
            )
            del params, grads, fns
            gc.collect()
    return rows


def state_formats_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The section's table: time per step, speed-up over float32 state, share of the roofline
    of the same traffic, and state bytes per parameter."""
    header = [
        "workload",
        "state",
        "B/elem",
        "ms/step",
        "vs float32",
        "% of roofline",
        "state B/param",
    ]
    traffic = {"float32": (28, "roofline28"), "bfloat16": (20, "roofline20"), "8bit": (16, None)}
    out = []
    for r in rows:
        ms = r["ms"]
        for fmt in FORMATS:
            nbytes, roof = traffic[fmt]
            pct = f"{ms[roof] / ms[fmt] * 100:.1f}%" if roof else "-"
            out.append(
                [
                    r["workload"],
                    fmt,
                    f"~{nbytes}" if fmt == "8bit" else str(nbytes),
                    fmt_time(ms[fmt]),
                    fmt_ratio(ms["float32"] / ms[fmt]),
                    pct,
                    f"{r['state_bytes_per_param'][fmt]:.3f}",
                ]
            )
        out.append([r["workload"], "bfloat16 AdamW", "20", fmt_time(ms["bfloat16_adamw"]),
                    fmt_ratio(ms["float32"] / ms["bfloat16_adamw"]),
                    f"{ms['roofline20'] / ms['bfloat16_adamw'] * 100:.1f}%",
                    f"{r['state_bytes_per_param']['bfloat16']:.3f}"])  # fmt: skip
        if "torch_fused" in ms:
            out.append([r["workload"], "torch fused Adam (float32)", "28",
                        fmt_time(ms["torch_fused"]), fmt_ratio(ms["float32"] / ms["torch_fused"]),
                        f"{ms['roofline28'] / ms['torch_fused'] * 100:.1f}%", "8.000"])  # fmt: skip
        for roof, nbytes in (("roofline20", 20), ("roofline28", 28)):
            out.append([r["workload"], f"roofline {nbytes} B", str(nbytes), fmt_time(ms[roof]),
                        fmt_ratio(ms["float32"] / ms[roof]), "-", "-"])  # fmt: skip
    threads = rows[0]["threads"] if rows else 0
    title = (
        f"Adam with float32, bfloat16 and 8-bit state ({threads} threads, medians of interleaved "
        "steps in one run)\n\n"
    )
    return title + markdown_table(out, header) + "\n"

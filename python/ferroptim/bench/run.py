"""The benchmark driver and its command line (``python -m ferroptim bench``)."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import ferroptim as fo
from ferroptim import _native
from ferroptim.bench import table
from ferroptim.bench.batchnorm import batchnorm_markdown, run_batchnorm_bench
from ferroptim.bench.clipping import clipping_markdown, run_clipping_bench
from ferroptim.bench.configs import (
    CONFIGS,
    OptimizerConfig,
    bytes_per_element,
    select,
    state_arrays,
)
from ferroptim.bench.distributed import distributed_markdown, run_distributed_bench
from ferroptim.bench.machine import header_line, machine_info
from ferroptim.bench.percall import kernel_call
from ferroptim.bench.state_formats import run_state_formats_bench, state_formats_markdown
from ferroptim.bench.step_in_loop import run_step_in_loop_bench, step_in_loop_markdown
from ferroptim.bench.timing import Budget, Timing, measure
from ferroptim.bench.training import run_training_bench, training_markdown
from ferroptim.bench.workloads import WORKLOADS, Workload
from ferroptim.nn.module import Module

MAX_ROOFLINE_STATE = 3
#: parts of the report: the optimizer table, then the other kernels' benchmarks
SECTIONS = ("optimizers", "clipping", "batchnorm", "training", "distributed", "state_formats")
#: what runs without --sections: "distributed" (mpiexec, the optional mpi4py) only on request
DEFAULT_SECTIONS = ("optimizers", "clipping", "batchnorm", "training", "state_formats")


@dataclass(frozen=True)
class Budgets:
    """Measurement budgets for throughput (large) and latency (small) workloads."""

    native: Budget
    reference: Budget
    latency_native: Budget
    latency_reference: Budget

    def pick(self, workload: Workload, reference: bool) -> Budget:
        if workload.latency:
            return self.latency_reference if reference else self.latency_native
        return self.reference if reference else self.native


FULL = Budgets(
    # Native and roofline are timed together, ~0.35 s each (~0.7-1 s per cell), alternating step
    # by step (blocks >= calls); small workloads alternate in 10 blocks so caches stay warm.
    native=Budget(seconds=0.35, min_n=5, max_n=5000, warmup=3, warmup_s=0.1, blocks=5000),
    # The NumPy reference is slow on large workloads: a median of at least 3 steps.
    reference=Budget(seconds=0.4, min_n=3, max_n=50, warmup=1, warmup_s=0.0),
    latency_native=Budget(seconds=0.3, min_n=2000, max_n=200_000, warmup=200, warmup_s=0.05),
    latency_reference=Budget(seconds=0.2, min_n=50, max_n=5000, warmup=10, warmup_s=0.02),
)
QUICK = Budgets(
    native=Budget(seconds=0.02, min_n=2, max_n=50, warmup=1, warmup_s=0.0, blocks=2),
    reference=Budget(seconds=0.0, min_n=1, max_n=1, warmup=1, warmup_s=0.0, blocks=1),
    latency_native=Budget(seconds=0.01, min_n=50, max_n=500, warmup=10, warmup_s=0.0, blocks=2),
    latency_reference=Budget(seconds=0.0, min_n=5, max_n=5, warmup=1, warmup_s=0.0, blocks=1),
)


@dataclass
class CellResult:
    """One workload x optimizer measurement."""

    workload: str
    optimizer: str
    n_params: int
    n_tensors: int
    n_state: int
    bytes_per_elem: int
    native: Timing
    roofline: Timing
    reference: Timing | None
    params_finite: bool
    #: latency workloads: the native kernel call alone and ``opt.step(model)`` (see bench.percall)
    kernel: Timing | None = None
    step_model: Timing | None = None

    @property
    def bytes_per_step(self) -> int:
        return self.bytes_per_elem * self.n_params

    @property
    def native_gbps(self) -> float:
        return self.bytes_per_step / self.native.median_ns  # bytes/ns == GB/s

    @property
    def roofline_gbps(self) -> float:
        return self.bytes_per_step / self.roofline.median_ns

    @property
    def pct_of_roofline(self) -> float:
        return self.roofline.median_ns / self.native.median_ns * 100.0

    @property
    def ref_over_native(self) -> float | None:
        if self.reference is None:
            return None
        return self.reference.median_ns / self.native.median_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "optimizer": self.optimizer,
            "n_params": self.n_params,
            "n_tensors": self.n_tensors,
            "n_state": self.n_state,
            "bytes_per_elem": self.bytes_per_elem,
            "native": self.native.summary(),
            "roofline": self.roofline.summary(),
            "reference": self.reference.summary() if self.reference is not None else None,
            "native_ms": self.native.median_ns / 1e6,
            "native_us": self.native.median_ns / 1e3,
            "roofline_ms": self.roofline.median_ns / 1e6,
            "reference_ms": (
                self.reference.median_ns / 1e6 if self.reference is not None else None
            ),
            "native_gbps": self.native_gbps,
            "roofline_gbps": self.roofline_gbps,
            "pct_of_roofline": self.pct_of_roofline,
            "ref_over_native": self.ref_over_native,
            "params_finite": self.params_finite,
            "kernel": self.kernel.summary() if self.kernel is not None else None,
            "step_model": self.step_model.summary() if self.step_model is not None else None,
        }


@dataclass
class BenchResult:
    """A whole run: machine facts, settings and every cell."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    cells: list[CellResult] = field(default_factory=list)

    @property
    def header(self) -> str:
        mode = " | quick (smoke run, numbers are rough)" if self.settings.get("quick") else ""
        return header_line(self.machine) + mode

    def markdown(self) -> str:
        return table.render(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "results": [c.to_dict() for c in self.cells],
        }


class _Roofline:
    """Arrays for roofline steps on one workload: copies of the params, shared grads, and up to
    three state lists (allocated on first use)."""

    def __init__(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self.params = [p.copy() for p in params]
        self.grads = grads
        self.states: list[list[np.ndarray]] = []

    def step_fn(self, n_state: int) -> Callable[[], None]:
        if not 0 <= n_state <= MAX_ROOFLINE_STATE:
            raise ValueError(f"roofline supports 0 to 3 state arrays, got {n_state}")
        while len(self.states) < n_state:
            self.states.append([np.zeros_like(p) for p in self.params])
        params, grads, states = self.params, self.grads, self.states[:n_state]
        step = _native.roofline_step
        return lambda: step(params, grads, *states)


def _all_finite(arrays: Sequence[np.ndarray]) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


def _restore(params: Sequence[np.ndarray], pristine: Sequence[np.ndarray]) -> None:
    for p, p0 in zip(params, pristine, strict=True):
        np.copyto(p, p0)


def _measure_optimizer(
    config: OptimizerConfig,
    backend: str,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    budget: Budget,
    roofline: _Roofline | None = None,
    model: Module | None = None,
) -> tuple[dict[str, Timing], int]:
    """Build the optimizer on ``params`` and time its step, interleaved with the roofline step
    of the same state count, if given; with ``model`` (whose parameters ``params`` are) also
    its kernel call alone and ``opt.step(model)`` (bench.percall). The optimizer and its state
    are dropped on return."""
    opt = config.build(params, backend)
    n_state = state_arrays(opt)
    fns = {backend: lambda: opt.step(grads)}
    if roofline is not None:
        fns["roofline"] = roofline.step_fn(n_state)
    if model is not None:
        fns["kernel"] = kernel_call(opt, grads)
        fns["step_model"] = lambda: opt.step(model)
    return measure(fns, budget), n_state


def run_cell(
    workload: Workload,
    config: OptimizerConfig,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    pristine: Sequence[np.ndarray],
    roofline: _Roofline,
    budgets: Budgets,
    reference: bool,
    model: Module | None = None,
) -> CellResult:
    """Time one optimizer setting on one workload: native interleaved with the roofline (and,
    given the ``model`` holding ``params``, the kernel call alone and ``opt.step(model)``), then
    the reference backend. Params are reset to ``pristine`` before each backend."""
    _restore(params, pristine)
    budget = budgets.pick(workload, reference=False)
    timings, n_state = _measure_optimizer(config, "native", params, grads, budget, roofline, model)
    finite = _all_finite(params)
    gc.collect()

    ref_timing = None
    if reference:
        _restore(params, pristine)
        ref_timings, _ = _measure_optimizer(
            config, "reference", params, grads, budgets.pick(workload, reference=True)
        )
        ref_timing = ref_timings["reference"]
        gc.collect()

    return CellResult(
        workload=workload.name,
        optimizer=config.id,
        n_params=workload.n_params,
        n_tensors=workload.n_tensors,
        n_state=n_state,
        bytes_per_elem=bytes_per_element(n_state, params[0].itemsize),
        native=timings["native"],
        roofline=timings["roofline"],
        reference=ref_timing,
        params_finite=finite,
        kernel=timings.get("kernel"),
        step_model=timings.get("step_model"),
    )


def _progress(cell: CellResult, out: TextIO | None) -> None:
    if out is None:
        return
    ref = f"{cell.reference.median_ns / 1e6:9.3f} ms" if cell.reference else "        -   "
    print(
        f"  {cell.workload:<11} {cell.optimizer:<26} native {cell.native.median_ns / 1e6:9.4f} ms"
        f"  roofline {cell.roofline.median_ns / 1e6:9.4f} ms ({cell.pct_of_roofline:5.1f}%)"
        f"  reference {ref}",
        file=out,
        flush=True,
    )


def run_bench(
    workloads: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    *,
    threads: int = 2,
    quick: bool = False,
    reference: bool = True,
    seed: int = 0,
    progress: TextIO | None = None,
) -> BenchResult:
    """Run the benchmark and return its results (nothing is printed unless ``progress``).

    ``workloads`` and ``optimizers`` name entries of :data:`WORKLOADS` and :data:`CONFIGS`
    (case-insensitive); None means all. The kernel thread count is set to ``threads`` for the
    run and restored afterwards.
    """
    workload_names = select(workloads, WORKLOADS, "workload")
    config_names = select(optimizers, CONFIGS, "optimizer")
    budgets = QUICK if quick else FULL
    old_threads = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        result = BenchResult(
            machine=machine_info(),
            settings={
                "workloads": workload_names,
                "optimizers": config_names,
                "threads": threads,
                "quick": quick,
                "reference": reference,
                "seed": seed,
                "dtype": "float32",
            },
        )
        for wname in workload_names:
            workload = WORKLOADS[wname]
            model = None
            if workload.model is not None:
                model, params, grads = workload.make_model(seed)
            else:
                params, grads = workload.make_arrays(seed)
            pristine = [p.copy() for p in params]
            roofline = _Roofline(params, grads)
            for cname in config_names:
                cell = run_cell(
                    workload,
                    CONFIGS[cname],
                    params,
                    grads,
                    pristine,
                    roofline,
                    budgets,
                    reference,
                    model,
                )
                result.cells.append(cell)
                _progress(cell, progress)
            del params, grads, pristine, roofline, model
            gc.collect()
        return result
    finally:
        fo.set_num_threads(old_threads)


def _csv(text: str) -> list[str]:
    return [s for s in (t.strip() for t in text.split(",")) if s]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument(
        "--threads", type=int, default=2, help="kernel threads (default: %(default)s)"
    )
    parser.add_argument(
        "--workloads",
        type=_csv,
        default=None,
        metavar="A,B",
        help=f"comma-separated subset of: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--optimizers",
        type=_csv,
        default=None,
        metavar="A,B",
        help=f"comma-separated subset of: {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run with few repeats (rough numbers)"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the (slow) NumPy reference backend"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random params/grads")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as markdown"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--sections",
        type=_csv,
        default=None,
        metavar="A,B",
        help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all but distributed)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``bench`` with parsed arguments: print the table, write the requested files."""
    if args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    sections = args.sections or list(DEFAULT_SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"error: unknown sections {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    text, report = "", {}
    try:
        if "optimizers" in sections:
            result = run_bench(
                args.workloads,
                args.optimizers,
                threads=args.threads,
                quick=args.quick,
                reference=not args.no_reference,
                seed=args.seed,
                progress=None if args.quiet else sys.stderr,
            )
            text += result.markdown()
            report.update(result.to_dict())
        if "clipping" in sections:
            rows = run_clipping_bench(
                "transformer", threads=args.threads, quick=args.quick, seed=args.seed
            )
            text += "\n" + clipping_markdown(rows)
            report["clipping"] = rows
        if "batchnorm" in sections:
            rows = run_batchnorm_bench(threads=args.threads, quick=args.quick, seed=args.seed)
            text += "\n" + batchnorm_markdown(rows)
            report["batchnorm"] = rows
        if "training" in sections:
            rows = run_training_bench(threads=args.threads, quick=args.quick, seed=args.seed)
            text += "\n" + training_markdown(rows)
            report["training"] = rows
            rows = run_step_in_loop_bench(threads=args.threads, quick=args.quick, seed=args.seed)
            text += step_in_loop_markdown(rows)
            report["training_step_in_loop"] = rows
        if "distributed" in sections:
            rows = run_distributed_bench("transformer", quick=args.quick)
            text += "\n" + distributed_markdown(rows)
            report["distributed"] = rows
        if "state_formats" in sections:
            rows = run_state_formats_bench(threads=args.threads, quick=args.quick, seed=args.seed)
            text += "\n" + state_formats_markdown(rows)
            report["state_formats"] = rows
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ferroptim.bench.run [options]``: the ``bench`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="ferroptim bench", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

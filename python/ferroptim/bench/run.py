"""The benchmark driver and its command line (``python -m ferroptim bench``)."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ferroptim.bench.batchnorm import batchnorm_markdown, run_batchnorm_bench
from ferroptim.bench.cells import BenchResult, CellResult
from ferroptim.bench.clipping import clipping_markdown, run_clipping_bench
from ferroptim.bench.configs import (
    CONFIGS,
    OptimizerConfig,
    Roofline,
    bytes_per_element,
    optimizer_step,
    select,
)
from ferroptim.bench.distributed import distributed_markdown, run_distributed_bench
from ferroptim.bench.machine import machine_info
from ferroptim.bench.percall import kernel_call
from ferroptim.bench.state_formats import run_state_formats_bench, state_formats_markdown
from ferroptim.bench.step_in_loop import run_step_in_loop_bench, step_in_loop_markdown
from ferroptim.bench.timing import Budget, Timing, kernel_threads, measure
from ferroptim.bench.training import run_training_bench, training_markdown
from ferroptim.bench.workloads import WORKLOADS, Workload
from ferroptim.nn.module import Module

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
    roofline: Roofline | None = None,
    model: Module | None = None,
) -> tuple[dict[str, Timing], int]:
    """Build the optimizer on ``params`` and time its step, interleaved with the roofline step
    of the same state count, if given; with ``model`` (whose parameters ``params`` are) also
    its kernel call alone and ``opt.step(model)`` (bench.percall). The optimizer and its state
    are dropped on return."""
    opt = config.build(params, backend)
    step, n_state = optimizer_step(opt, grads)
    fns = {backend: step}
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
    roofline: Roofline,
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
    with kernel_threads(threads):
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
            roofline = Roofline(params, grads)
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


def _kernel_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"threads": args.threads, "quick": args.quick, "seed": args.seed}


@dataclass(frozen=True)
class _Table:
    """One table of a section after "optimizers": its rows' key in the JSON report, how to
    measure them, how to print them, and the text before the table."""

    key: str
    run: Callable[[argparse.Namespace], list[dict[str, Any]]]
    markdown: Callable[[list[dict[str, Any]]], str]
    lead: str = "\n"


_TABLES: dict[str, list[_Table]] = {
    "clipping": [
        _Table(
            "clipping",
            lambda a: run_clipping_bench("transformer", **_kernel_options(a)),
            clipping_markdown,
        )
    ],
    "batchnorm": [
        _Table("batchnorm", lambda a: run_batchnorm_bench(**_kernel_options(a)), batchnorm_markdown)
    ],
    "training": [
        _Table("training", lambda a: run_training_bench(**_kernel_options(a)), training_markdown),
        _Table(
            "training_step_in_loop",
            lambda a: run_step_in_loop_bench(**_kernel_options(a)),
            step_in_loop_markdown,
            lead="",
        ),
    ],
    "distributed": [
        _Table(
            "distributed",
            lambda a: run_distributed_bench("transformer", quick=a.quick),
            distributed_markdown,
        )
    ],
    "state_formats": [
        _Table(
            "state_formats",
            lambda a: run_state_formats_bench(**_kernel_options(a)),
            state_formats_markdown,
        )
    ],
}


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
        for name in SECTIONS[1:]:
            if name in sections:
                for section_table in _TABLES[name]:
                    rows = section_table.run(args)
                    text += section_table.lead + section_table.markdown(rows)
                    report[section_table.key] = rows
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

"""The optimizer section's results: one workload x optimizer measurement (:class:`CellResult`),
a whole run (:class:`BenchResult`), and their markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ferroptim.bench.machine import header_line
from ferroptim.bench.table import fmt_ratio, fmt_time, markdown_table
from ferroptim.bench.timing import Timing
from ferroptim.bench.workloads import WORKLOADS

#: Cells where native runs below this share of the roofline are called out.
ROOFLINE_PCT_FLOOR = 90.0
#: Latency workloads whose native step takes longer than this (µs) are called out.
LATENCY_CEILING_US = 15.0

COLUMNS = (
    "optimizer",
    "B/elem",
    "native {unit}",
    "GB/s",
    "reference {unit}",
    "ref/native",
    "roofline {unit}",
    "% of roofline",
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
        return render(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "results": [c.to_dict() for c in self.cells],
        }


def _unit(latency: bool) -> tuple[str, float]:
    return ("µs", 1e3) if latency else ("ms", 1e6)


def cell_row(cell: CellResult, latency: bool) -> list[str]:
    _, per = _unit(latency)
    ref = cell.reference
    return [
        cell.optimizer,
        str(cell.bytes_per_elem),
        fmt_time(cell.native.median_ns / per),
        f"{cell.native_gbps:.1f}",
        fmt_time(ref.median_ns / per) if ref is not None else "-",
        fmt_ratio(cell.ref_over_native) if cell.ref_over_native is not None else "-",
        fmt_time(cell.roofline.median_ns / per),
        f"{cell.pct_of_roofline:.1f}%",
    ]


#: columns of the per-call table of a latency workload (see ferroptim.bench.percall)
PERCALL_COLUMNS = (
    "optimizer",
    "kernel µs",
    "step(grads) µs",
    "step(model) µs",
    "Python µs (grads)",
    "Python µs (model)",
    "roofline µs",
    "kernel % of roofline",
    "step % of roofline",
)


def percall_row(cell: CellResult) -> list[str]:
    """Medians in µs: the kernel call alone, both steps, their difference to the kernel (the
    Python optimizer's fixed cost), and the kernel and the step against the roofline."""
    assert cell.kernel is not None and cell.step_model is not None
    kernel, step = cell.kernel.median_ns / 1e3, cell.native.median_ns / 1e3
    model, roof = cell.step_model.median_ns / 1e3, cell.roofline.median_ns / 1e3
    return [
        cell.optimizer,
        fmt_time(kernel),
        fmt_time(step),
        fmt_time(model),
        fmt_time(step - kernel),
        fmt_time(model - kernel),
        fmt_time(roof),
        f"{roof / kernel * 100:.1f}%",
        f"{roof / step * 100:.1f}%",
    ]


def percall_table(cells: Sequence[CellResult]) -> list[str]:
    """The per-call table of a latency workload's cells (empty if they have no kernel timing)."""
    cells = [c for c in cells if c.kernel is not None and c.step_model is not None]
    if not cells:
        return []
    return [
        "Per call, the same run (interleaved): the native kernel call alone (with its argument "
        "checks), `opt.step(grads)`, `opt.step(model)`, the Python optimizer's fixed cost (step "
        "minus kernel), and the kernel and the step against the roofline kernel; µs, medians",
        "",
        markdown_table([percall_row(c) for c in cells], PERCALL_COLUMNS),
        "",
    ]


def callouts(cells: Sequence[CellResult]) -> list[str]:
    """One line per cell below the roofline floor or above the latency ceiling."""
    lines = []
    for c in cells:
        if c.pct_of_roofline < ROOFLINE_PCT_FLOOR:
            lines.append(
                f"- {c.workload} / {c.optimizer}: native at {c.pct_of_roofline:.1f}% of roofline "
                f"(below {ROOFLINE_PCT_FLOOR:.0f}%)"
            )
        if WORKLOADS[c.workload].latency and c.native.median_ns / 1e3 > LATENCY_CEILING_US:
            lines.append(
                f"- {c.workload} / {c.optimizer}: step takes {c.native.median_ns / 1e3:.2f} µs "
                f"(above {LATENCY_CEILING_US:.0f} µs)"
            )
        if not c.params_finite:
            lines.append(
                f"- {c.workload} / {c.optimizer}: params became non-finite during native timing "
                "(the same gradient is applied every step)"
            )
    return lines


def render(result: BenchResult) -> str:
    """The whole report: machine header, one table per workload, then the call-outs."""
    out = [result.header, ""]
    for name in dict.fromkeys(c.workload for c in result.cells):
        w = WORKLOADS[name]
        cells = [c for c in result.cells if c.workload == name]
        unit, _ = _unit(w.latency)
        how = "end-to-end opt.step(grads)" if w.latency else "per step"
        out.append(
            f"### {name}: {w.n_params:,} params in {w.n_tensors} tensors ({w.description}); "
            f"times in {unit} {how}, medians"
        )
        out.append("")
        header = [c.format(unit=unit) for c in COLUMNS]
        out.append(markdown_table([cell_row(c, w.latency) for c in cells], header))
        out.append("")
        out.extend(percall_table(cells))
    flagged = callouts(result.cells)
    out.append(
        f"Call-outs (native below {ROOFLINE_PCT_FLOOR:.0f}% of roofline, latency step above "
        f"{LATENCY_CEILING_US:.0f} µs): {'none' if not flagged else ''}".rstrip()
    )
    out.extend(flagged)
    return "\n".join(out) + "\n"

"""Markdown rendering of benchmark results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ferroptim.bench.workloads import WORKLOADS

if TYPE_CHECKING:
    from ferroptim.bench.run import BenchResult, CellResult

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


def fmt_time(x: float) -> str:
    """About four significant digits, never in scientific notation."""
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.1f}"
    if x >= 10:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A markdown table; text columns left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    left = [i == 0 for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(cells, widths, left, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            (":" + "-" * (w + 1)) if lft else ("-" * (w + 1) + ":")
            for w, lft in zip(widths, left, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


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

"""Markdown formatting shared by every benchmark section: numbers and tables."""

from __future__ import annotations

from collections.abc import Sequence


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

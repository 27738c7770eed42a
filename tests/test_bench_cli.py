"""Smoke test of ``python -m ferroptim bench``: the table's shape and sign, never its timings."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from pathlib import Path

import pytest

from ferroptim.bench.cells import PERCALL_COLUMNS
from ferroptim.bench.clipping import FLAT, FLAT_ADAM, FLAT_NORM, FLAT_READ, HUGE_NORM, HUGE_READ

EXPECTED_COLUMNS = [
    "optimizer",
    "B/elem",
    "native µs",
    "GB/s",
    "reference µs",
    "ref/native",
    "roofline µs",
    "% of roofline",
]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferroptim", "bench", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def _table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row (header and data; not the alignment rule)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|:"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _tables(text: str) -> list[list[list[str]]]:
    """The rows of each markdown table of ``text``, table by table."""
    tables: list[list[list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("|") and not inside:
            tables.append([])
        inside = line.startswith("|")
        if inside:
            tables[-1].extend(_table_rows(line))
    return tables


def _number(cell: str) -> float:
    return float(cell.rstrip("%x").replace(",", ""))


def test_bench_quick_clipping_section() -> None:
    proc = _bench("--quick", "--sections", "clipping")
    assert proc.returncode == 0, proc.stderr
    assert "clip_grad_norm_" in proc.stdout and "max_grad_norm" in proc.stdout
    assert all(_number(row[1]) > 0 for row in _table_rows(proc.stdout) if row[0] == "native")
    # The norm against its limits: the same bytes in one array, one read of that array.
    variants = {row[0]: row for row in _table_rows(proc.stdout)}
    for name in (
        "global_norm",
        "global_norm, one array",
        "one read, one array",
        "one read, same arrays",
    ):
        assert _number(variants[name][1]) > 0
    assert _number(variants["one read, one array"][3]) == 100
    # Where Linux has huge pages: the same arrays' norm and read on them (page size vs count).
    if hasattr(mmap, "MADV_HUGEPAGE"):
        for name in (HUGE_NORM, HUGE_READ):
            assert _number(variants[name][1]) > 0
    assert _number(variants["one read, same arrays"][4]) == 100
    assert _number(variants["native, one array"][1]) > 0
    assert "in-step norm pass (clipped minus plain)" in proc.stdout
    # The in-step limit: a read of the gradients in the norm pass's situation (after a step).
    assert _number(variants["Adam, one read of grads first"][2]) > 0
    assert "the read in the norm pass's situation" in proc.stdout
    # The machine's own price of that read with no arithmetic: the roofline step after a read.
    assert _number(variants["roofline step"][4]) == 1  # time / plain: over the roofline step
    assert _number(variants["roofline step, one read of grads first"][4]) > 0
    assert "one read of the gradients then the roofline step takes" in proc.stdout
    # The layout of Module.flatten_parameters: the same arrays as views of one buffer.
    for name in (FLAT_NORM, FLAT_READ):
        assert _number(variants[name][1]) > 0
    assert _number(variants[FLAT_ADAM][4]) == 1  # time / plain on the same layout
    assert _number(variants[f"Adam max_grad_norm=1{FLAT}"][5]) > 0  # over plain, separate
    assert _number(variants[f"native{FLAT}"][1]) > 0  # clip_grad_norm_


def test_bench_quick_training_section_times_the_step_by_situation(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    proc = _bench("--quick", "--sections", "training", "--json", str(json_path))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(json_path.read_text(encoding="utf-8"))["training_step_in_loop"]
    assert [r["situation"] for r in rows] == [
        "in loop",
        "in loop, step(model)",
        "in loop, arrays re-read first",
        "back to back",
        "back to back, caches flushed",
        "1-element step in loop",
        "1-element step back to back",
        "in loop, 1 kernel thread",
    ]
    assert all(r["median_us"] > 0 and r["p25_us"] > 0 for r in rows)
    assert "Adam step of the demo CNN" in proc.stdout


def test_bench_quick_mlp(tmp_path: Path) -> None:
    json_path, md_path = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = _bench(
        "--quick",
        "--sections",
        "optimizers",
        "--workloads",
        "mlp",
        "--optimizers",
        "Adam,SGD",
        "--json",
        str(json_path),
        "--markdown",
        str(md_path),
    )
    assert proc.returncode == 0, proc.stderr

    out = proc.stdout
    assert out.startswith("CPU: ")
    assert "SIMD: " in out.splitlines()[0]
    assert "### mlp: 55,050 params in 6 tensors" in out
    assert md_path.read_text(encoding="utf-8") == out

    steps, per_call = _tables(out)
    header, *rows = steps
    assert header == EXPECTED_COLUMNS
    assert [r[0] for r in rows] == ["SGD", "Adam"]
    assert [r[1] for r in rows] == ["12", "28"]
    for row in rows:
        assert all(_number(cell) > 0 for cell in row[2:]), row
    # The per-call table: kernel alone, both steps, Python cost (a difference of two medians,
    # any sign on a noisy machine), roofline and the two percentages.
    header, *rows = per_call
    assert header == list(PERCALL_COLUMNS)
    assert [r[0] for r in rows] == ["SGD", "Adam"]
    for row in rows:
        assert all(_number(row[k]) > 0 for k in (1, 2, 3, 6, 7, 8)), row

    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["machine"]["threads"] == 2
    assert data["settings"]["workloads"] == ["mlp"]
    results = data["results"]
    assert [(r["workload"], r["optimizer"], r["n_state"]) for r in results] == [
        ("mlp", "SGD", 0),
        ("mlp", "Adam", 2),
    ]
    for r in results:
        assert r["n_params"] == 55_050
        for key in ("native_us", "native_gbps", "reference_ms", "roofline_ms", "pct_of_roofline"):
            assert r[key] > 0, key
        assert r["ref_over_native"] > 0
        assert r["native"]["n"] >= 1 and r["reference"]["n"] >= 1
        assert r["kernel"]["median_ns"] > 0 and r["step_model"]["median_ns"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--optimizers", "Adamm"), "unknown optimizer 'Adamm'"),
        (("--workloads", "cnn"), "unknown workload 'cnn'"),
    ],
)
def test_bench_rejects_unknown_names(args: tuple[str, ...], message: str) -> None:
    proc = _bench("--quick", *args)
    assert proc.returncode == 2
    assert message in proc.stderr

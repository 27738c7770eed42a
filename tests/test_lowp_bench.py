"""The state-formats benchmark section runs and measures state bytes from the arrays."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ferroptim.bench.state_formats import make_adam, run_state_formats_bench, state_formats_markdown
from ferroptim.bench.workloads import WORKLOADS


def test_quick_run_and_table():
    rows = run_state_formats_bench(("mlp",), threads=1, quick=True)
    (row,) = rows
    timed = {"float32", "bfloat16", "bfloat16_adamw", "8bit", "roofline20", "roofline28"}
    assert set(row["ms"]) - {"torch_fused"} == timed  # torch only when it is importable
    assert all(ms > 0 for ms in row["ms"].values())
    per_param = row["state_bytes_per_param"]
    assert per_param["float32"] == 8.0 and per_param["bfloat16"] == 4.0
    # The MLP's 784x64 weight has 8-bit state; tensors below 4096 elements keep float32 state.
    shapes = WORKLOADS["mlp"].shapes
    big = sum(math.prod(s) for s in shapes if math.prod(s) >= 4096)
    small = sum(math.prod(s) for s in shapes if math.prod(s) < 4096)
    blocks = sum(-(-math.prod(s) // 256) for s in shapes if math.prod(s) >= 4096)
    expected = (2 * big + 2 * 4 * blocks + 8 * small) / (big + small)
    assert per_param["8bit"] == expected
    assert set(row["ms_call_by_call"]) == timed  # torch never in the call-by-call rounds
    assert all(ms > 0 for ms in row["ms_call_by_call"].values())
    text = state_formats_markdown(rows)
    assert "bfloat16" in text and "bfloat16 AdamW" in text and "roofline 20 B" in text
    # The bfloat16 row's call-by-call share is roofline20 / bfloat16 of that timing.
    alt = row["ms_call_by_call"]
    cells = [[c.strip() for c in line.split("|")] for line in text.splitlines() if "|" in line]
    assert cells[0][7] == "% of roofline, call by call"
    (bf16_row,) = [c for c in cells if c[2] == "bfloat16"]
    assert bf16_row[7] == f"{alt['roofline20'] / alt['bfloat16'] * 100:.1f}%"


def test_call_by_call_rotates_so_no_call_follows_its_own():
    from ferroptim.bench.timing import measure_call_by_call

    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    timings = measure_call_by_call(fns, rounds=4, warmup=1)
    assert {k: t.n for k, t in timings.items()} == {"a": 4, "b": 4, "c": 4}
    timed = calls[3:]  # after one warm-up call each
    assert timed == list("abcbcacababc")
    assert all(x != y for x, y in itertools.pairwise(timed))
    pair: list[str] = []
    measure_call_by_call({k: (lambda k=k: pair.append(k)) for k in "ab"}, rounds=3, warmup=0)
    assert pair == list("ababab")


def test_8bit_state_of_a_large_tensor_is_about_2_03_bytes():
    p = [np.zeros(2**16, np.float32)]
    _, nbytes = make_adam("8bit", p, [np.zeros_like(p[0])])
    assert nbytes / p[0].size == 2 + 2 * 4 / 256


def test_compare_figure_speed_panel_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from ferroptim.bench.timing import Budget
    from ferroptim.demo import state_formats as sf

    quick = Budget(seconds=0.0, min_n=2, max_n=2, warmup=1, warmup_s=0.0, blocks=1)
    speed = sf.speed_sweep(sizes=[4096, 8192], threads=1, budget=quick)
    assert set(speed) == {"float32", "bfloat16", "8bit", "roofline20", "roofline28"}
    assert all(len(v) == 2 and min(v) > 0 for v in speed.values())
    rows = [
        {"model": m, "state": f, "accuracy": [0.9, 0.92]}
        for m in ("CNN", "MLP")
        for f in ("float32", "bfloat16", "8bit")
    ]
    table = sf.accuracy_table(rows)
    assert "91.00% ± 1.41" in table and "+0.00 pp" in table
    path = tmp_path / "figure.png"
    sf.plot(speed, [4096, 8192], rows, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

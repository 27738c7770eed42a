"""``bench --sections distributed`` on a small workload: the rows it measures and their table."""

from ferroptim.bench.distributed import distributed_markdown, run_distributed_bench
from mpi_launch import mpiexec


def test_distributed_bench_rows_and_table():
    mpiexec()  # skips (or fails under FERROPTIM_REQUIRE_MPI) without MPI
    rows = run_distributed_bench("mlp", quick=True, ranks=(1, 2))
    assert [r["ranks"] for r in rows] == [1, 2]
    for r in rows:
        n = r["ranks"]
        # ZeRO holds 1/N of AdamW's state, plus at most 64 bytes of padding per array
        assert r["zero_state_bytes"] <= r["single_state_bytes"] / n + 2 * 64
        assert r["zero_state_bytes"] >= r["single_state_bytes"] / n
        timed = ("ddp_ms", "raw_ms", "agree_ms", "pack_ms", "buckets_ms")
        for key in (*timed, "reduce_scatter_ms", "kernel_ms", "allgather_ms"):
            assert r[key] >= 0, key
    assert rows[1]["busbw_gbps"] > 0
    text = distributed_markdown(rows)
    assert "| ranks | buckets | DistributedOptimizer | raw Allreduce |" in text
    assert "0.5" in text.split("ZeRO")[1]

"""Cases for tests/test_distributed_data.py: DistributedSampler on every rank and SyncBatchNorm
against BatchNorm on the whole batch (uneven and empty slices)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _case import run_cases
from mpi4py import MPI

import ferroptim as fo
from ferroptim import distributed as dist

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
#: samples per rank of the global batch (uneven; a rank with none at 3 ranks)
COUNTS = {1: [7], 2: [3, 6], 3: [4, 0, 5], 4: [1, 3, 2, 5]}[SIZE]


def gathered(a):
    """Every rank's copy of ``a`` (same shape everywhere)."""
    out = np.empty((SIZE, *a.shape), a.dtype)
    COMM.Allgather(np.ascontiguousarray(a), out)
    return out


def summed(a):
    out = np.array(a, np.float64)
    COMM.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
    return out


def my_slice():
    start = sum(COUNTS[:RANK])
    return slice(start, start + COUNTS[RANK])


def close(got, want, dtype, what):
    tol = {np.float32: 2e-5, np.float64: 1e-10}[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"rank {RANK}: {what}")


def sampler() -> None:
    for n, drop_last in ((10, False), (11, False), (11, True), (3, False)):
        s = fo.data.DistributedSampler(n, seed=3, drop_last=drop_last)
        assert (s.num_replicas, s.rank) == (SIZE, RANK)
        s.set_epoch(2)
        mine = s.indices()
        order = np.random.default_rng(5).permutation(n)  # seed 3 + epoch 2
        parts = gathered(mine)
        assert np.array_equal(parts.T.reshape(-1), np.resize(order, s.total_size))
        assert np.array_equal(mine, parts[RANK])


def bn_case(bn_class, shape_tail, dtype, momentum):
    rng = np.random.default_rng(42)  # the same global data on every rank
    total = sum(COUNTS)
    channels = shape_tail[0]
    single = bn_class(channels, momentum=momentum, dtype=dtype)
    single.weight[...] = rng.normal(1.0, 0.3, channels)
    single.bias[...] = rng.normal(0.0, 0.3, channels)
    sync = dist.convert_sync_batchnorm(bn_class(channels, momentum=momentum, dtype=dtype))
    assert isinstance(sync, dist.SyncBatchNorm)
    sync.load_state_dict(single.state_dict())
    assert list(sync.state_dict()) == list(single.state_dict())
    for step in range(2):
        x = (rng.normal(2.0, 3.0, (total, *shape_tail)) + step).astype(dtype)
        dy = rng.normal(0.0, 1.0, x.shape).astype(dtype)
        y_all = single(x)
        dx_all = single.backward(dy)
        y = sync(x[my_slice()])
        dx = sync.backward(dy[my_slice()])
        what = f"{bn_class.__name__}{shape_tail} {np.dtype(dtype).name} momentum {momentum}"
        close(y, y_all[my_slice()], dtype, f"{what} forward, step {step}")
        close(dx, dx_all[my_slice()], dtype, f"{what} input gradient, step {step}")
        for name in ("weight", "bias"):
            close(summed(sync.grad(name)), single.grad(name), dtype, f"{what} d{name}")
        for name in ("running_mean", "running_var"):
            close(getattr(sync, name), getattr(single, name), dtype, f"{what} {name}")
            copies = gathered(getattr(sync, name))
            assert (copies == copies[0]).all(), f"{name} differs between ranks"
        assert int(sync.num_batches_tracked) == int(single.num_batches_tracked) == step + 1
    sync.eval()
    single.eval()
    x = rng.normal(0.0, 1.0, (3, *shape_tail)).astype(dtype)
    close(sync(x), single(x), dtype, f"{what} eval")


def sync_batchnorm() -> None:
    for dtype in (np.float32, np.float64):
        bn_case(fo.nn.BatchNorm1d, (5,), dtype, 0.1)
        bn_case(fo.nn.BatchNorm1d, (3, 4), dtype, None)
        bn_case(fo.nn.BatchNorm2d, (2, 3, 5), dtype, 0.3)


def converted_model() -> None:
    """A converted Sequential on each rank's slice == the original on the whole batch."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, (sum(COUNTS), 2, 4, 4))
    dy = rng.normal(0.0, 1.0, (sum(COUNTS), 3))

    def model():
        return fo.nn.Sequential(
            fo.nn.Conv2d(2, 4, 3, padding=1, dtype=np.float64, rng=1),
            fo.nn.BatchNorm2d(4, dtype=np.float64),
            fo.nn.ReLU(),
            fo.nn.Flatten(),
            fo.nn.Linear(64, 6, dtype=np.float64, rng=2),
            fo.nn.BatchNorm1d(6, dtype=np.float64),
            fo.nn.Linear(6, 3, dtype=np.float64, rng=3),
        )

    single, synced = model(), model()
    synced.load_state_dict(single.state_dict())
    synced.eval()
    params = synced.parameters()
    keys = list(synced.state_dict())
    converted = dist.convert_sync_batchnorm(synced)
    assert converted is synced and list(converted.state_dict()) == keys
    assert all(a is b for a, b in zip(converted.parameters(), params, strict=True))
    assert isinstance(converted[1], dist.SyncBatchNorm) and not converted[1].training
    converted.train()
    out_all = single(x)
    single.backward(dy)
    out = converted(x[my_slice()])
    converted.backward(dy[my_slice()])
    close(out, out_all[my_slice()], np.float64, "converted model forward")
    for (name, g), (_, g_all) in zip(
        converted.named_gradients(), single.named_gradients(), strict=True
    ):
        close(summed(g), g_all, np.float64, f"converted model gradient {name}")
    close(converted[5].running_var, single[5].running_var, np.float64, "running_var")


def one_value_raises_everywhere() -> None:
    """One value per channel over all ranks: the same ValueError on every rank, nothing moved."""
    layer = dist.SyncBatchNorm(3)
    x = np.ones((1 if RANK == 0 else 0, 3), np.float32)
    try:
        layer(x)
    except ValueError as exc:
        assert "Expected more than 1 value per channel when training" in str(exc), exc
    else:
        raise AssertionError("no ValueError")
    assert int(layer.num_batches_tracked) == 0 and (layer.running_var == 1).all()


def everything() -> None:
    """All cases in one launch (launches dominate the test time)."""
    sampler()
    sync_batchnorm()
    converted_model()
    one_value_raises_everywhere()


run_cases({"all": everything})

"""DistributedSampler and SyncBatchNorm under mpiexec (tests/mpi/mpi_data.py): every rank's share,
and SyncBatchNorm on uneven (and empty) slices equal to BatchNorm on the whole batch; plus the
parts that need no MPI."""

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import distributed as dist
from mpi_launch import run_mpi


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_sampler_and_sync_batchnorm(nprocs):
    run_mpi("mpi_data.py", nprocs, "all")


def test_sync_batchnorm_without_mpi_in_eval_mode_is_batchnorm_and_checks_its_input():
    bn = fo.nn.BatchNorm2d(3)
    bn.running_mean[...] = [0.5, -1.0, 2.0]
    sync = dist.convert_sync_batchnorm(fo.nn.Sequential(bn))[0]
    assert isinstance(sync, dist.SyncBatchNorm) and sync.running_mean is bn.running_mean
    sync.eval()
    x = np.random.default_rng(0).normal(size=(4, 3, 2, 2)).astype(np.float32)
    bn.eval()
    assert np.array_equal(sync(x), bn(x))  # eval needs no communicator
    with pytest.raises(ValueError, match="SyncBatchNorm: input must have 3 channels"):
        sync(x[:, :2].copy())
    with pytest.raises(TypeError, match=r"module must be a ferroptim\.nn\.Module"):
        dist.convert_sync_batchnorm("model")


def test_fit_refuses_a_non_bool_distributed_before_training():
    model = fo.nn.Linear(3, 2, rng=0)
    before = model.state_dict()
    opt = fo.optim.SGD(model.parameters(), lr=0.1)
    x, y = np.ones((4, 3), np.float32), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="distributed must be a bool or None"):
        fo.train.fit(model, fo.nn.CrossEntropyLoss(), opt, x, y, distributed="yes")
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)

"""DistributedSampler against a direct implementation of torch's rule (no MPI needed when
num_replicas and rank are given; tests/test_distributed_data.py runs it under mpiexec)."""

import math

import numpy as np
import pytest

import ferroptim as fo


def torch_rule(order, num_replicas, rank, drop_last):
    """torch.utils.data.distributed.DistributedSampler.__iter__ on a given epoch order."""
    n = len(order)
    if drop_last and n % num_replicas != 0:
        num_samples = math.ceil((n - num_replicas) / num_replicas)
    else:
        num_samples = math.ceil(n / num_replicas)
    total_size = num_samples * num_replicas
    indices = list(order)
    if not drop_last:
        padding_size = total_size - len(indices)
        if padding_size <= len(indices):
            indices += indices[:padding_size]
        else:
            indices += (indices * math.ceil(padding_size / len(indices)))[:padding_size]
    else:
        indices = indices[:total_size]
    assert len(indices) == total_size
    indices = indices[rank:total_size:num_replicas]
    assert len(indices) == num_samples
    return indices


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 11, 64, 101])
@pytest.mark.parametrize("num_replicas", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_rank_gets_torchs_share(n, num_replicas, drop_last, shuffle):
    seen = []
    for epoch in (0, 3):
        order = (
            np.random.default_rng(5 + epoch).permutation(n).tolist() if shuffle else list(range(n))
        )
        for rank in range(num_replicas):
            sampler = fo.data.DistributedSampler(
                n, num_replicas, rank, shuffle=shuffle, seed=5, drop_last=drop_last
            )
            sampler.set_epoch(epoch)
            got = list(sampler)
            assert got == torch_rule(order, num_replicas, rank, drop_last)
            assert len(sampler) == len(got) == sampler.num_samples
            assert sampler.total_size == sampler.num_samples * num_replicas
            assert all(isinstance(i, int) for i in got)
            seen += got
        covered = set(seen[-sampler.total_size :]) if sampler.total_size else set()
        if drop_last:
            assert len(covered) == sampler.total_size  # no repeats, tail dropped
        else:
            assert covered == set(range(n))  # everything, up to num_replicas - 1 repeats


def test_epochs_differ_seeds_repeat_and_unshuffled_is_in_order():
    a = fo.data.DistributedSampler(100, 2, 0, seed=1)
    b = fo.data.DistributedSampler(range(100), 2, 0, seed=1)  # a sized object
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    plain = fo.data.DistributedSampler(10, 3, 2, shuffle=False)
    assert list(plain) == [2, 5, 8, 1]  # padded with the first index: 0 1 ... 9 0 1
    assert isinstance(a.indices(), np.ndarray) and a.indices().dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": -1}, ValueError, "n must be >= 0"),
        ({"n": "abc"}, TypeError, "n must be an int"),
        ({"n": 4.0}, TypeError, "n must be an int"),
        ({"num_replicas": 0}, ValueError, "num_replicas"),
        ({"num_replicas": 2.0}, TypeError, "num_replicas"),
        ({"rank": 2}, ValueError, r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
        ({"rank": -1}, ValueError, "Invalid rank -1"),
        ({"rank": True}, TypeError, "rank"),
        ({"seed": -3}, ValueError, r"invalid seed: -3 \(expected an int >= 0\)"),
        ({"shuffle": 1}, TypeError, "shuffle must be a bool"),
        ({"drop_last": None}, TypeError, "drop_last must be a bool"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    args = {"n": 10, "num_replicas": 2, "rank": 0, **kwargs}
    with pytest.raises(error, match=match):
        fo.data.DistributedSampler(**args)


def test_set_epoch_refuses_bad_epochs_and_keeps_the_old_one():
    sampler = fo.data.DistributedSampler(10, 2, 1)
    sampler.set_epoch(4)
    for bad, error in ((-1, ValueError), (1.5, TypeError), (None, TypeError)):
        with pytest.raises(error, match="epoch"):
            sampler.set_epoch(bad)
    assert sampler.epoch == 4

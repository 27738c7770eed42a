"""The distributed layouts without MPI: collective splitting, 64-byte alignment, ZeRO shards
tiling every parameter exactly once, gradient buckets covering their buffers in order."""

import numpy as np
import pytest

from ferroptim.distributed._collectives import ALIGN_BYTES, aligned_zeros, spans
from ferroptim.distributed.buckets import GradientBuckets
from ferroptim.distributed.shards import FlatShard


def test_spans_split_at_the_limit_and_keep_one_empty_piece():
    assert spans(0, 4) == [(0, 0)]
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(8, 4) == [(0, 4), (4, 8)]
    assert spans(3) == [(0, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_aligned_zeros(dtype, n):
    a = aligned_zeros(n, dtype)
    assert a.shape == (n,) and a.dtype == dtype and not a.any()
    assert a.ctypes.data % ALIGN_BYTES == 0


def _random_shapes(rng):
    shapes = []
    for _ in range(rng.integers(1, 7)):
        ndim = rng.integers(0, 3)
        shapes.append(tuple(int(d) for d in rng.integers(0, 40, size=ndim)))
    return shapes


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shards_tile_every_parameter_once(seed, dtype):
    rng = np.random.default_rng(seed)
    shapes = _random_shapes(rng)
    params = [np.zeros(s, dtype) for s in shapes]
    size = int(rng.integers(1, 6))
    flats = [FlatShard(range(len(params)), params, r, size) for r in range(size)]
    shard = flats[0].shard
    total = sum(p.size for p in params)
    assert shard * np.dtype(dtype).itemsize % ALIGN_BYTES == 0
    assert shard * size >= total and (shard - ALIGN_BYTES // params[0].itemsize) * size < total
    covered = [np.zeros(p.size, dtype=int) for p in params]
    for r, flat in enumerate(flats):
        assert flat.shard == shard
        assert (flat.grads.ctypes.data + r * shard * flat.grads.itemsize) % ALIGN_BYTES == 0
        used = np.zeros(shard, dtype=int)
        for s in flat.segments:
            covered[s.index][s.start : s.stop] += 1
            used[s.at : s.at + s.stop - s.start] += 1
            # the segment sits where the parameter sits in the flat buffer
            assert flat.offsets[s.index] + s.start == r * shard + s.at
        a, b = flat.padding
        used[a:b] += 1
        assert (used == 1).all(), (r, used)
        assert len(flat.param_views()) == len(flat.grad_views())
    assert all((c == 1).all() for c in covered)
    # every zero-size parameter has exactly one (empty) segment, on one rank
    for index, p in enumerate(params):
        if p.size == 0:
            assert sum(s.index == index for f in flats for s in f.segments) == 1


def test_pack_publish_and_scatter_back_round_trip():
    params = [np.arange(24, dtype=np.float32).reshape(4, 6), np.arange(16, dtype=np.float32)]
    flats = [FlatShard([0, 1], params, r, 2) for r in range(2)]
    assert flats[0].shard == 32  # rank 1 owns elements 32..39 and the padding
    grads = [np.ones((4, 6), np.float32), None]
    flats[0].pack(grads, 0.5)
    assert (flats[0].grads[:24] == 0.5).all() and not flats[0].grads[24:].any()
    for f in flats:
        f.publish()
    # what rank r published is its block of the flat parameters
    gathered = np.concatenate(
        [f.values[r * f.shard : (r + 1) * f.shard] for r, f in enumerate(flats)]
    )
    assert np.array_equal(gathered[:40], np.concatenate([p.reshape(-1) for p in params]))
    # scatter_back writes the other ranks' blocks only (this rank's step wrote its own in place)
    flat = flats[1]
    flat.values[:] = -np.arange(flat.values.size)
    before = np.concatenate([p.reshape(-1) for p in params])
    flat.scatter_back()
    after = np.concatenate([p.reshape(-1) for p in params])
    low, high = flat.shard, 2 * flat.shard
    assert np.array_equal(after[:low], flat.values[:low])
    assert np.array_equal(after[low:high], before[low:high])
    assert not np.array_equal(before[:low], flat.values[:low])


@pytest.mark.parametrize("cap_bytes", [1, 40, 100, 10**9])
def test_buckets_cover_their_buffers_in_parameter_order(cap_bytes):
    shapes = [(3, 4), (5,), (7,), (2, 2), (9,)]
    dtypes = [np.float32, np.float64, np.float32, np.float32, np.float64]
    params = [np.zeros(s, d) for s, d in zip(shapes, dtypes, strict=True)]
    buckets = GradientBuckets(params, cap_bytes)
    assert sorted(i for m in buckets.members for i in m) == list(range(len(params)))
    for dtype, buffer in buckets.buffers.items():
        mine = [
            (b, m)
            for b, m in zip(buckets.buckets, buckets.members, strict=True)
            if b.dtype == dtype
        ]
        assert sum(b.size for b, _ in mine) == buffer.size
        order = [i for _, m in mine for i in m]
        assert order == sorted(order)  # parameter order within the dtype
        for b, m in mine[:-1]:  # every bucket but the last holds at least the cap
            assert b.nbytes >= min(cap_bytes, buffer.nbytes)
            assert b.size == sum(params[i].size for i in m)
    grads = [np.full(s, i + 1.0, d) for i, (s, d) in enumerate(zip(shapes, dtypes, strict=True))]
    buckets.pack(grads, 2.0, accumulate=False)
    for i, view in enumerate(buckets.views):
        assert (view == 2.0 * (i + 1)).all()
    buckets.pack(grads, 1.0, accumulate=True)
    for i, view in enumerate(buckets.views):
        assert (view == 3.0 * (i + 1)).all()
    assert all(g.base is None or not np.shares_memory(g, buckets.buffers[g.dtype]) for g in grads)

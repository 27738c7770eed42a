"""Cases for tests/test_distributed_ddp.py: DistributedOptimizer and the broadcasts against one
process on the global batch. Every check runs inside one launch per world size."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _case import run_cases
from _problems import (
    DTYPES,
    OPTIMIZERS,
    SHAPES,
    assert_close,
    assert_same_state,
    collectives_of_at_most,
    comm_info,
    expect_value_error,
    mean_grads,
    model_pair,
    options,
    params,
    rank_rows,
    sample_grads,
    train_pair,
)

import ferroptim as fo
from ferroptim import distributed as dist


def run_pair(make, dtype, batches, *, cap_mb=25, steps_hook=None):
    """A single-process optimizer and a DistributedOptimizer trained side by side
    (:func:`train_pair`); their state is compared after every step too."""
    ref_params, dist_params = params(dtype), params(dtype)
    ref = make(ref_params)
    ddp = dist.DistributedOptimizer(make(dist_params), bucket_cap_mb=cap_mb)

    def check(step):
        assert_same_state(ddp.state_dict(), ref.state_dict(), dtype, type(ref).__name__)
        if steps_hook is not None:
            steps_hook(ref, ddp)

    train_pair(ref, ddp, ref_params, dist_params, dtype, batches, after_step=check)
    return ref, ddp


def every_optimizer() -> None:
    """Every optimizer, both dtypes, even batches unweighted and uneven ones by sample count."""
    _, _, size = comm_info()
    batches = [(4 * size, False), (3 * size + 1, True), (2 * size + 1, True)]
    for cls in OPTIMIZERS:
        for dtype in DTYPES:
            run_pair(lambda p, cls=cls: cls(p, **options(cls)), dtype, batches)


def groups_clipping_schedules() -> None:
    _, _, size = comm_info()
    batches = [(2 * size + 1, True)] * 4

    def grouped(p):
        groups = [{"params": p[:2], "lr": 0.05}, {"params": p[2:], "weight_decay": 0.1}]
        return fo.optim.AdamW(groups, lr=0.01, max_grad_norm=0.3, clip_value=0.9)

    def check_clipped(ref, ddp):
        assert ref.last_grad_norm > 0.3, ref.last_grad_norm  # clipping really acts
        np.testing.assert_allclose(ddp.last_grad_norm, ref.last_grad_norm, rtol=1e-6)

    for dtype in DTYPES:
        ref, ddp = run_pair(grouped, dtype, batches, steps_hook=check_clipped)
    # a learning-rate schedule drives the wrapped optimizer through the wrapper
    sched_ref = fo.optim.lr_scheduler.StepLR(ref, step_size=1, gamma=0.5)
    sched = fo.optim.lr_scheduler.StepLR(ddp, step_size=1, gamma=0.5)
    sched_ref.step()
    sched.step()
    assert [g["lr"] for g in ddp.param_groups] == [g["lr"] for g in ref.param_groups]
    assert ddp.optimizer.param_groups[0]["lr"] == 0.025
    assert ddp.backend == "native" and ddp.state_arrays_per_param == 2  # read through

    def scheduled(p):
        return fo.optim.SGD(p, lr=0.1, momentum=0.5)

    pairs = []
    for dtype in DTYPES:
        ref_p, dist_p = params(dtype), params(dtype)
        ref, ddp = scheduled(ref_p), dist.DistributedOptimizer(scheduled(dist_p))
        schedules = [fo.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5) for o in (ref, ddp)]
        pairs.append((dtype, ref_p, dist_p, ref, ddp, schedules))
    _, rank, _ = comm_info()
    for dtype, ref_p, dist_p, ref, ddp, schedules in pairs:
        for step in range(4):
            per_sample = sample_grads(step, 2 * size, dtype)
            ref.step(mean_grads(per_sample, slice(None), dtype))
            ddp.step(mean_grads(per_sample, rank_rows(2 * size, rank, size), dtype))
            for s in schedules:
                s.step()
        assert_close(dist_p, ref_p, dtype, "cosine schedule")


def nonfinite_and_none() -> None:
    _, rank, size = comm_info()
    bad = size - 1
    for dtype in DTYPES:
        p = params(dtype)
        before = [a.copy() for a in p]
        ddp = dist.DistributedOptimizer(fo.optim.Adam(p, lr=0.1, skip_nonfinite=True))
        grads = mean_grads(sample_grads(0, size, dtype), rank_rows(size, rank, size), dtype)
        if rank == bad:
            grads[2][0, 1, 2] = np.nan
        ddp.step(grads)
        assert ddp.last_step_skipped and ddp.skipped_steps == 1, "every rank skips"
        assert all(np.array_equal(a, b) for a, b in zip(p, before, strict=True))
        assert ddp.state_dict()["state"] == {}
        # a finite step afterwards goes through
        grads[2][0, 1, 2] = 0.0
        ddp.step(grads)
        assert not ddp.last_step_skipped
    # None on one rank counts as zeros there; None on every rank skips the parameter
    for dtype in DTYPES:
        per_sample = sample_grads(1, 2 * size, dtype)
        mine = mean_grads(per_sample, rank_rows(2 * size, rank, size), dtype)
        slices = [mean_grads(per_sample, rank_rows(2 * size, r, size), dtype) for r in range(size)]
        want = [sum(s[i].astype(np.float64) for s in slices) / size for i in range(len(SHAPES))]
        want[0] = want[0] - slices[0][0] / size  # rank 0 has no gradient for params[0]
        want = [w.astype(dtype) for w in want]
        want[1] = None
        if rank == 0:
            mine[0] = None
        mine[1] = None
        ref_p, dist_p = params(dtype), params(dtype)
        ref, ddp = (
            fo.optim.SGD(ref_p, lr=0.5),
            dist.DistributedOptimizer(fo.optim.SGD(dist_p, lr=0.5)),
        )
        ref.step(want)
        ddp.step(mine)
        assert_close(dist_p, ref_p, dtype, "None gradients")
        assert np.array_equal(dist_p[1], params(dtype)[1])


def no_sync_accumulation() -> None:
    _, rank, size = comm_info()
    for dtype in DTYPES:
        for weighted in (False, True):
            ref_p, dist_p = params(dtype), params(dtype)
            ref = fo.optim.Adam(ref_p, lr=0.05)
            ddp = dist.DistributedOptimizer(fo.optim.Adam(dist_p, lr=0.05), bucket_cap_mb=1e-4)
            micro = [2 * size + 1, size, 3 * size - 1] if weighted else [2 * size] * 3
            per_sample = [sample_grads(k, b, dtype) for k, b in enumerate(micro)]
            if weighted:  # the mean over every sample of every micro-batch
                total = sum(micro)
                want = [
                    sum(ps[i].sum(axis=0) for ps in per_sample) / total for i in range(len(SHAPES))
                ]
            else:  # torch DDP: micro-batch gradients summed, averaged over ranks
                want = [sum(ps[i].mean(axis=0) for ps in per_sample) for i in range(len(SHAPES))]
            ref.step([w.astype(dtype) for w in want])
            with ddp.no_sync():
                for k in range(2):
                    rows = rank_rows(micro[k], rank, size)
                    ddp.step(
                        mean_grads(per_sample[k], rows, dtype), len(rows) if weighted else None
                    )
            assert all(np.array_equal(a, b) for a, b in zip(dist_p, params(dtype), strict=True))
            try:  # the accumulated buckets must not be laid out again before they are reduced
                ddp.add_param_group({"params": [np.zeros(3, dtype)]})
            except RuntimeError as exc:
                assert "no_sync" in str(exc)
            else:
                raise AssertionError("add_param_group accepted during accumulation")
            rows = rank_rows(micro[2], rank, size)
            ddp.step(mean_grads(per_sample[2], rows, dtype), len(rows) if weighted else None)
            assert_close(dist_p, ref_p, dtype, f"no_sync weighted={weighted}")
            assert_same_state(ddp.state_dict(), ref.state_dict(), dtype, "no_sync")


def small_buckets_and_split_collectives() -> None:
    """One bucket per parameter and no collective longer than 5 elements: same results."""
    with collectives_of_at_most(5):
        _, _, size = comm_info()
        for dtype in DTYPES:
            _, ddp = run_pair(
                lambda p: fo.optim.RMSprop(p, lr=0.01, momentum=0.5),
                dtype,
                [(2 * size + 1, True), (size, False)],
                cap_mb=1e-6,
            )
            assert len(ddp.bucket_sizes) == len(SHAPES), ddp.bucket_sizes
        p = params(np.float32)
        ddp = dist.DistributedOptimizer(fo.optim.SGD(p, lr=0.1), bucket_cap_mb=1e-4)
        assert 1 < len(ddp.bucket_sizes) < len(SHAPES), ddp.bucket_sizes
        assert sum(ddp.bucket_sizes) == sum(a.nbytes for a in p)


def refusals() -> None:
    comm, rank, size = comm_info()
    p = params(np.float32)
    ddp = dist.DistributedOptimizer(fo.optim.SGD(p, lr=0.1))
    good = mean_grads(sample_grads(0, size, np.float32), rank_rows(size, rank, size), np.float32)
    before = [a.copy() for a in p]
    bad = size - 1
    wrong_length = good[:-1] if rank == bad else good
    expect_value_error(lambda: ddp.step(wrong_length), f"rank {bad}: got 4 gradients for 5")
    wrong_shape = [*good[:2], good[2].reshape(3, 2, 4), *good[3:]] if rank == bad else good
    expect_value_error(lambda: ddp.step(wrong_shape), f"rank {bad}: grads[2] has shape (3, 2, 4)")
    wrong_dtype = [g.astype(np.float64) for g in good] if rank == bad else good
    expect_value_error(lambda: ddp.step(wrong_dtype), "dtype float64")
    if size > 1:
        partly = 3 if rank == bad else None
        expect_value_error(lambda: ddp.step(good, num_samples=partly), "every rank or on none")
    expect_value_error(lambda: ddp.step(good, num_samples=0), "add up to 0")
    assert all(np.array_equal(a, b) for a, b in zip(p, before, strict=True))
    # no collective was left half done, and buckets packed before a refusal (while the agreement
    # was in flight) are scratch: the next step is one process's step on the global mean
    ddp.step(good)
    want = mean_grads(sample_grads(0, size, np.float32), slice(None), np.float32)
    expected = [b - np.float32(0.1) * g for b, g in zip(before, want, strict=True)]
    assert_close(p, expected, np.float32, "step after refusals")
    if size == 1:
        return
    # mismatched models: the same ValueError on every rank, naming the first difference
    shapes = [*SHAPES[:3], (2,) if rank == bad else (1,), *SHAPES[4:]]
    message = expect_value_error(
        lambda: dist.DistributedOptimizer(fo.optim.SGD(params(np.float32, shapes=shapes), lr=0.1)),
        "params[3] has shape",
    )
    assert f"rank {bad}: params[3] has shape (2,)" in message, message
    messages = comm.allgather(message)
    assert len(set(messages)) == 1, messages
    extra = [*params(np.float32), np.zeros(3, np.float32)] if rank == bad else params(np.float32)
    expect_value_error(lambda: dist.broadcast_parameters(extra), "broadcast_parameters")
    # constructor argument checks
    expect_value_error(lambda: dist.DistributedOptimizer(fo.optim.SGD(p, lr=0.1), bucket_cap_mb=0))


def broadcasts() -> None:
    _, rank, size = comm_info()
    model = fo.nn.Sequential(
        fo.nn.Linear(4, 3, rng=np.random.default_rng(rank)), fo.nn.BatchNorm1d(3)
    )
    model[1].running_mean[:] = rank
    dist.broadcast_parameters(model, root=size - 1)
    want = fo.nn.Sequential(
        fo.nn.Linear(4, 3, rng=np.random.default_rng(size - 1)), fo.nn.BatchNorm1d(3)
    )
    for a, b in zip(model.parameters(), want.parameters(), strict=True):
        assert np.array_equal(a, b)
    assert (model[1].running_mean == size - 1).all()
    for dtype in DTYPES:
        p = params(dtype, seed=rank)
        opt = fo.optim.Adam(p, lr=0.01, amsgrad=rank == 0, skip_nonfinite=True)
        for step in range(rank + 1):  # different step counts and state on every rank
            opt.step(mean_grads(sample_grads(step + 10 * rank, 2, dtype), slice(None), dtype))
        reference = fo.optim.Adam(params(dtype), lr=0.01, amsgrad=True, skip_nonfinite=True)
        reference.step(mean_grads(sample_grads(0, 2, dtype), slice(None), dtype))
        dist.broadcast_optimizer_state(dist.DistributedOptimizer(opt), root=0)
        zero = dist.ZeroRedundancyOptimizer(params(dtype))
        try:
            dist.broadcast_optimizer_state(zero)
        except TypeError as exc:
            assert "sharded" in str(exc)
        else:
            raise AssertionError("broadcast_optimizer_state accepted a ZeroRedundancyOptimizer")
        sd, want_sd = opt.state_dict(), reference.state_dict()
        assert sd["param_groups"] == want_sd["param_groups"]
        for index, entry in want_sd["state"].items():
            for name, value in entry.items():
                assert np.array_equal(sd["state"][index][name], value), (index, name)


def model_steps() -> None:
    """step(model) and step(): gradients matched to the parameters by identity."""
    want, got = model_pair(
        lambda groups: fo.optim.AdamW(groups, lr=0.01),
        lambda groups: dist.DistributedOptimizer(fo.optim.AdamW(groups, lr=0.01)),
    )
    assert_close(got, want, np.float32, "step(model)")
    _, rank, size = comm_info()
    if size > 1:  # a model that does not hold the parameters: refused on every rank
        ddp = dist.DistributedOptimizer(fo.optim.SGD(params(np.float32), lr=0.1))
        other = fo.nn.Linear(2, 2) if rank == size - 1 else None
        grads = other if other is not None else [np.zeros(s, np.float32) for s in SHAPES]
        expect_value_error(lambda: ddp.step(grads), f"rank {size - 1}: optimizer param_groups")


def added_group() -> None:
    """add_param_group lays the buckets out again (a new dtype too); steps stay equal."""
    _, rank, size = comm_info()
    ref_p, dist_p = params(np.float32), params(np.float32)
    ref = fo.optim.Adam(ref_p, lr=0.01)
    ddp = dist.DistributedOptimizer(fo.optim.Adam(dist_p, lr=0.01))
    extra_ref, extra = np.ones((4, 2)), np.ones((4, 2))
    ref.add_param_group({"params": [extra_ref], "lr": 0.1})
    ddp.add_param_group({"params": [extra], "lr": 0.1})
    assert len(ddp.param_groups) == 2 and sum(ddp.bucket_sizes) == sum(
        a.nbytes for a in [*dist_p, extra]
    )
    shapes = [*SHAPES, (4, 2)]
    dtypes = [np.float32] * len(SHAPES) + [np.float64]
    for step in range(2):
        per_sample = sample_grads(step, 2 * size + 1, np.float64, shapes=shapes)
        rows = rank_rows(2 * size + 1, rank, size)
        ref.step([g.mean(0).astype(d) for g, d in zip(per_sample, dtypes, strict=True)])
        mine = [g[rows].mean(0).astype(d) for g, d in zip(per_sample, dtypes, strict=True)]
        ddp.step(mine, num_samples=len(rows))
    assert_close(dist_p, ref_p, np.float32, "after add_param_group")
    np.testing.assert_allclose(extra, extra_ref, rtol=1e-11)


def all_checks() -> None:
    for check in (
        every_optimizer,
        groups_clipping_schedules,
        nonfinite_and_none,
        no_sync_accumulation,
        small_buckets_and_split_collectives,
        refusals,
        broadcasts,
        model_steps,
        added_group,
    ):
        check()


run_cases({"all": all_checks})

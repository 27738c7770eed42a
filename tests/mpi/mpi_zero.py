"""Cases for tests/test_distributed_zero.py: ZeroRedundancyOptimizer against one process on the
global batch, replicas bitwise equal, consolidated state, checkpoints across world sizes. One
launch per world size runs every check."""

import hashlib
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


def assert_replicas_equal(arrays, what: str) -> None:
    """Every rank's arrays hold the same bits."""
    comm, _, _ = comm_info()
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
    digests = comm.allgather(digest)
    assert len(set(digests)) == 1, (what, digests)


def consolidated(zero, to=0):
    """The consolidated state_dict, sent to every rank for comparison (test only: pickled)."""
    comm, rank, _ = comm_info()
    zero.consolidate_state_dict(to=to)
    sd = zero.state_dict() if rank == to else None
    if rank != to:
        assert "zero_shard" in zero.state_dict()
    return comm.bcast(sd, root=to)


def state_budget(ref, zero, n_flats: int) -> None:
    """Per-rank state bytes: 1/N of one process plus at most 64 bytes of padding per state
    array and flat buffer."""
    _, _, size = comm_info()
    single = sum(
        a.nbytes
        for entry in ref.state_dict()["state"].values()
        for a in entry.values()
        if isinstance(a, np.ndarray)
    )
    names = max(
        (
            len([a for a in e.values() if isinstance(a, np.ndarray)])
            for e in ref.state_dict()["state"].values()
        ),
        default=0,
    )
    assert zero.state_nbytes() <= single / size + 64 * names * n_flats, (
        zero.state_nbytes(),
        single,
        size,
    )


def run_pair(cls, dtype, batches, *, groups=None, none_everywhere=(), hook=None, **kw):
    """One process and ZeRO trained side by side (:func:`train_pair`), replicas compared after
    every step, consolidated state at the end."""
    ref_p, zero_p = params(dtype), params(dtype)
    make_groups = groups or (lambda p: p)
    ref = cls(make_groups(ref_p), **kw)
    zero = dist.ZeroRedundancyOptimizer(make_groups(zero_p), optimizer_class=cls, **kw)

    def check(step):
        assert_replicas_equal(zero_p, f"ZeRO {cls.__name__} step {step}")
        if hook is not None:
            hook(ref, zero)

    train_pair(
        ref, zero, ref_p, zero_p, dtype, batches, none_everywhere=none_everywhere, after_step=check
    )
    assert_same_state(consolidated(zero), ref.state_dict(), dtype, f"ZeRO {cls.__name__}")
    return ref, zero, ref_p, zero_p


def every_optimizer() -> None:
    _, _, size = comm_info()
    batches = [(4 * size, False), (3 * size + 1, True), (2 * size + 1, True)]
    for cls in OPTIMIZERS:
        if "8bit" in cls.__name__:  # blockwise state: cannot be cut into shards
            expect_value_error(
                lambda cls=cls: dist.ZeroRedundancyOptimizer(params(np.float32), cls),
                "element by element",
            )
            continue
        for dtype in DTYPES:
            ref, zero, _, _ = run_pair(cls, dtype, batches, **options(cls))
            state_budget(ref, zero, 1)
    # bfloat16 state (uint16 arrays, one per element, rounded to nearest): sharded exactly
    bf16 = {"state_dtype": "bfloat16", "stochastic_rounding": False}
    ref, zero, _, _ = run_pair(fo.optim.AdamW, np.float32, batches, **bf16)
    assert zero.optimizer.state_dict()["state"][0]["exp_avg"].dtype == np.uint16


def groups_clipping_mixed_dtypes() -> None:
    _, rank, size = comm_info()

    def grouped(p):
        return [{"params": p[:2], "lr": 0.05}, {"params": p[2:], "weight_decay": 0.1}]

    def clipped(ref, zero):
        assert ref.last_grad_norm > 0.3, ref.last_grad_norm
        np.testing.assert_allclose(zero.last_grad_norm, ref.last_grad_norm, rtol=1e-6)

    batches = [(2 * size + 1, True)] * 3
    for dtype in DTYPES:
        ref, zero, ref_p, zero_p = run_pair(
            fo.optim.AdamW,
            dtype,
            batches,
            groups=grouped,
            hook=clipped,
            lr=0.01,
            max_grad_norm=0.3,
            clip_value=0.9,
            amsgrad=True,
        )
        state_budget(ref, zero, 2)
        # a schedule drives the shards through param_groups
        schedules = [fo.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in (ref, zero)]
        for step in range(2):
            per_sample = sample_grads(10 + step, size, dtype)
            ref.step(mean_grads(per_sample, slice(None), dtype))
            zero.step(mean_grads(per_sample, rank_rows(size, rank, size), dtype))
            for s in schedules:
                s.step()
        assert_close(zero_p, ref_p, dtype, "StepLR on ZeRO")
        assert_same_state(consolidated(zero), ref.state_dict(), dtype, "StepLR on ZeRO")
    # float32 and float64 parameters in one group: one flat buffer per dtype
    mixed = [
        p.astype(np.float32 if i % 2 else np.float64) for i, p in enumerate(params(np.float64))
    ]
    ref_p, zero_p = [p.copy() for p in mixed], [p.copy() for p in mixed]
    ref = fo.optim.Adam(ref_p, lr=0.01)
    zero = dist.ZeroRedundancyOptimizer(zero_p, optimizer_class=fo.optim.Adam, lr=0.01)
    for step in range(2):
        per_sample = sample_grads(step, 2 * size, np.float64)
        ref.step([g.mean(0).astype(p.dtype) for g, p in zip(per_sample, ref_p, strict=True)])
        rows = rank_rows(2 * size, rank, size)
        zero.step(
            [g[rows].mean(0).astype(p.dtype) for g, p in zip(per_sample, zero_p, strict=True)]
        )
    for a, b in zip(zero_p, ref_p, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert_replicas_equal(zero_p, "mixed dtypes")


def nonfinite_and_none() -> None:
    _, rank, size = comm_info()
    for dtype in DTYPES:
        for kw in ({"skip_nonfinite": True}, {"max_grad_norm": 1.0}):
            p = params(dtype)
            before = [a.copy() for a in p]
            zero = dist.ZeroRedundancyOptimizer(p, optimizer_class=fo.optim.Adam, lr=0.1, **kw)
            grads = mean_grads(sample_grads(0, size, dtype), rank_rows(size, rank, size), dtype)
            if rank == size - 1:
                grads[0][0, 0] = np.inf if "skip_nonfinite" in kw else np.nan
            zero.step(grads)
            assert zero.last_step_skipped and zero.skipped_steps == 1, kw
            assert all(np.array_equal(a, b) for a, b in zip(p, before, strict=True))
            assert zero.state_nbytes() == 0
            grads[0][0, 0] = 0.0
            zero.step(grads)
            assert not zero.last_step_skipped
    # None on every rank: the parameter is skipped (no state), as in one process
    for dtype in DTYPES:
        run_pair(fo.optim.Adam, dtype, [(2 * size, True)] * 2, none_everywhere=(1, 3), lr=0.01)


def split_collectives() -> None:
    with collectives_of_at_most(5):
        _, _, size = comm_info()
        for dtype in DTYPES:
            run_pair(fo.optim.NAdam, dtype, [(2 * size + 1, True), (size, False)])


def refusals() -> None:
    comm, rank, size = comm_info()
    p = params(np.float32)
    zero = dist.ZeroRedundancyOptimizer(p, lr=0.1)
    good = mean_grads(sample_grads(0, size, np.float32), rank_rows(size, rank, size), np.float32)
    bad = size - 1
    before = [a.copy() for a in p]
    expect_value_error(lambda: zero.step(good[:-1] if rank == bad else good), f"rank {bad}: got 4")
    assert all(np.array_equal(a, b) for a, b in zip(p, before, strict=True))
    wrong_shape = [good[0].T.copy(), *good[1:]] if rank == bad else good
    expect_value_error(lambda: zero.step(wrong_shape), f"rank {bad}: grads[0] has shape (3, 5)")
    assert all(np.array_equal(a, b) for a, b in zip(p, before, strict=True))
    zero.step(good)
    # arrays that cannot be sharded: the same ValueError on every rank
    shared = params(np.float32)
    expect_value_error(
        lambda: dist.ZeroRedundancyOptimizer([*shared, shared[0][1]]), "params[0] and params[5]"
    )
    expect_value_error(
        lambda: dist.ZeroRedundancyOptimizer([shared[0].T, *shared[1:]]), "C-contiguous"
    )
    expect_value_error(lambda: zero.consolidate_state_dict(to=size), "to must be a rank")
    # a state_dict that does not fit is refused, on every rank, with nothing changed
    other = fo.optim.AdamW(params(np.float32, shapes=SHAPES[:2]))
    sd_before = consolidated(zero)
    expect_value_error(lambda: zero.load_state_dict(other.state_dict()), "param")
    assert_same_state(consolidated(zero), sd_before, np.float32, "after a refused load")
    if size == 1:
        return
    shapes = [*SHAPES[:1], (8,) if rank == bad else (7,), *SHAPES[2:]]
    message = expect_value_error(
        lambda: dist.ZeroRedundancyOptimizer(params(np.float32, shapes=shapes)), "params[1]"
    )
    assert len(set(comm.allgather(message))) == 1


def save_checkpoint(path: str) -> None:
    """Train at this world size, save a consolidated checkpoint (with the parameters)."""
    _, rank, size = comm_info()
    for dtype in DTYPES:
        _, zero, _, zero_p = run_pair(
            fo.optim.NAdam, dtype, [(2 * size + 1, True)] * 3, lr=0.01, skip_nonfinite=True
        )
        zero.consolidate_state_dict(to=0)
        if rank == 0:
            fo.save(f"{path}.{np.dtype(dtype).name}", optimizer=zero, params=list(zero_p))
    dist.init().Barrier()


def resume_checkpoint(path: str) -> None:
    """Load a checkpoint saved at another world size on every rank and continue: the same
    parameters and state as one process continuing from it."""
    _, rank, size = comm_info()
    for dtype in DTYPES:
        name = f"{path}.{np.dtype(dtype).name}"
        saved = fo.load(name)
        ref_p = [np.array(a) for a in saved.extra["params"]]
        zero_p = [a.copy() for a in ref_p]
        ref = fo.optim.NAdam(ref_p, lr=0.01, skip_nonfinite=True)
        ref.load_state_dict(saved.optimizer.state_dict)
        zero = dist.ZeroRedundancyOptimizer(
            zero_p, optimizer_class=fo.optim.NAdam, lr=0.01, skip_nonfinite=True
        )
        fo.load(name, optimizer=zero)
        exact = consolidated(zero)  # loading then gathering gives back the very same arrays
        for index, entry in saved.optimizer.state_dict["state"].items():
            for key, value in entry.items():
                assert np.array_equal(exact["state"][index][key], value), (index, key)
        for step in range(2):
            per_sample = sample_grads(50 + step, 2 * size + 1, dtype)
            ref.step(mean_grads(per_sample, slice(None), dtype))
            rows = rank_rows(2 * size + 1, rank, size)
            zero.step(mean_grads(per_sample, rows, dtype), num_samples=len(rows))
        assert_close(zero_p, ref_p, dtype, "resumed")
        assert_replicas_equal(zero_p, "resumed")
        assert_same_state(consolidated(zero), ref.state_dict(), dtype, "resumed")


def model_steps() -> None:
    """step(model) and step(): gradients matched to the parameters by identity."""
    want, got = model_pair(
        lambda groups: fo.optim.AdamW(groups, lr=0.01),
        lambda groups: dist.ZeroRedundancyOptimizer(groups, lr=0.01),
    )
    assert_close(got, want, np.float32, "ZeRO step(model)")
    assert_replicas_equal(got, "ZeRO step(model)")


def add_param_group() -> None:
    """A group added after some steps (torch's add_param_group): sharded like the others, the
    same steps and consolidated state as one process; refusals raise on every rank and change
    nothing."""
    _, rank, size = comm_info()
    for dtype in DTYPES:
        ref_p, zero_p = params(dtype), params(dtype)
        ref = fo.optim.AdamW(ref_p[:2], lr=0.01, weight_decay=0.1)
        zero = dist.ZeroRedundancyOptimizer(
            zero_p[:2], optimizer_class=fo.optim.AdamW, lr=0.01, weight_decay=0.1
        )
        for step in range(4):
            if step == 2:
                ref.add_param_group({"params": ref_p[2:], "lr": 0.05, "betas": (0.8, 0.9)})
                zero.add_param_group({"params": zero_p[2:], "lr": 0.05, "betas": (0.8, 0.9)})
                assert [len(g["params"]) for g in zero.param_groups] == [2, 3]
                assert zero.param_groups[1]["params"][0] is zero_p[2]
            count = 2 if step < 2 else len(SHAPES)
            batch = 2 * size + 1
            per_sample = sample_grads(step, batch, dtype, shapes=SHAPES[:count])
            rows = rank_rows(batch, rank, size)
            ref.step(mean_grads(per_sample, slice(None), dtype))
            zero.step(mean_grads(per_sample, rows, dtype), num_samples=len(rows))
            assert_close(zero_p[:count], ref_p[:count], dtype, f"add_param_group step {step}")
            assert_replicas_equal(zero_p, f"add_param_group step {step}")
        assert_same_state(consolidated(zero), ref.state_dict(), dtype, "add_param_group")
        state_budget(ref, zero, 2)
    # refusals: the same error on every rank, nothing added
    extra = params(np.float32, seed=5, shapes=[(3,)])
    for group, fragment in [
        ({"params": zero_p[:1]}, "share memory"),
        ({"params": extra, "momentum": 0.9}, "unknown options"),
        ({"params": extra, "lr": -1.0}, "lr"),
        ({"params": [np.zeros(3, np.float32) if rank == 0 else np.zeros(4, np.float32)]}, "rank"),
        ({"params": []}, "no params"),
    ]:
        if size == 1 and fragment == "rank":
            continue
        expect_value_error(lambda group=group: zero.add_param_group(group), fragment)
        assert len(zero.param_groups) == len(zero.optimizer.param_groups) == 2
    assert zero.optim is zero.optimizer


def all_checks(*args: str) -> None:
    every_optimizer()
    groups_clipping_mixed_dtypes()
    nonfinite_and_none()
    split_collectives()
    refusals()
    model_steps()
    add_param_group()
    for arg in args:
        action, path = arg.split("=", 1)
        {"save": save_checkpoint, "resume": resume_checkpoint}[action](path)


run_cases({"all": all_checks, "add_param_group": add_param_group})

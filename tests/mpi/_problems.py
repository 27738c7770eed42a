"""Shared by the optimizer MPI scripts: a global batch of per-sample gradients, each rank's
slice of it, the single-process reference run, and comparisons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

import ferroptim as fo
from ferroptim.distributed import _collectives
from ferroptim.optim.optimizer import Optimizer

DTYPES = (np.float32, np.float64)

SHAPES = [(5, 3), (7,), (2, 3, 4), (1,), (33,)]

#: every optimizer class ferroptim exports (``fo.optim.__all__``: registry-built and 8-bit);
#: ZeRO refuses the 8-bit ones (blockwise state), which its test checks
OPTIMIZERS = sorted(
    (
        obj
        for obj in (getattr(fo.optim, name) for name in fo.optim.__all__)
        if isinstance(obj, type) and issubclass(obj, Optimizer) and obj is not Optimizer
    ),
    key=lambda cls: cls.__name__,
)
#: settings per class: SGD with momentum (a state), the 8-bit ones quantizing even small tensors
EXTRA = {
    "SGD": {"lr": 0.05, "momentum": 0.9},
    **{n: {"min_8bit_size": 0} for n in ("Adam8bit", "AdamW8bit", "Lion8bit")},
}


@contextmanager
def collectives_of_at_most(count: int) -> Iterator[None]:
    """Inside the block, every collective is split into pieces of at most ``count`` elements
    (``_collectives.MAX_COUNT``, restored on exit)."""
    saved = _collectives.MAX_COUNT
    _collectives.MAX_COUNT = count
    try:
        yield
    finally:
        _collectives.MAX_COUNT = saved


def options(cls: type) -> dict:
    return dict(EXTRA.get(cls.__name__, {}))


def params(dtype, seed: int = 0, shapes=SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def sample_grads(step: int, batch: int, dtype, shapes=SHAPES, seed: int = 100) -> list[np.ndarray]:
    """Per-sample gradients ``(batch, *shape)`` of step ``step`` (float64)."""
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal((batch, *s)) for s in shapes]


def mean_grads(per_sample: list[np.ndarray], rows: slice | np.ndarray, dtype) -> list[np.ndarray]:
    """The gradient of a mean-reduced loss over ``rows`` of the batch."""
    return [g[rows].mean(axis=0).astype(dtype) for g in per_sample]


def rank_rows(batch: int, rank: int, size: int) -> np.ndarray:
    """This rank's (possibly uneven) slice of ``range(batch)``."""
    return np.array_split(np.arange(batch), size)[rank]


def tolerance(dtype) -> dict:
    return (
        {"rtol": 2e-5, "atol": 2e-6}
        if np.dtype(dtype) == np.float32
        else {"rtol": 1e-11, "atol": 1e-12}
    )


def assert_close(got: list, want: list, dtype, what: str) -> None:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, err_msg=f"{what}[{i}]", **tolerance(dtype))


def assert_same_state(got: dict, want: dict, dtype, what: str) -> None:
    """Two optimizer state_dicts: same keys, groups and scalars; arrays within tolerance."""
    assert set(got) == set(want), (what, set(got), set(want))
    assert got["param_groups"] == want["param_groups"], (what, got["param_groups"])
    assert set(got["state"]) == set(want["state"]), (what, set(got["state"]), set(want["state"]))
    for index, entry in want["state"].items():
        assert set(got["state"][index]) == set(entry), (what, index)
        for name, value in entry.items():
            mine = got["state"][index][name]
            if isinstance(value, np.ndarray):
                assert mine.shape == value.shape and mine.dtype == value.dtype, (what, index, name)
                np.testing.assert_allclose(
                    mine, value, err_msg=f"{what} state[{index}][{name}]", **tolerance(dtype)
                )
            else:
                assert mine == value, (what, index, name, mine, value)
    for key in set(want) - {"state", "param_groups"}:
        assert got[key] == want[key], (what, key)


def expect_value_error(call, *fragments: str) -> str:
    """Run ``call``; it must raise ValueError whose message holds every fragment."""
    try:
        call()
    except ValueError as exc:
        message = str(exc)
        for fragment in fragments:
            assert fragment in message, (fragment, message)
        return message
    raise AssertionError(f"no ValueError (expected one mentioning {fragments})")


def comm_info():
    """``(communicator, rank, size)``."""
    from ferroptim import distributed as dist

    comm = dist.init()
    return comm, comm.Get_rank(), comm.Get_size()


def train_pair(ref, other, ref_p, other_p, dtype, batches, *, none_everywhere=(), after_step=None):
    """Step ``ref`` (one process) on the whole batch and the distributed ``other`` on this rank's
    slice, for each ``(batch size, give num_samples)``; after every step the parameters must
    agree and the caller's gradients be unchanged; ``after_step(step)`` checks more."""
    _, rank, size = comm_info()
    for step, (batch, weighted) in enumerate(batches):
        per_sample = sample_grads(step, batch, dtype)
        want = mean_grads(per_sample, slice(None), dtype)
        rows = rank_rows(batch, rank, size)
        mine = mean_grads(per_sample, rows, dtype)
        for i in none_everywhere:
            want[i] = mine[i] = None
        kept = [None if g is None else g.copy() for g in mine]
        ref.step(want)
        other.step(mine, num_samples=len(rows) if weighted else None)
        for g, k in zip(mine, kept, strict=True):  # the caller's gradients are only read
            assert (g is None and k is None) or np.array_equal(g, k)
        assert_close(other_p, ref_p, dtype, f"{type(ref).__name__} step {step} params")
        if after_step is not None:
            after_step(step)


def model_pair(make_optimizer, make_distributed, steps: int = 3):
    """A small MLP trained on a global batch in one process (``opt.step(model)``) and on this
    rank's slice with the distributed optimizer (``step(model, num_samples=...)``, groups built
    by ``fo.optim.param_groups``, so not in ``parameters()`` order; then ``step()`` with no
    argument); returns both models' parameters after ``steps`` steps each way."""
    _, rank, size = comm_info()

    def mlp():
        rng = np.random.default_rng(7)
        return fo.nn.Sequential(
            fo.nn.Linear(6, 8, rng=rng), fo.nn.Tanh(), fo.nn.Linear(8, 3, rng=rng)
        )

    ref_model, dist_model = mlp(), mlp()
    ref = make_optimizer(fo.optim.param_groups(ref_model, weight_decay=0.1))
    other = make_distributed(fo.optim.param_groups(dist_model, weight_decay=0.1))
    loss_fn = fo.nn.MSELoss()
    for step in range(2 * steps):
        rng = np.random.default_rng(1000 + step)
        batch = 2 * size + 1
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        y = rng.standard_normal((batch, 3)).astype(np.float32)
        rows = rank_rows(batch, rank, size)
        for model, opt, part in ((ref_model, ref, slice(None)), (dist_model, other, rows)):
            model.zero_grad()
            loss_fn(model(x[part]), y[part])
            model.backward(loss_fn.backward())
            if opt is ref:
                opt.step(model) if step < steps else opt.step()
            elif step < steps:
                opt.step(model, num_samples=len(rows))
            else:
                opt.step(num_samples=len(rows))
    return ref_model.parameters(), dist_model.parameters()

"""Checks that every rank holds the same parameters, and agreement on one step's gradients.

Both end in the same exception on every rank (never one rank raising while the others wait in a
collective): each rank contributes a few numbers to one small collective, and only when those
show a problem are the details exchanged (as strings) to build the message.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ferroptim.distributed._collectives import iallreduce_sum
from ferroptim.distributed._comm import mpi


def describe(groups: Sequence[Sequence[np.ndarray]]) -> list[str]:
    """One line per parameter (``group g param i: shape ... dtype ...``), plus group sizes."""
    lines = [f"{len(groups)} param groups"]
    index = 0
    for g, params in enumerate(groups):
        lines.append(f"param_groups[{g}] has {len(params)} params")
        for p in params:
            shape, dtype = getattr(p, "shape", None), getattr(p, "dtype", type(p).__name__)
            lines.append(f"params[{index}] has shape {shape} and dtype {dtype}")
            index += 1
    return lines


def check_same_params(
    comm: Any, groups: Sequence[Sequence[np.ndarray]], what: str, problem: str | None = None
) -> None:
    """Raise the same ValueError on every rank unless every rank's ``groups`` have the same
    number, shapes and dtypes of parameters, and no rank found a ``problem`` with its arrays
    (which is then raised on every rank). One allgather of a 32-byte digest when all is well."""
    lines = [*describe(groups), f"parameters: {problem or 'valid'}"]
    digest = np.frombuffer(hashlib.sha256("\n".join(lines).encode()).digest(), dtype=np.uint8)
    digests = np.empty((comm.Get_size(), digest.size), dtype=np.uint8)
    comm.Allgather(digest, digests)
    if (digests == digests[0]).all():
        if problem is not None:
            raise ValueError(f"{what}: {problem}")
        return
    every = comm.allgather(lines)  # only on a mismatch: small strings, not arrays
    for r, theirs in enumerate(every):
        for k in range(max(len(theirs), len(every[0]))):
            ours = every[0][k] if k < len(every[0]) else "nothing more"
            here = theirs[k] if k < len(theirs) else "nothing more"
            if ours != here:
                raise ValueError(
                    f"{what}: ranks hold different parameters; first mismatch: rank 0: {ours}, "
                    f"rank {r}: {here}"
                )


def check_arrays(params: Sequence[object]) -> str | None:
    """What is wrong with ``params`` as parameters to shard (None if nothing): each must be a
    writeable, C-contiguous float32/float64 array, and no two may share memory."""
    ranges = []
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray):
            return f"params[{i}] must be a numpy.ndarray, got {type(p).__name__}"
        if p.dtype not in (np.float32, np.float64):
            return f"params[{i}] must be float32 or float64, got {p.dtype}"
        if not (p.flags.c_contiguous and p.flags.writeable):
            return f"params[{i}] must be a writeable C-contiguous array"
        if p.nbytes:
            ranges.append((p.ctypes.data, p.ctypes.data + p.nbytes, i))
    ranges.sort()
    for (_, end, i), (start, _, j) in itertools.pairwise(ranges):
        if start < end:
            first, second = sorted((i, j))
            return f"params[{first}] and params[{second}] share memory"
    return None


class StepAgreement(NamedTuple):
    """What every rank agreed on before a step's gradients move."""

    #: per parameter: some rank has a gradient for it (all None: the step skips it)
    present: np.ndarray
    #: sum of every rank's ``num_samples`` (None when no rank gave one)
    total_samples: float | None


def check_grads(owner: Any, params: Sequence[np.ndarray], grads: Any) -> tuple[list, str | None]:
    """``grads`` as a list and this rank's complaint (None if they fit ``params``).

    ``grads`` may be a model (each parameter of ``owner.param_groups`` gets the gradient the model
    holds for that very array) or None (the live modules holding the parameters), as for
    ``Optimizer.step``; a failure to find them is a complaint too, so that every rank raises. A
    read-only parameter is a complaint: ZeRO's shard optimizer writes through views taken at
    construction, which stay writeable when the array itself is made read-only later."""
    from ferroptim.optim._model_grads import resolve_gradients

    try:
        grads = resolve_gradients(owner, grads)
    except (TypeError, ValueError) as exc:
        return [], str(exc)
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
        try:
            grads = list(grads) if not isinstance(grads, np.ndarray) else None
        except TypeError:
            grads = None
        if grads is None:
            return [], "grads must be a list of arrays (or None entries), one per parameter"
    grads = list(grads)
    if len(grads) != len(params):
        return grads, f"got {len(grads)} gradients for {len(params)} params"
    for i, p in enumerate(params):  # e.g. the old arrays of a flattened model
        if not p.flags.writeable:
            return grads, f"params[{i}] is read-only; it must be writeable to be updated in place"
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if g is None:
            continue
        if not isinstance(g, np.ndarray):
            return grads, f"grads[{i}] must be a numpy.ndarray or None, got {type(g).__name__}"
        if g.shape != p.shape or g.dtype != p.dtype:
            return grads, (
                f"grads[{i}] has shape {g.shape} and dtype {g.dtype}, but params[{i}] has shape "
                f"{p.shape} and dtype {p.dtype}"
            )
    return grads, None


def check_num_samples(num_samples: Any) -> str | None:
    if num_samples is None:
        return None
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        return f"num_samples must be an int or None, got {type(num_samples).__name__}"
    if num_samples < 0:
        return f"num_samples must be >= 0, got {num_samples}"
    return None


class PendingAgreement:
    """An agreement in flight (:func:`start_agreement`): :meth:`test` lets MPI progress it while
    the caller does local work, :meth:`finish` waits for it and decodes it."""

    def __init__(self, comm: Any, meta: np.ndarray, requests: list[Any], problem: str | None):
        self._comm, self._meta, self._requests, self._problem = comm, meta, requests, problem

    def test(self) -> None:
        mpi().Request.Testall(self._requests)

    def finish(self) -> StepAgreement:
        """Wait; raise the same ValueError on every rank when some rank refused its gradients or
        the ranks disagree on ``num_samples``; else what they agreed on."""
        mpi().Request.Waitall(self._requests)
        comm, meta = self._comm, self._meta
        if meta[0]:
            problems = comm.allgather(self._problem)  # only on a refusal: the messages themselves
            said = "; ".join(f"rank {r}: {p}" for r, p in enumerate(problems) if p is not None)
            raise ValueError(f"grads refused before any communication ({said})")
        size = comm.Get_size()
        if meta[1] not in (0, size):
            raise ValueError(
                f"num_samples must be given on every rank or on none (given on {int(meta[1])} of "
                f"{size} ranks)"
            )
        if meta[1] and meta[2] <= 0:
            raise ValueError("num_samples add up to 0 over all ranks: no sample to average over")
        return StepAgreement(meta[3:] > 0, float(meta[2]) if meta[1] else None)


def start_agreement(
    comm: Any,
    n_params: int,
    problem: str | None,
    present: np.ndarray,
    num_samples: float | None,
) -> PendingAgreement:
    """Start one small allreduce: every rank's refusal flag, whether it gave ``num_samples`` and
    how many, and which parameters have a gradient anywhere."""
    meta = np.zeros(3 + n_params, dtype=np.float64)
    meta[0] = problem is not None
    meta[1] = num_samples is not None
    meta[2] = num_samples or 0
    if problem is None:
        meta[3:] = present
    return PendingAgreement(comm, meta, iallreduce_sum(comm, meta), problem)


def agree_on_step(
    comm: Any,
    n_params: int,
    problem: str | None,
    present: np.ndarray,
    num_samples: float | None,
) -> StepAgreement:
    """:func:`start_agreement` then :meth:`PendingAgreement.finish` (blocking)."""
    return start_agreement(comm, n_params, problem, present, num_samples).finish()

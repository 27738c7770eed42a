"""ZeroRedundancyOptimizer checkpoints: the shards' state gathered into the single-process
optimizer's state_dict on one rank, and a single-process state_dict cut into this rank's shard.
Arrays move by buffer-based collectives (``Gather``, ``Reduce``), never pickled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ferroptim.distributed._collectives import gather_blocks, reduce_sum_to
from ferroptim.distributed.shards import FlatShard, Segment
from ferroptim.optim.optimizer import _GroupState

if TYPE_CHECKING:
    from ferroptim.distributed.zero import ZeroRedundancyOptimizer


def _inner_slots(
    zero: ZeroRedundancyOptimizer,
) -> Iterator[tuple[int, FlatShard, Segment | None, int]]:
    """``(group, flat, segment or None for padding, index in the group's inner params)`` for
    every parameter of the shard's optimizer, in its order."""
    for g, flats in enumerate(zero._flats):
        k = 0
        for flat in flats:
            for segment in flat.segments:
                yield g, flat, segment, k
                k += 1
            if flat.padding[1] > flat.padding[0]:
                yield g, flat, None, k
                k += 1


def _scalar_names(zero: ZeroRedundancyOptimizer) -> tuple[str, ...]:
    return tuple(zero.optimizer.scalar_state(_GroupState(1), 0))


def _hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "params"}


def consolidate(zero: ZeroRedundancyOptimizer, to: int) -> dict[str, Any] | None:
    """The single-process state_dict on rank ``to`` (None on the others). Collective."""
    comm, inner = zero.comm, zero.optimizer
    size = comm.Get_size()
    if isinstance(to, bool) or not isinstance(to, int | np.integer) or not 0 <= to < size:
        raise ValueError(f"to must be a rank in [0, {size}), got {to!r}")
    names = _scalar_names(zero)
    states = inner._group_states
    # per parameter: [has state, scalars...] from the rank holding its first element
    table = np.zeros((len(zero._params), 1 + len(names)), dtype=np.float64)
    offsets = [0]
    for group in inner.param_groups[:-1]:
        offsets.append(offsets[-1] + len(group["params"]))
    inner_state = inner.state_dict()["state"]
    for g, _, segment, k in _inner_slots(zero):
        entry = inner_state.get(offsets[g] + k)
        if segment is not None and segment.start == 0 and entry is not None:
            table[segment.index] = [1.0, *(float(entry[n]) for n in names)]
    summed = reduce_sum_to(comm, table, to)
    arrays: dict[int, dict[str, np.ndarray]] = {}
    slots = list(_inner_slots(zero))
    for g, flats in enumerate(zero._flats):
        held = [n for n in inner.active_states(inner.param_groups[g]) if n in states[g].arrays]
        for flat in flats:
            for name in held:
                # every flat has a slot on every rank (a segment or its padding)
                first = next(k for gg, f, _, k in slots if gg == g and f is flat)
                block = np.zeros(flat.shard, dtype=states[g].arrays[name][first].dtype)
                for gg, f, segment, k in slots:
                    if gg == g and f is flat and segment is not None:
                        block[segment.at : segment.at + segment.stop - segment.start] = states[
                            g
                        ].arrays[name][k]
                gathered = gather_blocks(comm, block, to)
                if gathered is None:
                    continue
                full = gathered.reshape(-1)
                for index, p, offset in zip(flat.indices, flat.params, flat.offsets, strict=True):
                    arrays.setdefault(index, {})[name] = full[offset : offset + p.size].reshape(
                        p.shape
                    )
    if summed is None:
        return None
    state = {}
    for index in range(len(zero._params)):
        if summed[index, 0]:
            saved: dict[str, Any] = {n: float(summed[index, 1 + j]) for j, n in enumerate(names)}
            saved.update(arrays.get(index, {}))
            state[index] = saved
    groups = []
    start = 0
    for group in zero.param_groups:
        count = len(group["params"])
        groups.append({**_hyperparameters(group), "params": list(range(start, start + count))})
        start += count
    out: dict[str, Any] = {"state": state, "param_groups": groups}
    if zero.skip_nonfinite or zero.skipped_steps:
        out["skipped_steps"] = zero.skipped_steps
    return out


def shard_state(zero: ZeroRedundancyOptimizer) -> dict[str, Any]:
    """This rank's own part: loadable by the same rank at the same world size only."""
    return {
        "zero_shard": {
            "rank": zero.comm.Get_rank(),
            "world_size": zero.comm.Get_size(),
            "optimizer": zero.optimizer.state_dict(),
            "param_groups": [_hyperparameters(g) for g in zero.param_groups],
            "skipped_steps": zero.skipped_steps,
        }
    }


def load(zero: ZeroRedundancyOptimizer, state_dict: Any) -> None:
    """Load a single-process state_dict (or this rank's own :func:`shard_state`)."""
    if isinstance(state_dict, dict) and "zero_shard" in state_dict:
        _load_shard(zero, state_dict["zero_shard"])
        return
    known = set(zero.optimizer.defaults)
    facade = zero.optimizer_class(
        [
            {**{k: v for k, v in _hyperparameters(g).items() if k in known}, "params": g["params"]}
            for g in zero.param_groups
        ],
        **zero._defaults,
    )
    facade.load_state_dict(state_dict)  # every check of the single-process optimizer
    full = facade.state_dict()
    names = _scalar_names(zero)
    offsets = [0]
    for group in zero.optimizer.param_groups[:-1]:
        offsets.append(offsets[-1] + len(group["params"]))
    inner_state = {}
    for g, _, segment, k in _inner_slots(zero):
        if segment is None:
            continue
        entry = full["state"].get(segment.index)
        if entry is None:
            continue
        part = {n: entry[n] for n in names}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                part[name] = value.reshape(-1)[segment.start : segment.stop]
        inner_state[offsets[g] + k] = part
    inner_groups = [
        {**_hyperparameters(group), "params": list(range(start, start + len(mine["params"])))}
        for group, mine, start in zip(
            full["param_groups"], zero.optimizer.param_groups, offsets, strict=True
        )
    ]
    zero.optimizer.load_state_dict({"state": inner_state, "param_groups": inner_groups})
    for group, saved in zip(zero.param_groups, full["param_groups"], strict=True):
        params = group["params"]
        group.clear()
        group.update(_hyperparameters(saved), params=params)
    zero.skipped_steps = int(full.get("skipped_steps", 0))


def _load_shard(zero: ZeroRedundancyOptimizer, shard: Any) -> None:
    rank, size = zero.comm.Get_rank(), zero.comm.Get_size()
    if not isinstance(shard, dict) or (shard.get("rank"), shard.get("world_size")) != (rank, size):
        raise ValueError(
            "state_dict holds one rank's shard (state_dict() before consolidate_state_dict); it "
            f"loads only on that rank at that world size, not on rank {rank} of {size}: "
            "consolidate_state_dict() first to save a state any world size can load"
        )
    zero.optimizer.load_state_dict(shard["optimizer"])
    for group, saved in zip(zero.param_groups, shard["param_groups"], strict=True):
        group.update(saved)
    zero.skipped_steps = int(shard["skipped_steps"])

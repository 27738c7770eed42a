"""ZeRO layout: the parameters of one parameter group and dtype laid end to end in one flat
buffer, padded to ``size * shard`` elements, and cut into ``size`` equal shards that each start
on a 64-byte boundary. Rank ``r`` owns ``[r * shard, (r + 1) * shard)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ferroptim.distributed._collectives import (
    ALIGN_BYTES,
    aligned_zeros,
    allgather_in_place,
    reduce_scatter_block,
)


class Segment(NamedTuple):
    """The part of one parameter inside this rank's shard."""

    #: the parameter's index over all groups (torch's state_dict key); shadows tuple.index
    index: int  # type: ignore[assignment]
    #: element range inside the flattened parameter
    start: int
    stop: int
    #: where that range starts inside this rank's shard
    at: int


class FlatShard:
    """One parameter group's parameters of one dtype, flattened and sharded over ``size`` ranks.

    Attributes
    ----------
    indices, params : list
        The parameters (global indices, the user's arrays), in order.
    offsets : list of int
        Where each parameter starts in the flat buffer.
    total, shard : int
        Elements of all the parameters; elements per rank (a multiple of 64 bytes).
    grads : numpy.ndarray
        The flat gradient buffer (``size * shard`` elements, padding zero).
    grad_shard : numpy.ndarray
        This rank's block of the reduced gradients.
    values : numpy.ndarray
        The flat parameter buffer the ranks gather into.
    segments : list of Segment
        Parameter pieces inside this rank's shard (a zero-size parameter has an empty segment
        on the rank owning its offset).
    padding : tuple of int
        ``(start, stop)`` of the padding inside this rank's shard (empty when none).
    """

    def __init__(
        self, indices: Sequence[int], params: Sequence[np.ndarray], rank: int, size: int
    ) -> None:
        dtype = params[0].dtype
        self.indices, self.params, self.dtype = list(indices), list(params), dtype
        self._by_index = dict(zip(self.indices, self.params, strict=True))
        self.offsets = list(np.cumsum([0] + [p.size for p in params[:-1]]).tolist())
        self.total = int(sum(p.size for p in params))
        per_line = ALIGN_BYTES // dtype.itemsize
        lines = max(1, -(-self.total // (size * per_line)))
        self.shard = lines * per_line
        self.rank, self.size = rank, size
        self.grads = aligned_zeros(self.shard * size, dtype)
        # one rank owns everything: its shard is the whole buffer, nothing to reduce
        self.grad_shard = self.grads if size == 1 else aligned_zeros(self.shard, dtype)
        self.values = aligned_zeros(self.shard * size, dtype)
        low, high = rank * self.shard, (rank + 1) * self.shard
        self.segments = []
        for index, p, offset in zip(self.indices, self.params, self.offsets, strict=True):
            a, b = max(offset, low), min(offset + p.size, high)
            owns_empty = p.size == 0 and min(offset // self.shard, size - 1) == rank
            if a < b or owns_empty:
                start = a - offset if a < b else 0
                self.segments.append(
                    Segment(index, start, start + max(b - a, 0), max(a, low) - low)
                )
        self.padding = (max(self.total, low) - low, self.shard) if self.total < high else (0, 0)

    def owner(self, position: int) -> int:
        """The rank whose shard holds flat element ``position``."""
        return min(position // self.shard, self.size - 1)

    def first_owner(self, k: int) -> int:
        """The rank holding the first element of parameter ``k`` (of this flat)."""
        return self.owner(self.offsets[k])

    def param_views(self) -> list[np.ndarray]:
        """This rank's segments as views of the user's arrays, then the padding (a view of
        :attr:`values`): the arrays the shard's optimizer updates."""
        views = [self._flat_param(s.index)[s.start : s.stop] for s in self.segments]
        return views + self._padding_of(self.values[self.rank * self.shard :])

    def grad_views(self) -> list[np.ndarray]:
        """The reduced gradients of :meth:`param_views`, as views of :attr:`grad_shard`."""
        views = [self.grad_shard[s.at : s.at + s.stop - s.start] for s in self.segments]
        return views + self._padding_of(self.grad_shard)

    def _padding_of(self, shard: np.ndarray) -> list[np.ndarray]:
        a, b = self.padding
        return [shard[a:b]] if b > a else []

    def _flat_param(self, index: int) -> np.ndarray:
        return self._by_index[index].reshape(-1)

    def pack(self, grads: Sequence[np.ndarray | None], scale: float) -> None:
        """``scale * grads`` (zeros for None) into :attr:`grads`; only read the gradients."""
        for g, p, offset in zip(grads, self.params, self.offsets, strict=True):
            out = self.grads[offset : offset + p.size]
            if g is None:
                out.fill(0)
            elif scale == 1.0:
                np.copyto(out, g.reshape(-1))
            else:
                np.multiply(g.reshape(-1), scale, out=out)

    def reduce(self, comm: Any) -> None:
        """:attr:`grad_shard` = the sum over ranks of this rank's block of :attr:`grads`."""
        if self.size > 1:
            reduce_scatter_block(comm, self.grads, self.grad_shard)

    def gather(self, comm: Any) -> None:
        """Every rank's updated shard into every rank's parameters: this rank's segments into
        its block of :attr:`values`, ``Allgather``, the other blocks into the user's arrays."""
        if self.size > 1:
            self.publish()
            allgather_in_place(comm, self.values)
            self.scatter_back()

    def publish(self) -> None:
        """Copy this rank's updated segments into its block of :attr:`values`."""
        base = self.rank * self.shard
        for s in self.segments:
            piece = self._flat_param(s.index)[s.start : s.stop]
            self.values[base + s.at : base + s.at + piece.size] = piece

    def scatter_back(self) -> None:
        """Copy the gathered :attr:`values` outside this rank's block (which the shard's step
        wrote in place already) into the user's arrays."""
        low, high = self.rank * self.shard, (self.rank + 1) * self.shard
        for p, offset in zip(self.params, self.offsets, strict=True):
            flat, end = p.reshape(-1), offset + p.size
            if offset < low:
                stop = min(end, low)
                flat[: stop - offset] = self.values[offset:stop]
            if end > high:
                start = max(offset, high)
                flat[start - offset :] = self.values[start:end]


def flat_shards(
    groups: Sequence[Sequence[np.ndarray]], rank: int, size: int, first_index: int = 0
) -> list[list[FlatShard]]:
    """Per parameter group, one :class:`FlatShard` per dtype (in order of first appearance);
    parameters are numbered over all groups from ``first_index`` (the count of parameters in
    groups laid out before)."""
    out = []
    index = first_index
    for params in groups:
        by_dtype: dict[np.dtype, list[tuple[int, np.ndarray]]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append((index, p))
            index += 1
        out.append(
            [
                FlatShard([i for i, _ in members], [p for _, p in members], rank, size)
                for members in by_dtype.values()
            ]
        )
    return out

"""Gradient buckets: every parameter's gradient packed into one flat buffer per dtype, cut into
buckets of about ``cap_bytes`` (whole parameters, in parameter order) that are reduced one
collective each. The buffers are allocated once and reused by every step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim.distributed._collectives import aligned_zeros, iallreduce_sum
from ferroptim.distributed._comm import mpi


class GradientBuckets:
    """Flat per-dtype gradient buffers for ``params`` (read for shapes and dtypes only).

    Attributes
    ----------
    buffers : dict of numpy.dtype -> numpy.ndarray
        One 64-byte-aligned flat buffer per dtype, parameters in order.
    views : list of numpy.ndarray
        Parameter ``i``'s gradient as a view of its buffer, in the parameter's shape.
    buckets : list of numpy.ndarray
        Consecutive pieces of the buffers (views), each holding whole parameters and about
        ``cap_bytes`` (a parameter larger than that is a bucket of its own).
    """

    def __init__(self, params: Sequence[np.ndarray], cap_bytes: int) -> None:
        sizes: dict[np.dtype, int] = {}
        offsets = []
        for p in params:
            start = sizes.get(p.dtype, 0)
            offsets.append(start)
            sizes[p.dtype] = start + p.size
        self.buffers = {dtype: aligned_zeros(n, dtype) for dtype, n in sizes.items()}
        self.views = [
            self.buffers[p.dtype][start : start + p.size].reshape(p.shape)
            for p, start in zip(params, offsets, strict=True)
        ]
        self.buckets: list[np.ndarray] = []
        #: the parameter indices of each bucket
        self.members: list[list[int]] = []
        for dtype, buffer in self.buffers.items():
            indices = [i for i, p in enumerate(params) if p.dtype == dtype]
            for first, stop in _cut(
                [offsets[i] for i in indices], max(1, cap_bytes // dtype.itemsize)
            ):
                begin = offsets[indices[first]]
                end = offsets[indices[stop]] if stop < len(indices) else buffer.size
                self.buckets.append(buffer[begin:end])
                self.members.append(indices[first:stop])

    def pack(self, grads: Sequence[np.ndarray | None], scale: float, accumulate: bool) -> None:
        """Write ``scale * grads`` into the buffers (added to what is there with ``accumulate``);
        a None gradient is zeros. The gradients are only read."""
        for i, g in enumerate(grads):
            self._pack_one(i, g, scale, accumulate)

    def _pack_one(self, i: int, g: np.ndarray | None, scale: float, accumulate: bool) -> None:
        view = self.views[i]
        if g is None:
            if not accumulate:
                view.fill(0)
        elif accumulate:
            view += g if scale == 1.0 else g * scale
        elif scale == 1.0:
            np.copyto(view, g)
        else:
            np.multiply(g, scale, out=view)

    def pack_bucket(
        self,
        k: int,
        grads: Sequence[np.ndarray | None],
        scale: float,
        progress: Callable[[], None] | None = None,
    ) -> None:
        """:meth:`pack` for bucket ``k``'s parameters only, calling ``progress`` after each (to
        let MPI progress requests in flight while packing)."""
        for i in self.members[k]:
            self._pack_one(i, grads[i], scale, False)
            if progress is not None:
                progress()

    def pack_and_start_sum(
        self, comm: Any, grads: Sequence[np.ndarray | None], scale: float, packed: int = 0
    ) -> list[Any]:
        """:meth:`pack` bucket by bucket (the first ``packed`` buckets are packed already),
        starting each bucket's ``Iallreduce`` as soon as it is packed (and testing the ones in
        flight after every parameter, which lets MPI progress them while the next bucket is
        packed); the requests."""
        Request = mpi().Request
        requests: list[Any] = []

        def progress() -> None:
            if requests:
                Request.Testall(requests)

        for k, bucket in enumerate(self.buckets):
            if k >= packed:
                self.pack_bucket(k, grads, scale, progress)
            requests.extend(iallreduce_sum(comm, bucket))
        return requests

    def scale(self, factor: float) -> None:
        """Multiply every buffer by ``factor`` in place."""
        if factor != 1.0:
            for buffer in self.buffers.values():
                buffer *= factor

    def start_sum(self, comm: Any) -> list[Any]:
        """Start one in-place ``Iallreduce`` (sum) per bucket, in a fixed order; the requests."""
        return [request for bucket in self.buckets for request in iallreduce_sum(comm, bucket)]

    def gradients(self, present: np.ndarray) -> list[np.ndarray | None]:
        """The reduced gradients as views (None where no rank had one)."""
        return [view if has else None for view, has in zip(self.views, present, strict=True)]

    @property
    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self.buffers.values())


def _cut(starts: list[int], cap: int) -> list[tuple[int, int]]:
    """Buckets as ``[first, stop)`` ranges of consecutive parameters (starting at ``starts`` in
    their buffer), each closed once it holds at least ``cap`` elements."""
    ranges = []
    first = 0
    for k in range(1, len(starts)):
        if starts[k] - starts[first] >= cap:
            ranges.append((first, k))
            first = k
    if starts:
        ranges.append((first, len(starts)))
    return ranges

"""Gradient buckets: every parameter's gradient packed into one flat buffer per dtype, cut into
buckets of about ``cap_bytes`` (whole parameters, in parameter order) that are reduced one
collective each. The buffers are allocated once and reused by every step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ferroptim.distributed._collectives import aligned_zeros, iallreduce_sum


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
        for dtype, buffer in self.buffers.items():
            bounds = [start for p, start in zip(params, offsets, strict=True) if p.dtype == dtype]
            self.buckets += _cut(buffer, bounds, max(1, cap_bytes // dtype.itemsize))

    def pack(self, grads: Sequence[np.ndarray | None], scale: float, accumulate: bool) -> None:
        """Write ``scale * grads`` into the buffers (added to what is there with ``accumulate``);
        a None gradient is zeros. The gradients are only read."""
        for view, g in zip(self.views, grads, strict=True):
            if g is None:
                if not accumulate:
                    view.fill(0)
            elif accumulate:
                view += g if scale == 1.0 else g * scale
            elif scale == 1.0:
                np.copyto(view, g)
            else:
                np.multiply(g, scale, out=view)

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


def _cut(buffer: np.ndarray, starts: list[int], cap: int) -> list[np.ndarray]:
    """Pieces of ``buffer`` starting at parameter boundaries, each about ``cap`` elements."""
    pieces = []
    begin = 0
    for start in starts[1:]:
        if start - begin >= cap:
            pieces.append(buffer[begin:start])
            begin = start
    pieces.append(buffer[begin:])
    return pieces

"""Random draws that match one process when a data-parallel rank holds rows of a global batch.

Inside ``with batch_share(total, rows):`` (set by ``fit`` on each rank around its forward of the
rows ``rows`` of a global batch of ``total`` samples), :func:`draw_uniform` draws the uniforms of
the whole batch, ``rng.random((total, *shape[1:]))``, and keeps ``rows``: every rank's generator
then advances as in one process (all ranks seed it alike) and each rank's rows get exactly the
values one process would give them (Dropout masks). Outside the block, or for an array whose
axis 0 is not the share's length, it is ``rng.random(shape)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np


class _Share(threading.local):
    share: tuple[int, np.ndarray] | None = None


_state = _Share()


@contextlib.contextmanager
def batch_share(total: int, rows: np.ndarray) -> Iterator[None]:
    """Draws inside are those of rows ``rows`` of a batch of ``total`` samples."""
    previous = _state.share
    _state.share = (int(total), np.asarray(rows))
    try:
        yield
    finally:
        _state.share = previous


def draw_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """``rng.random(shape)``, or this rank's rows of the global batch's draw (see above)."""
    share = _state.share
    if share is None or not shape or shape[0] != len(share[1]):
        return rng.random(shape)
    total, rows = share
    return rng.random((total, *shape[1:]))[rows]

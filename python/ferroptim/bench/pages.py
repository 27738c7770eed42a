"""Copies of arrays on 2 MB ("huge") pages, to time a kernel on the same arrays with the page size
of one large NumPy array (NumPy asks Linux for huge pages only for allocations of 4 MB or more).

Each copy gets its own private anonymous mapping, advised ``MADV_HUGEPAGE`` before its first
touch, starting at a 2 MB boundary plus a different multiple of 64 bytes per array (so the
arrays' starts do not all fall into the same cache sets).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np

HUGE_PAGE = 2 << 20
#: Offset step between the arrays' starts: an odd number of cache lines.
_STAGGER = 64 * 37


def huge_page_copies(arrays: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Copies of ``arrays`` (same shapes, dtypes and values) on huge pages, or None where the
    platform has no ``MADV_HUGEPAGE``. Each copy keeps its mapping alive."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    if advice is None or not flags:
        return None
    copies = []
    for k, a in enumerate(arrays):
        offset = (k * _STAGGER) % HUGE_PAGE
        size = -(-(a.nbytes + offset) // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE
        region = mmap.mmap(-1, size, flags=flags)
        region.madvise(advice)
        raw = np.frombuffer(region, np.uint8)
        start = (-raw.ctypes.data) % HUGE_PAGE + offset
        copy = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
        copy[...] = a
        copies.append(copy)
    return copies


def anon_huge_kb() -> int | None:
    """This process's anonymous memory on huge pages (kB), None where Linux does not say."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None

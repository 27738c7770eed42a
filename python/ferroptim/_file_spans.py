"""Which bytes of which file an array maps: the overlap check for ``np.memmap`` arrays.

The kernels refuse arrays that share memory by comparing address ranges. Two ``np.memmap``
objects of the same file are two mappings at different addresses, so that comparison cannot see
that they hold the same file bytes; :func:`file_span` gives the file identity (device and inode)
and byte range instead, so that the same sweep runs over file bytes too.

What is detected: any array whose chain of ``.base`` arrays leads to an ``np.memmap`` created
from a file (views, slices and ``np.asarray`` of it included), mapped in this process, against
any other such array of the same file (same device and inode: hard links and symlinks resolve
to one file). What is not: mappings made without ``np.memmap`` (``mmap.mmap`` wrapped by
``np.frombuffer``, memory shared with another process), a file replaced on disk after it was
mapped (the identity is read when the check runs), and files mapped through an open file object
whose name is not a path.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np


def file_span(array: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(device, inode, start, end)``: the file bytes ``array`` maps, or ``None`` when it is
    not (a view of) a file-backed ``np.memmap``."""
    root: Any = array
    while not isinstance(root.base, mmap.mmap):
        root = root.base
        if not isinstance(root, np.ndarray):
            return None
    filename = getattr(root, "filename", None)
    if filename is None:
        return None
    try:
        info = os.stat(filename)
    except (OSError, TypeError, ValueError):
        return None
    address = array.__array_interface__["data"][0]
    root_address = root.__array_interface__["data"][0]
    start = int(root.offset) + (address - root_address)
    return info.st_dev, info.st_ino, start, start + array.nbytes

"""Reading a checkpoint's ``.npz`` as untrusted input: every member's declared dtype and shape
are read (and checked against the member's size in the zip directory) before any data, so that
a file declaring a huge array is refused before memory is spent on it, and a caller can compare
the declared layouts with its objects before reading the data (see ``checkpoint.load``).

Each member is a ``.npy`` file (NumPy format 1.0, 2.0 or 3.0) holding a non-object dtype; its
data is read into an array of exactly the declared size, in bounded chunks, and the zip CRC is
checked at the end. Nothing is unpickled.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np

_FORMAT = np.lib.format
_HEADER_READERS = {
    (1, 0): _FORMAT.read_array_header_1_0,
    (2, 0): _FORMAT.read_array_header_2_0,
}
#: bytes read per chunk (the zip module decompresses at most about this much at a time)
_CHUNK = 1 << 22


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member: its declared layout, and where its data starts."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_size: int

    def placeholder(self) -> np.ndarray:
        """An array with the declared shape and dtype that holds no data (one element,
        broadcast): enough to compare layouts, whatever the declared size."""
        return np.broadcast_to(np.zeros((), self.dtype), self.shape)


def read_headers(archive: zipfile.ZipFile) -> dict[str, Member]:
    """Every member's declared layout, by name without ``.npy``.

    Raises
    ------
    ValueError
        A member that is not a ``.npy`` file, has an object dtype, or whose declared size does
        not match its size in the zip directory; anything ``zipfile`` raises on a corrupt
        directory propagates (the caller turns it into a ValueError naming the path).
    """
    members: dict[str, Member] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy") or info.is_dir():
            raise ValueError(f"member {info.filename!r} is not a .npy array")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise ValueError(f"member {info.filename!r} appears twice")
        try:
            with archive.open(info) as file:
                members[name] = _header(info, file)
        except ValueError as exc:
            message = str(exc)
            if info.filename not in message:
                message = f"member {info.filename!r}: {message}"
            raise ValueError(message) from exc
    return members


def _header(info: zipfile.ZipInfo, file: IO[bytes]) -> Member:
    version = _FORMAT.read_magic(file)
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise ValueError(f"member {info.filename!r}: unsupported .npy version {version}")
    shape, fortran_order, dtype = reader(file)
    label = f"member {info.filename!r}"
    if dtype.hasobject:
        raise ValueError(f"{label} holds Python objects (refused: nothing is unpickled)")
    header_size = file.tell()
    count = 1
    for n in shape:
        count *= n
    declared = count * dtype.itemsize
    if header_size + declared != info.file_size:
        raise ValueError(
            f"{label} declares shape {shape} of {dtype} ({declared} bytes) but holds "
            f"{info.file_size - header_size} bytes of data"
        )
    return Member(info, shape, dtype, fortran_order, header_size)


def read_data(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    """The member's array, read in chunks into an array of the declared size (CRC checked)."""
    count = member.info.file_size - member.header_size
    flat = np.empty(count // max(member.dtype.itemsize, 1), dtype=member.dtype)
    raw: Any = flat.view(np.uint8).reshape(-1)  # a writable buffer over flat's bytes
    buffer = memoryview(raw) if flat.nbytes else memoryview(b"")
    with archive.open(member.info) as file:
        file.read(member.header_size)
        done = 0
        while done < count:
            chunk = file.read(min(_CHUNK, count - done))
            if not chunk:
                raise ValueError(f"member {member.info.filename!r} is truncated")
            buffer[done : done + len(chunk)] = chunk
            done += len(chunk)
        if file.read(1):  # also completes the CRC check
            raise ValueError(f"member {member.info.filename!r} holds more data than declared")
    order: Literal["F", "C"] = "F" if member.fortran_order else "C"
    return flat.reshape(member.shape, order=order)

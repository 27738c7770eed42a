"""Writing a checkpoint file atomically: a temporary file beside the target, ``fsync``,
``os.replace``, directory ``fsync``.

* A symlink is written through: the file it points to is replaced, the link stays.
* An existing file keeps its permission bits (a new one gets the usual ``0o666 & ~umask``).
* The temporary file is named ``.<name>.<host>-<pid>.<random>.tmp``; it is created and removed
  inside one guarded region, and a save removes the temporary files that earlier saves to the
  same path left when their process died (same host, no process with that id any more).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import stat
import zipfile
import zlib
from typing import Any

import numpy as np


def write_atomic(path: str, members: dict[str, np.ndarray]) -> None:
    """Write the ``.npz`` of ``members`` to ``path`` (through a symlink) atomically."""
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    _remove_stale_temps(directory, name)
    mode = _existing_mode(target)
    temp = os.path.join(directory, f".{name}.{_host()}-{os.getpid()}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(temp, flags, 0o666)
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.chmod(fd, mode)
            _write_npz(file, members)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        if not isinstance(exc, FileExistsError):  # else the name was someone else's
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise
    _fsync_directory(directory)


def _existing_mode(target: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return None


def _host() -> str:
    """A short tag of this machine (temp files of other hosts on a shared disk are left)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _remove_stale_temps(directory: str, name: str) -> None:
    """Remove ``.<name>.<host>-<pid>.*.tmp`` files of this host whose process is gone."""
    pattern = re.compile(rf"\.{re.escape(name)}\.{_host()}-(\d+)\.[0-9a-f]+\.tmp")
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: leave it
    return True


def _write_npz(file: Any, members: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` (what ``np.savez`` writes), with pickling refused."""
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in members.items():
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); platforms that cannot open a directory skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

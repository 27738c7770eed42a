"""Deferring Ctrl-C over a short sequence of native calls that must happen all together (the
groups of one optimizer step, the objects of one checkpoint restore)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT while the block runs and deliver it (to the handler that was installed,
    normally raising ``KeyboardInterrupt``) once the block has finished.

    Python runs signal handlers only in the main thread, between bytecodes: without this, a
    Ctrl-C can land between two native calls and leave the first applied and the second not.
    Outside the main thread (where no ``KeyboardInterrupt`` can be raised), or when SIGINT is not
    handled by a Python function (ignored, default action), the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    held: list[tuple[int, Any]] = []

    def hold(signum: int, frame: Any) -> None:
        held.append((signum, frame))

    try:
        signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(*held[0])

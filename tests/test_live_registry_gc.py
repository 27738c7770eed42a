"""The registry of live parameters (``ferroptim.nn._live``) under garbage collection: a
collection can run inside ``register`` (any allocation may trigger it) and call the weakref
callbacks of arrays that died, which take the registry's lock again in the same thread. With a
plain lock that deadlocked (found by this issue's full-suite run, in test_nn_gradcheck); run in a
subprocess so that a regression fails instead of hanging the test run."""

from __future__ import annotations

import subprocess
import sys

_CYCLES = """
import gc
from ferroptim.nn import Linear
gc.set_threshold(1, 1, 1)  # collect at almost every allocation
for _ in range(3000):
    a, b = Linear(2, 2), Linear(2, 2)
    a.peer, b.peer = b, a  # a cycle: its arrays die in a collection, firing their callbacks
print("done")
"""


def test_registering_parameters_while_collections_free_others_never_hangs():
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CYCLES], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("registering parameters deadlocked under garbage collection") from None
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"

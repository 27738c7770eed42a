"""A Rust panic inside a native call becomes a Python exception, never an abort, on every path
a kernel's work can take (calling thread, helper thread, rayon pool); afterwards the process, the
pool and the helper keep working."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native

SITES = ("caller", "helper", "pool")
pytestmark = pytest.mark.skipif(
    not hasattr(_native, "_panic_for_tests"),
    reason="built without the test-hooks feature (`make build` turns it on)",
)


@pytest.mark.parametrize("site", SITES)
def test_a_panic_on_each_path_raises_panic_exception_and_kernels_keep_working(site):
    fo.set_num_threads(2)
    with pytest.raises(BaseException, match="deliberate panic") as info:
        _native._panic_for_tests(site)
    assert type(info.value).__name__ == "PanicException"
    # the pool and the helper survive: a step on each path still gives the reference's bits
    for n in (100, 40_000, 300_000):
        params = [np.linspace(-1, 1, n, dtype=np.float32)]
        expected = [params[0].copy()]
        grads = [np.full(n, 0.25, np.float32)]
        fo.optim.Adam(params).step(grads)
        fo.optim.Adam(expected, backend="reference").step(grads)
        np.testing.assert_array_equal(params[0], expected[0])


def test_unknown_site_is_a_value_error():
    with pytest.raises(ValueError, match="site"):
        _native._panic_for_tests("elsewhere")


def test_the_process_survives_panics_on_every_path():
    """In a fresh interpreter (so an abort would show as a signal exit code, not kill pytest)."""
    code = textwrap.dedent(
        """
        import ferroptim as fo
        from ferroptim import _native
        fo.set_num_threads(2)
        caught = 0
        for site in ("caller", "helper", "pool") * 3:
            try:
                _native._panic_for_tests(site)
            except BaseException as e:
                caught += type(e).__name__ == "PanicException"
        print(caught)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "9"

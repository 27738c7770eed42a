"""Run a script under ``mpiexec -n N`` from pytest: a failing rank fails the test, a hang times out.

Scripts live in ``tests/mpi/`` (not collected by pytest). Each runs the case named on its command
line on every rank and, when that case returns, prints ``MPI-OK rank <r>``; :func:`run_mpi` demands
a zero exit status and one such line per rank, and shows every rank's output otherwise. On a
timeout the whole process group (mpiexec and its ranks) is killed and the test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

MPI_SCRIPTS = Path(__file__).parent / "mpi"


def mpiexec() -> str:
    """The ``mpiexec`` beside this interpreter (the MPICH wheel's), else the one on PATH; skips the
    test when there is none, unless FERROPTIM_REQUIRE_MPI is set (``make test`` sets it)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        _missing("mpi4py is not installed (pip install 'ferroptim[distributed]')")
    from ferroptim.distributed._comm import find_mpiexec

    found = find_mpiexec()
    if found is None:
        _missing("no mpiexec found")
    return found


def _missing(why: str) -> None:
    if os.environ.get("FERROPTIM_REQUIRE_MPI"):
        pytest.fail(f"MPI tests required (FERROPTIM_REQUIRE_MPI) but {why}")
    pytest.skip(why)


def run_mpi(
    script: str, nprocs: int, *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> str:
    """Run ``tests/mpi/<script>`` with ``args`` on ``nprocs`` ranks; return the combined output."""
    command = [mpiexec(), "-n", str(nprocs), sys.executable, "-m", "mpi4py"]
    command += [str(MPI_SCRIPTS / script), *args]
    full_env = {**os.environ, "FERROPTIM_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {nprocs} {script} {' '.join(args)} hung ({timeout} s):\n{output}")
    # ranks' output may interleave mid-line (mpiexec forwards each rank's stream as it comes)
    oks = set(re.findall(r"MPI-OK rank (\d+)", output))
    if proc.returncode != 0 or oks != {str(r) for r in range(nprocs)}:
        pytest.fail(
            f"mpiexec -n {nprocs} {script} {' '.join(args)}: exit status {proc.returncode}, "
            f"ranks that finished: {sorted(oks)}\n{output}"
        )
    return output

"""The demo launched the way the README says, on 2 MPI ranks, on a short budget."""

import os
import re
import subprocess
import sys

import pytest

from mpi_launch import mpiexec

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def test_demo_on_two_ranks_trains_data_parallel_and_reports_the_ranks(tmp_path):
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "ferroptim", "demo"]
    command += ["--epochs", "4", "--patience", "2", "--quiet"]
    command += ["--plot", str(tmp_path / "curves.png")]
    env = {**os.environ, "FERROPTIM_NUM_THREADS": "1"}
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    out = proc.stdout
    assert "data-parallel over 2 MPI ranks" in out, out + proc.stderr
    found = re.findall(r"test accuracy \(held-out 20%\): ([0-9.]+)% on 2 MPI ranks", out)
    assert len(found) == 1, out  # printed by rank 0 only
    accuracy = float(found[0]) / 100
    assert accuracy > 0.7, out  # 4 epochs; the full demo reaches >= 97%
    assert proc.returncode == (0 if accuracy >= 0.97 else 1), out + proc.stderr
    assert out.count("digits: ") == 1
    assert (tmp_path / "curves.png").stat().st_size > 10_000

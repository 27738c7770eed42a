"""The demo launched the way the README says, on 2 MPI ranks, against one process, on a short
budget (3 epochs); and its training over 2 ranks against one process step by step."""

import os
import re
import subprocess
import sys

import pytest

from mpi_launch import mpiexec, run_mpi

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

SHORT = ["demo", "--epochs", "3", "--patience", "2", "--quiet"]
ACCURACY = r"test accuracy \(held-out 20%\): ([0-9.]+)%"


def run(command, cwd):
    env = {**os.environ, "FERROPTIM_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_demo_on_two_ranks_matches_one_process_and_reports_the_ranks(tmp_path):
    python = [sys.executable, "-m", "mpi4py", "-m", "ferroptim", *SHORT]
    many = run([mpiexec(), "-n", "2", *python, "--plot", str(tmp_path / "curves.png")], tmp_path)
    one = run([sys.executable, "-m", "ferroptim", *SHORT, "--plot", ""], tmp_path)
    out = many.stdout
    assert "data-parallel over 2 MPI ranks" in out, out + many.stderr
    found = re.findall(ACCURACY + " on 2 MPI ranks", out)
    assert len(found) == 1, out  # printed by rank 0 only
    assert out.count("digits: ") == 1
    accuracy = float(found[0]) / 100
    assert many.returncode == (0 if accuracy >= 0.97 else 1), out + many.stderr
    alone = float(re.findall(ACCURACY + r" \(one process\)", one.stdout)[0]) / 100
    # the same batches, augmentations and dropout masks: the same model up to float rounding
    assert abs(accuracy - alone) <= 1 / 360 + 1e-9, (out, one.stdout)
    assert accuracy > 0.7, out  # 3 epochs; the full demo reaches >= 97%
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_demo_training_over_two_ranks_equals_one_process_step_by_step():
    """The demo's model, data, augmentation, Dropout, AdamW and schedule for 6 steps: the same
    parameters and running statistics within float32 rounding (tests/mpi/mpi_fit.py). A bias
    before BatchNorm would fail this (its exact gradient is zero; AdamW turned the rounding noise
    of each run into different lr-sized steps: 3.5e-3 apart after 6 steps)."""
    run_mpi("mpi_fit.py", 2, "demo_model")

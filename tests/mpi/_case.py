"""Entry point shared by the MPI scripts: run the case named in argv[1] on every rank, then report.

A script defines ``CASES = {"name": function, ...}`` and ends with ``run_cases(CASES)``. Every
function takes the remaining command-line words as strings. An exception propagates (``python -m
mpi4py`` then aborts the whole job with a non-zero status); success prints ``MPI-OK rank <r>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cases(cases: dict[str, Callable[..., None]]) -> None:
    from mpi4py import MPI

    name, *args = sys.argv[1:]
    if name not in cases:
        raise SystemExit(f"unknown case {name!r}; known: {sorted(cases)}")
    cases[name](*args)
    MPI.COMM_WORLD.Barrier()
    print(f"MPI-OK rank {MPI.COMM_WORLD.Get_rank()}", flush=True)

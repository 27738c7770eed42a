"""The ferroptim benchmark: ``python -m ferroptim bench``.

Times each optimizer's native step against the NumPy reference backend and against the memory
roofline (:func:`ferroptim._native.roofline_step`, which moves exactly the bytes of an optimizer
step with the same number of state arrays and does no arithmetic), on a few fixed workloads.

Modules: :mod:`.workloads` (parameter shapes), :mod:`.configs` (optimizer settings),
:mod:`.timing` (measurement), :mod:`.machine` (machine facts), :mod:`.table` (markdown formatting),
:mod:`.cells` (the optimizer section's results and their table) and
:mod:`.run` (the command line and the driver).
"""

from ferroptim.bench.cells import BenchResult, CellResult
from ferroptim.bench.run import main, run_bench

__all__ = ["BenchResult", "CellResult", "main", "run_bench"]

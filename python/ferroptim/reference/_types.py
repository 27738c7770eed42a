"""Type aliases of the reference kernels' arguments (as in ``ferroptim/_native.pyi``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = ["Arrays", "OptArrays", "OptGrads", "Steps"]

Arrays: TypeAlias = Sequence[NDArray[np.floating]]
OptArrays: TypeAlias = Sequence[NDArray[np.floating]] | None
OptGrads: TypeAlias = Sequence[NDArray[np.floating] | None]
Steps: TypeAlias = NDArray[np.int64]

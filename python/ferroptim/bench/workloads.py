"""Benchmark workloads: lists of float32 parameter shapes, plus their random params and grads."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Workload:
    """A named list of parameter shapes.

    ``latency`` workloads are small enough that the per-call overhead dominates: they are reported
    in microseconds per step instead of milliseconds. ``model`` builds a ``ferroptim.nn`` model
    whose parameters have exactly ``shapes`` (to time ``opt.step(model)`` too).
    """

    name: str
    description: str
    shapes: tuple[Shape, ...]
    latency: bool = False
    model: Callable[[], Any] | None = None

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def n_tensors(self) -> int:
        return len(self.shapes)

    def make_arrays(self, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Random normal float32 params and grads, one C-contiguous array per shape."""
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(s, dtype=np.float32) for s in self.shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in self.shapes]
        return params, grads

    def make_model(self, seed: int = 0) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        """``(model, params, grads)``: the model of ``model``, holding :meth:`make_arrays`'s
        values in its own parameter and gradient arrays (which are returned)."""
        if self.model is None:
            raise ValueError(f"workload {self.name!r} has no model")
        model = self.model()
        params, grads = model.parameters(), model.gradients()
        values, grad_values = self.make_arrays(seed)
        for mine, given in zip(params + grads, values + grad_values, strict=True):
            np.copyto(mine, given)
        return model, params, grads


def _mlp() -> Any:
    """The 784-64-64-10 MLP of the ``mlp`` workload as a ``ferroptim.nn`` model."""
    from ferroptim import nn

    return nn.Sequential(
        nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def _transformer_shapes(vocab: int = 8000, d: int = 384, blocks: int = 6) -> tuple[Shape, ...]:
    """A small GPT-style model: token embedding, ``blocks`` pre-norm blocks, final LayerNorm.

    Per block: fused QKV projection (weight, bias), attention output projection (weight, bias),
    LayerNorm 1 (weight, bias), MLP up projection (weight, bias), MLP down projection (weight,
    bias), LayerNorm 2 (weight, bias).  13,719,552 parameters in 75 tensors.
    """
    block: tuple[Shape, ...] = (
        (3 * d, d),
        (3 * d,),
        (d, d),
        (d,),
        (d,),
        (d,),
        (4 * d, d),
        (4 * d,),
        (d, 4 * d),
        (d,),
        (d,),
        (d,),
    )
    return ((vocab, d), *(block * blocks), (d,), (d,))


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "transformer",
            "GPT-style, d=384, 6 blocks, vocab 8000",
            _transformer_shapes(),
        ),
        Workload("single", "one tensor of 2**24 params", ((2**24,),)),
        Workload(
            "mlp",
            "784-64-64-10 MLP",
            ((64, 784), (64,), (64, 64), (64,), (10, 64), (10,)),
            latency=True,
            model=_mlp,
        ),
    )
}

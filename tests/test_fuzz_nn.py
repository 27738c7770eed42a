"""Hypothesis fuzzing of the nn API: no crash, no stray exception, no partial update.

Each example builds a random layer of ``fo.nn`` (Linear, Conv2d, pooling, batch norm, an
activation, Dropout, Flatten, Embedding, LSTM, or a Sequential of a few), in train or eval mode,
and calls ``forward`` with a random input and, when that succeeds, ``backward`` with a random
upstream gradient. Inputs and gradients vary in dtype (float32/64, float16, int, bool, complex,
object, big-endian), shape (the right one, a zero-size batch, a wrong rank, a wrong feature
count), memory layout (contiguous, strided view, transposed view, big-endian) and values (normal,
nan, +-inf, huge). The invariant, for every call:

- it succeeds, the result has the module's dtype and the expected shape, and it is finite when
  the arguments were ordinary finite numbers; or
- it raises TypeError, ValueError or RuntimeError, and every parameter, gradient, buffer and
  generator state of the module is bit for bit what it was before the call.

Any other exception fails the example; a crash would kill the run. ``FERROPTIM_FUZZ_EXAMPLES``
sets the examples (default 300, a few seconds); ``FERROPTIM_FUZZ_NN_REPORT`` names a JSON file
that gets the counts of calls run, accepted and refused (for the README).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferroptim as fo
from conftest import FuzzArraySpec, fuzz_settings, outcome_report
from ferroptim.nn.module import Module

FUZZ = fuzz_settings(300)
ALLOWED = (TypeError, ValueError, RuntimeError)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
OUTCOMES: collections.Counter = collections.Counter()

DTYPES = ("float32", "float64", "float16", "int32", "int64", "bool", "complex64", "object")
DTYPES += (">f4", ">f8")
LAYOUTS = ("c", "strided", "transposed", "list")
SPECIALS = (np.nan, np.inf, -np.inf, 3e38, 1e300, -1e300)
#: writes the counts where ``FERROPTIM_FUZZ_NN_REPORT`` says (for the README)
report_counts = outcome_report("FERROPTIM_FUZZ_NN_REPORT", OUTCOMES)


# --- arrays ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArraySpec(FuzzArraySpec):
    index_bound: int = 0  # > 0: integer indices in [0, index_bound) (negative/too big allowed)

    @property
    def ordinary(self) -> bool:
        """Finite values of a real numeric dtype: a result should be finite too."""
        return not self.specials and self.dtype not in ("complex64", "object")

    def build(self) -> Any:
        rng = np.random.default_rng(self.seed)
        if self.index_bound:
            values = rng.integers(-1, self.index_bound + 1, self.shape)
        else:
            values = rng.standard_normal(self.shape)
        flat = values.reshape(-1)
        for position, value in self.specials:
            if flat.size:
                flat[position % flat.size] = value
        with np.errstate(all="ignore"):
            array = values.astype(np.dtype(self.dtype))
        if self.layout == "strided" and array.ndim:
            wide = np.repeat(array, 2, axis=0)
            return wide[::2]
        if self.layout == "transposed" and array.ndim >= 2:
            return np.ascontiguousarray(array.T).T
        if self.layout == "list":
            return array.tolist()
        return array


@st.composite
def array_spec(draw, shape: tuple[int, ...], *, index_bound: int = 0, mutate: bool = True):
    """An array meant to have ``shape``; sometimes a zero-size batch, wrong rank or width."""
    shape = tuple(shape)
    if mutate and shape:
        how = draw(st.sampled_from(("same",) * 6 + ("empty", "rank+", "rank-", "width")))
        if how == "empty":
            shape = (0, *shape[1:])
        elif how == "rank+":
            shape = (*shape, 2)
        elif how == "rank-":
            shape = shape[1:]
        elif how == "width":
            shape = (*shape[:-1], shape[-1] + draw(st.integers(1, 3)))
    if index_bound:
        dtype = draw(st.sampled_from(("int64",) * 5 + ("int32", "uint8", "float32", "bool")))
        specials: tuple = ()
    else:
        dtype = draw(st.sampled_from(("float32", "float64") * 3 + DTYPES))
        special = st.tuples(st.integers(0, 10**6), st.sampled_from(SPECIALS))
        specials = tuple(draw(st.lists(special, max_size=2))) if draw(st.booleans()) else ()
    return ArraySpec(
        shape,
        dtype,
        draw(st.sampled_from(LAYOUTS)),
        draw(st.integers(0, 2**32 - 1)),
        specials,
        index_bound,
    )


# --- modules -----------------------------------------------------------------------------
@dataclass
class Case:
    """A module and the input shape it expects (``index_bound``: it takes integer indices)."""

    module: Module
    input_shape: tuple[int, ...]
    index_bound: int = 0


def _activation(draw) -> Module:
    name = draw(st.sampled_from(("ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "SiLU", "ELU")))
    return getattr(fo.nn, name)()


@st.composite
def single_case(draw, dtype: str) -> Case:
    n = draw(st.integers(1, 4))
    f = draw(st.integers(1, 5))
    c = draw(st.integers(1, 3))
    hw = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 1000))
    kind = draw(
        st.sampled_from(
            (
                "linear",
                "conv",
                "maxpool",
                "avgpool",
                "bn1d",
                "bn2d",
                "activation",
                "dropout",
                "flatten",
                "embedding",
                "lstm",
            )
        )
    )
    image = (n, c, hw, hw)
    if kind == "linear":
        return Case(fo.nn.Linear(f, draw(st.integers(1, 4)), dtype=dtype, rng=seed), (n, f))
    if kind == "conv":
        conv = fo.nn.Conv2d(c, 2, draw(st.integers(1, 2)), padding=1, dtype=dtype, rng=seed)
        return Case(conv, image)
    if kind == "maxpool":
        return Case(fo.nn.MaxPool2d(2), image)
    if kind == "avgpool":
        return Case(fo.nn.AvgPool2d(2), image)
    if kind == "bn1d":
        return Case(fo.nn.BatchNorm1d(f, dtype=dtype), (n, f))
    if kind == "bn2d":
        return Case(fo.nn.BatchNorm2d(c, dtype=dtype), image)
    if kind == "activation":
        return Case(_activation(draw), (n, f))
    if kind == "dropout":
        return Case(fo.nn.Dropout(draw(st.sampled_from((0.0, 0.3, 0.9))), seed=seed), (n, f))
    if kind == "flatten":
        return Case(fo.nn.Flatten(), image)
    if kind == "embedding":
        emb = fo.nn.Embedding(6, f, padding_idx=draw(st.sampled_from((None, 0))), dtype=dtype)
        return Case(emb, (n, 3), index_bound=6)
    lstm = fo.nn.LSTM(f, 3, num_layers=draw(st.integers(1, 2)), dtype=dtype, rng=seed)
    return Case(lstm, (draw(st.integers(1, 3)), n, f))


@st.composite
def sequential_case(draw, dtype: str) -> Case:
    n, f, h = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 1000))
    if draw(st.booleans()):
        layers = [fo.nn.Linear(f, h, dtype=dtype, rng=seed), fo.nn.BatchNorm1d(h, dtype=dtype)]
        layers += [_activation(draw), fo.nn.Dropout(0.4, seed=seed)]
        layers.append(fo.nn.Linear(h + draw(st.sampled_from((0, 0, 1))), 2, dtype=dtype))
        return Case(fo.nn.Sequential(*layers), (n, f))
    c = draw(st.integers(1, 2))
    layers = [fo.nn.Conv2d(c, h, 3, padding=1, dtype=dtype, rng=seed)]
    layers += [fo.nn.BatchNorm2d(h, dtype=dtype), _activation(draw), fo.nn.MaxPool2d(2)]
    inner = fo.nn.Sequential(fo.nn.Flatten(), fo.nn.Dropout(0.5, seed=seed))
    layers += [inner, fo.nn.Linear(h * 4 + draw(st.sampled_from((0, 0, 2))), 3, dtype=dtype)]
    return Case(fo.nn.Sequential(*layers), (n, c, 4, 4))


@st.composite
def cases(draw) -> Case:
    dtype = draw(st.sampled_from(("float32", "float64")))
    case = draw(st.one_of(single_case(dtype), sequential_case(dtype)))
    case.module.train(draw(st.booleans()))
    return case


# --- the invariant -----------------------------------------------------------------------
def snapshot(module: Module) -> tuple:
    return (
        [p.tobytes() for p in module.parameters()],
        [g.tobytes() for m in module.modules() for g in m._gradients.values()],
        [b.tobytes() for _, b in module.named_buffers()],
        module.rng_state(),
    )


def call(what: str, module: Module, run, argument: Any, ordinary: bool) -> Any:
    """Run one call and check the invariant; returns the result or None when refused."""
    before = snapshot(module)
    OUTCOMES[f"{what} calls"] += 1
    try:
        result = run(argument)
    except ALLOWED as exc:
        OUTCOMES[f"{what} refused ({type(exc).__name__})"] += 1
        assert snapshot(module) == before, f"{what} raised {exc!r} after changing state"
        return None
    OUTCOMES[f"{what} accepted"] += 1
    if result is not None:
        assert isinstance(result, np.ndarray)
        assert result.dtype == module.dtype, (what, result.dtype, module.dtype)
        if ordinary and result.size:
            assert np.all(np.isfinite(result)), f"{what}: non-finite result for finite arguments"
    return result


@FUZZ
@given(case=cases(), data=st.data())
def test_nn_calls_succeed_or_refuse_without_side_effects(case, data):
    module = case.module
    x_spec = data.draw(array_spec(case.input_shape, index_bound=case.index_bound))
    y = call("forward", module, module, x_spec.build(), x_spec.ordinary)
    if y is None:
        return
    dy_spec = data.draw(array_spec(y.shape))
    ordinary = x_spec.ordinary and dy_spec.ordinary
    dx = call("backward", module, module.backward, dy_spec.build(), ordinary)
    if dx is not None:
        assert dx.shape == np.shape(x_spec.build())

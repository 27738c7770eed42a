"""The native kernels' keyword arguments (read from the call's dict in one pass): every kernel of
``_native.KERNEL_SPECS`` refuses a missing, unknown or mistyped keyword with a TypeError naming it,
in declaration order, before touching any array."""

from __future__ import annotations

import numpy as np
import pytest

from ferroptim import _native
from ferroptim._registry import OPTIMIZERS

SPECS = {spec.kernel_name: spec for spec in OPTIMIZERS}


def call_args(kernel: str) -> tuple[list, dict]:
    """Positional arguments (two float32 tensors, every always-on state list) and the spec's
    default keywords for ``kernel``."""
    hypers, states, scalars = _native.KERNEL_SPECS[kernel]
    params = [np.ones(3, np.float32), np.ones(5, np.float32)]
    grads = [np.full_like(p, 0.5) for p in params]
    lists = [None if when else [np.zeros_like(p) for p in params] for _, when in states]
    extra = [np.ones(2, np.float32)] if scalars else []
    defaults = SPECS[kernel].kernel_kwargs({h.name: h.default for h in SPECS[kernel].hypers})
    kwargs = {name: defaults[name] for name, _ in hypers}
    return [params, grads, *lists, *extra, np.zeros(2, np.int64)], kwargs


def assert_refused(kernel: str, args: list, kwargs: dict, match: str) -> None:
    before = [a.copy() for a in args[0]]
    with pytest.raises(TypeError, match=match):
        getattr(_native, kernel)(*args, **kwargs)
    for a, b in zip(args[0], before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not args[-1].any()  # no step counted


@pytest.mark.parametrize("kernel", sorted(SPECS))
def test_defaults_step(kernel: str) -> None:
    args, kwargs = call_args(kernel)
    getattr(_native, kernel)(*args, **kwargs, grad_scale=1.0, clip_value=None)
    assert list(args[-1]) == [1, 1]


@pytest.mark.parametrize("kernel", sorted(SPECS))
def test_missing_keyword_is_the_first_in_declaration_order(kernel: str) -> None:
    args, kwargs = call_args(kernel)
    names = list(kwargs)
    for name in (names[-1], names[0]):
        del kwargs[name]
        assert_refused(kernel, args, kwargs, f"missing required keyword argument: '{name}'")


@pytest.mark.parametrize("kernel", sorted(SPECS))
def test_unknown_keyword_is_named(kernel: str) -> None:
    args, kwargs = call_args(kernel)
    assert_refused(kernel, args, {**kwargs, "lr_decay_typo": 0.1}, "'lr_decay_typo'")


@pytest.mark.parametrize("kernel", sorted(SPECS))
@pytest.mark.parametrize("name", ["first", "grad_scale", "clip_value"])
def test_mistyped_keyword_is_named(kernel: str, name: str) -> None:
    args, kwargs = call_args(kernel)
    name = next(iter(kwargs)) if name == "first" else name
    assert_refused(kernel, args, {**kwargs, name: "x"}, f"argument '{name}'")

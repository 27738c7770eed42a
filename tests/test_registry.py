"""The optimizer registry (``ferroptim._registry``) is the one description of every optimizer:
everything else derives from it or is checked against it here.

* the native kernels take exactly the registry's keyword arguments, state lists and scalar arrays
  (``_native.KERNEL_SPECS`` is generated from the Rust declarations);
* every spec has its class, functional step, reference kernel and golden fixture;
* the class and functional signatures and docstrings come from the spec;
* every generic test table covers every optimizer.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import conftest
import ferroptim as fo
import ferroptim._native as native
import ferroptim.reference as reference
import test_array_kinds
import test_clip
import test_fuzz_api
import test_golden
import test_hostile_args
import test_kernel_errors
import test_kernels_equivalence
from ferroptim import _registry as registry
from ferroptim import functional as F

SPECS = registry.SPECS
IDS = [s.kernel for s in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_native_kernel_matches_the_spec(spec):
    hypers, states, scalars = native.KERNEL_SPECS[spec.kernel_name]
    expected_hypers = [
        (name, "flag" if h.kind == "flag" else "real")
        for h in spec.hypers
        for name in h.kernel_names
    ]
    assert [tuple(h) for h in hypers] == expected_hypers
    expected_states = [(s.kernel_arg, None if s.when is None else s.condition) for s in spec.states]
    assert [tuple(s) for s in states] == expected_states
    assert scalars == (spec.scalars[0].kernel_arg if spec.scalars else None)


def test_every_native_kernel_is_registered():
    assert set(native.KERNEL_SPECS) == {s.kernel_name for s in SPECS}


@pytest.mark.parametrize("spec", registry.OPTIMIZERS, ids=[s.name for s in registry.OPTIMIZERS])
def test_every_layer_has_the_optimizer(spec):
    cls = getattr(fo.optim, spec.name)
    assert cls.spec is spec and spec.name in fo.optim.__all__
    assert callable(getattr(reference, spec.kernel_name))
    assert callable(getattr(F, spec.kernel_name))
    assert (test_golden.DATA / spec.golden).is_file()
    assert spec.name in {
        test_golden._json(test_golden._golden(spec.golden), f"{case}/float32/config")["optimizer"]
        for fixture, case in test_golden.CASES
        if fixture == spec.golden
    }


@pytest.mark.parametrize("spec", registry.OPTIMIZERS, ids=[s.name for s in registry.OPTIMIZERS])
def test_class_signature_and_docstring_come_from_the_spec(spec):
    cls = getattr(fo.optim, spec.name)
    params = list(inspect.signature(cls).parameters.values())
    assert params[0].name == "params" and params[-1].kind is inspect.Parameter.VAR_KEYWORD
    for p, h in zip(params[1:-1], spec.exposed, strict=True):
        assert p.name == h.name and p.default == h.default
        assert (p.kind is inspect.Parameter.KEYWORD_ONLY) == h.keyword_only
        assert f"{h.name} : " in cls.__doc__
    opt = cls([np.zeros(3)])
    assert opt.defaults == {**spec.defaults, **spec.fixed}
    assert list(opt.defaults) == [h.name for h in spec.hypers]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_functional_signature_comes_from_the_spec(spec):
    params = inspect.signature(getattr(F, spec.kernel_name)).parameters
    inferred = {s.flag for s in spec.states if s.flag}
    for h in spec.hypers:
        if h.kernel and h.name not in inferred:
            assert params[h.name].default == h.default
        else:
            assert h.name not in params
    for s in spec.states:
        assert (params[s.kernel_arg].default is None) == s.optional
    assert ("step" in params) == (spec.steps != "none")


def test_a_bad_hyperparameter_names_itself_in_every_layer():
    """One validation module: the class, the functional form and both kernels refuse the same
    value with the same message style, naming the argument."""
    p, g = [np.zeros(3)], [np.ones(3)]
    pattern = r"invalid lr: -1(\.0)? \(expected lr >= 0\)"
    with pytest.raises(ValueError, match=pattern):
        fo.optim.Adam(p, lr=-1.0)
    with pytest.raises(ValueError, match=pattern):
        F.adam_step(p, g, [np.zeros(3)], [np.zeros(3)], step=1, lr=-1.0)
    for backend in (native, reference):
        kwargs = conftest.hyper("adam", lr=-1.0)
        with pytest.raises(ValueError, match=pattern):
            backend.adam_step(
                p, g, [np.zeros(3)], [np.zeros(3)], None, np.zeros(1, np.int64), **kwargs
            )


def test_every_test_table_covers_every_optimizer():
    kernels = set(IDS)
    classes = {s.name for s in registry.OPTIMIZERS}
    tables = {
        "conftest.KERNELS": set(conftest.KERNELS),
        "conftest.DEFAULTS": set(conftest.DEFAULTS),
        "conftest.FULL": set(conftest.FULL),
        "test_kernels_equivalence.GRID": set(test_kernels_equivalence.GRID),
        "test_hostile_args.FUNCTIONS": set(test_hostile_args.FUNCTIONS),
        "test_array_kinds.FUNCTIONAL": set(test_array_kinds.FUNCTIONAL),
    }
    class_tables = {
        "conftest.CLASS_CASES": {cls.__name__ for cls, _ in conftest.CLASS_CASES},
        "test_hostile_args.CLASSES": set(test_hostile_args.CLASSES),
        "test_array_kinds.CLASSES": set(test_array_kinds.CLASSES),
        "test_clip.OPTIMIZERS": {name for name, _ in test_clip.OPTIMIZERS},
        "test_fuzz_api.CLASS_OPTIONS": set(test_fuzz_api.CLASS_OPTIONS),
    }
    for name, covered in tables.items():
        assert covered == kernels, f"{name} misses {kernels - covered}"
    for name, covered in class_tables.items():
        assert covered == classes, f"{name} misses {classes - covered}"
    # kernels with a property are all in the tables of that property
    assert set(test_kernel_errors.BETAS) == {s.kernel for s in SPECS if "betas" in s.defaults}
    assert set(test_kernel_errors.EPS) == {s.kernel for s in SPECS if "eps" in s.defaults}
    for kernel in kernels:
        assert conftest.FULL[kernel], f"FULL[{kernel!r}] switches nothing on"
        assert len(test_kernels_equivalence.GRID[kernel]) >= 4

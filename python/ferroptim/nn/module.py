"""The module base class: parameters, gradients, buffers, children, train/eval, state_dict.

Modules hold NumPy arrays. A parameter has a gradient array of the same shape and dtype that
``backward`` accumulates into (``+=``) and ``zero_grad`` clears in place, so an optimizer built
from ``parameters()`` can be stepped with ``gradients()`` every iteration without reallocating.
Names follow torch: own parameters first, then each child's under ``"<child>.<name>"``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ferroptim._checkpoint_hint import refuse_checkpoint
from ferroptim.nn import _flatten, _live
from ferroptim.nn._checks import resolve_dtype
from ferroptim.nn._grad_mode import run_forward

_RESERVED = ("_parameters", "_gradients", "_buffers", "_modules", "_frozen")


def _key_error(has: str, keys: list, shape: str, listed: str) -> KeyError:
    """``state_dict <has> key <first key> (<shape>; <listed>: <keys>)``."""
    return KeyError(f"state_dict {has} key {keys[0]!r} ({shape}; {listed}: {keys})")


def _shape_of(value: Any) -> Any:
    """``np.shape(value)``, or the type name of a value that has no array shape."""
    try:
        return np.shape(value)
    except Exception:  # ragged lists and other non-arrays: name the type instead
        return f"<no shape: {type(value).__name__}>"


def _check_rng_state(bit_generator: np.random.BitGenerator, value: Any, prefix: str) -> None:
    """Raise unless ``value`` is a valid state for a bit generator of ``bit_generator``'s type
    (tried on a scratch instance, so no live generator changes)."""
    scratch = type(bit_generator)(0)
    try:
        scratch.state = value
    except TypeError as exc:
        raise TypeError(f"rng state for {prefix!r} is invalid: {exc}") from exc
    except (ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"rng state for {prefix!r} is invalid: {exc!r}") from exc


def _generator(module: Module) -> np.random.Generator | None:
    """``module.rng`` when it is a numpy Generator (dropout and other stochastic modules)."""
    generator = getattr(module, "rng", None)
    return generator if isinstance(generator, np.random.Generator) else None


class Gradients(list[np.ndarray | None]):
    """What :meth:`Module.gradients` returns: a plain list of gradients (``None`` for frozen
    parameters) that also keeps, in :attr:`params`, the parameter array each one belongs to.
    Optimizers use it to match gradients to parameters by identity, never by position."""

    params: tuple[np.ndarray, ...]

    def __init__(self, grads: list[np.ndarray | None], params: list[np.ndarray]) -> None:
        super().__init__(grads)
        self.params = tuple(params)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Gradients, (list(self), list(self.params)))


class Module:
    """Base class of every layer, activation, loss-free block and container.

    Subclasses call ``super().__init__(dtype)``, register arrays with :meth:`register_parameter`
    and :meth:`register_buffer`, assign child modules as attributes, and implement
    ``forward(x)`` (caching what ``backward`` needs) and ``backward(dy)`` (adding parameter
    gradients into ``self.grad(name)`` and returning d loss / d x).

    Parameters
    ----------
    dtype : numpy dtype or None, optional
        ``float32`` (default) or ``float64``; parameters are created and computed in it.
        ``None`` (the default of parameter-free layers such as activations, pooling, dropout
        and Flatten) computes in the input's float dtype, float32 for any other input, so such
        layers follow the model around them (see :meth:`adopt_input_dtype`).
    """

    _parameters: OrderedDict[str, np.ndarray]
    _gradients: dict[str, np.ndarray]
    _buffers: OrderedDict[str, np.ndarray]
    _modules: OrderedDict[str, Module]
    _frozen: set[str]
    #: the dtype parameters are created and computed in
    dtype: np.dtype
    #: whether ``dtype`` follows the input (built with ``dtype=None``)
    follows_input_dtype: bool
    #: training mode (see :meth:`train`)
    training: bool

    def __init__(self, dtype: Any = np.float32) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_gradients", {})
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_frozen", set())
        self.follows_input_dtype = dtype is None
        self.dtype = resolve_dtype(np.float32 if dtype is None else dtype)
        self.training = True

    def adopt_input_dtype(self, x: Any) -> None:
        """For a module built with ``dtype=None``: compute in ``x``'s dtype when it is float32 or
        float64 (called at the start of ``forward``; ``backward`` then uses the same dtype)."""
        if self.follows_input_dtype and isinstance(x, np.ndarray):
            if x.dtype in (np.float32, np.float64):
                self.dtype = x.dtype

    # --- registration -------------------------------------------------------------------------
    def register_parameter(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register ``value`` (cast to the module dtype, C-contiguous) as parameter ``name`` and
        give it a zero gradient array; returns the stored array."""
        array = np.ascontiguousarray(value, dtype=self.dtype)
        if array is value and not array.flags.writeable:
            raise ValueError(f"parameter {name!r} must be writeable")
        self._parameters[name] = array
        self._gradients[name] = np.zeros_like(array)
        object.__setattr__(self, name, array)
        _live.register(self, name, array)
        return array

    def register_buffer(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a non-trainable array saved in ``state_dict`` (e.g. running statistics)."""
        array = np.ascontiguousarray(value)
        self._buffers[name] = array
        object.__setattr__(self, name, array)
        return array

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RESERVED:
            raise AttributeError(f"{name} is reserved by Module")
        if isinstance(value, Module):
            self._modules[name] = value
        elif name in self._parameters:
            array = np.asarray(value)
            old = self._parameters[name]
            if array.shape != old.shape or array.dtype != old.dtype:
                raise ValueError(
                    f"parameter {name!r} must keep shape {old.shape} and dtype {old.dtype}, "
                    f"got {array.shape} {array.dtype}"
                )
            if array is not old:  # a gradient shared with another use of the old array
                self._gradients[name] = self._gradients[name].copy()
            self._parameters[name] = array
            _live.register(self, name, array)
        elif name in self._buffers:
            self._buffers[name] = np.asarray(value)
        object.__setattr__(self, name, value)

    # --- forward / backward ----------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``forward(x)``; in eval mode or under ``ferroptim.no_grad()`` the forward keeps no
        cache and the last training forward's cache stays for ``backward`` (see
        :mod:`ferroptim.nn._grad_mode`)."""
        return run_forward(self, self.forward, x)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling and ``copy.deepcopy``: everything but the record of :meth:`flatten_parameters`
        (the copy's arrays are separately allocated, so it is not flat)."""
        state = self.__dict__.copy()
        state.pop(_flatten.RECORD, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling and ``copy.deepcopy``: register the copied parameters as live."""
        self.__dict__.update(state)
        for name, array in self._parameters.items():
            _live.register(self, name, array)

    def grad(self, name: str) -> np.ndarray:
        """The gradient array of own parameter ``name`` (accumulate into it with ``+=``)."""
        return self._gradients[name]

    def requires_grad(self, name: str) -> bool:
        """Whether own parameter ``name`` is trainable (not frozen)."""
        return name not in self._frozen

    # --- traversal ------------------------------------------------------------------------------
    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (named ``prefix``) and every descendant, depth first, in torch's order."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def _named(self, attr: str) -> Iterator[tuple[str, Module, str]]:
        for prefix, module in self.named_modules():
            for name in getattr(module, attr):
                yield (f"{prefix}.{name}" if prefix else name), module, name

    def _unique_parameters(self) -> list[tuple[str, Module, str]]:
        """``(full name, module, name)`` of the first use of every parameter array.

        A parameter used by several modules (tied weights: ``linear.weight = embedding.weight``)
        is listed once, under its first name, as in torch. Its uses share one gradient array:
        each later use's gradient is added into the first one's and then replaced by it, so
        every ``backward`` (which adds into ``grad(name)``) accumulates into the same array,
        which holds the sum of the gradients of every use. Whether it is frozen is decided by
        its first use."""
        first: dict[int, tuple[str, Module, str]] = {}
        for full, module, name in self._named("_parameters"):
            key = id(module._parameters[name])
            if key not in first:
                first[key] = (full, module, name)
                continue
            _, owner, owner_name = first[key]
            shared = owner._gradients[owner_name]
            mine = module._gradients[name]
            if mine is not shared:
                shared += mine
                module._gradients[name] = shared
        return list(first.values())

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` for every parameter, torch's names and order (``"0.weight"``); a
        parameter used by several modules (tied weights) appears once, under its first name."""
        return [(full, m._parameters[n]) for full, m, n in self._unique_parameters()]

    def parameters(self) -> list[np.ndarray]:
        """Every parameter array, in ``named_parameters`` order (frozen ones included)."""
        return [array for _, array in self.named_parameters()]

    def named_gradients(self) -> list[tuple[str, np.ndarray | None]]:
        """``(name, gradient)`` aligned with ``named_parameters``; ``None`` for frozen parameters,
        which optimizers then skip. A tied parameter's gradient is the sum over its uses (one
        array shared by them, see :meth:`_unique_parameters`)."""
        return [
            (full, None if n in m._frozen else m._gradients[n])
            for full, m, n in self._unique_parameters()
        ]

    def gradients(self) -> Gradients:
        """Gradients aligned with ``parameters()`` (``None`` where a parameter is frozen).

        The list remembers which parameter array each gradient belongs to, so
        ``opt.step(model.gradients())`` matches them by identity (as ``opt.step(model)``)
        even when the optimizer's ``param_groups`` order differs from ``parameters()``."""
        pairs = [
            (m._parameters[n], None if n in m._frozen else m._gradients[n])
            for _, m, n in self._unique_parameters()
        ]
        return Gradients([g for _, g in pairs], [p for p, _ in pairs])

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return [(full, m._buffers[n]) for full, m, n in self._named("_buffers")]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(
            m._parameters[n].size
            for _, m, n in self._unique_parameters()
            if not (trainable_only and n in m._frozen)
        )

    def flatten_parameters(self) -> Module:
        """Put every parameter of this module tree into one contiguous buffer per dtype, and
        every gradient into another (torch's ``RNN.flatten_parameters``, for any model); returns
        this module.

        Separately allocated arrays read about 10% slower than the same bytes in one
        allocation, so a norm or a clip over a flat model moves its bytes faster (a plain
        optimizer step showed no consistent gain or loss: see the README).
        After the call each parameter (and gradient) is a C-contiguous view of its dtype's
        buffer, in ``named_parameters()`` order, starting on a 64-byte boundary, holding the
        same values; every module attribute, ``_parameters`` / ``_gradients`` entry and the
        live registry point at the views. Tied weights stay one array with one gradient,
        frozen parameters are moved too and stay frozen, buffers are left alone. Values,
        dtypes, shapes, names, ``state_dict`` and forward/backward results do not change (bit
        for bit). Calling it on a flat model is a no-op that keeps the same arrays.

        Call it before building the optimizer (and ``DistributedOptimizer``, ``fit``'s
        callbacks, anything holding parameter arrays): the old arrays are made read-only, so
        an optimizer built on them raises ``ValueError`` at its next step instead of
        training arrays the model no longer uses. Take ``parameters()`` / ``gradients()``
        lists again after the call: a plain list of the old gradients (``list(gradients())``)
        would still be read, and hold what they held at the call (a ``gradients()`` list
        itself is matched to its parameters, and then raises). ``copy.deepcopy`` and
        unpickling give a model with separately allocated arrays (the same values): flatten
        the copy again. ``zero_grad`` on a flat model is one fill per gradient buffer.

        Raises
        ------
        ValueError
            A parameter is also a parameter of a module outside this tree (flattening would
            untie it); nothing is changed.
        """
        _flatten.flatten_parameters(self)
        return self

    # --- modes, gradients, freezing ---------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm uses and updates batch statistics)."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every gradient to zero in place. ``set_to_none`` is accepted for torch code and
        ignored: gradient arrays are preallocated and reused, never set to None. On a module
        flattened by :meth:`flatten_parameters` (while its gradients are still those views) it
        is one fill of each gradient buffer (measured under load: 0.82x the time on separate
        arrays for the transformer workload's 55 MB, 0.67x for small CNN and MLP models)."""
        if _flatten.zero_flat_gradients(self):
            return
        for module in self.modules():
            for grad in module._gradients.values():
                grad.fill(0)

    def freeze(self, *names: str) -> Module:
        """Freeze parameters (all of this module's when no names are given; otherwise full names
        as in ``named_parameters``): their gradients read as ``None`` and optimizers skip them."""
        self._set_frozen(names, True)
        return self

    def unfreeze(self, *names: str) -> Module:
        """Undo :meth:`freeze` for the given full names (all when none are given)."""
        self._set_frozen(names, False)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """torch's spelling of freezing: ``requires_grad_(False)`` is :meth:`freeze` of all this
        module's parameters, ``requires_grad_(True)`` :meth:`unfreeze`."""
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"requires_grad must be a bool, got {requires_grad!r}")
        self._set_frozen((), not requires_grad)
        return self

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn(module)`` on every submodule, children before their parent, then on this
        module (torch's order; e.g. a custom initialization); returns this module."""
        if not callable(fn):
            raise TypeError(f"apply: fn must be callable, got {type(fn).__name__}")
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def _set_frozen(self, names: tuple[str, ...], frozen: bool) -> None:
        entries = list(self._named("_parameters"))
        known = {full for full, _, _ in entries}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise KeyError(f"no parameter named {unknown[0]!r}; known: {sorted(known)}")
        for full, module, name in entries:
            if names and full not in names:
                continue
            if frozen:
                module._frozen.add(name)
            else:
                module._frozen.discard(name)

    # --- state_dict -------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer under torch's keys and layouts (parameters of a
        module before its buffers, modules depth first), e.g. ``"1.running_mean"``."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, array in module._parameters.items():
                out[dot + name] = array.copy()
            for name, array in module._buffers.items():
                out[dot + name] = array.copy()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays into the existing parameters and buffers (in place, so optimizers built
        on ``parameters()`` keep working).

        Every key, shape and value is checked before anything is written: with ``strict`` a
        missing or unexpected key raises ``KeyError`` naming it and its shape (the expected
        one for a missing key, the given one for an unexpected key); a shape mismatch raises
        ``ValueError`` naming the key and both shapes; non-numeric values raise ``TypeError``.
        """
        if not isinstance(state_dict, Mapping):
            refuse_checkpoint(state_dict, "model")
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = {}
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for store in (module._parameters, module._buffers):
                for name, array in store.items():
                    targets[dot + name] = array
        if strict:
            missing = [key for key in targets if key not in state_dict]
            if missing:
                shape = f"expected shape {targets[missing[0]].shape}"
                raise _key_error("is missing", missing, shape, "missing")
            extra = [key for key in state_dict if key not in targets]
            if extra:
                shape = f"given shape {_shape_of(state_dict[extra[0]])}"
                raise _key_error("has unexpected", extra, shape, "unexpected")
        staged = []
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{key!r}] must be numeric, got dtype {value.dtype}")
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {value.shape}, expected {target.shape}"
                )
            staged.append((target, value))
        for target, value in staged:
            np.copyto(target, value, casting="unsafe")

    # --- random state (dropout and other stochastic modules) ----------------------------
    def rng_state(self) -> dict[str, Any]:
        """The state of every module's random generator (``module.rng``), by module name, as
        plain JSON-compatible dicts; restores with :meth:`set_rng_state`."""
        return {
            prefix: generator.bit_generator.state
            for prefix, module in self.named_modules()
            if (generator := _generator(module)) is not None
        }

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore generator states captured by :meth:`rng_state`.

        All-or-nothing: every name and every value is checked first (a value is tried on a
        scratch generator of the same bit-generator type), and only then are the states set.

        Raises
        ------
        TypeError
            ``state`` is not a mapping, or a value is not a state dict of the right form.
        KeyError
            A name is not a module with a random generator ``rng``.
        ValueError
            A value is a state of another bit generator or has out-of-range numbers.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"rng state must be a mapping, got {type(state).__name__}")
        generators = {
            prefix: generator
            for prefix, module in self.named_modules()
            if (generator := _generator(module)) is not None
        }
        for prefix in state:
            if prefix not in generators:
                raise KeyError(f"rng state names {prefix!r}, which has no random generator")
        for prefix, value in state.items():
            _check_rng_state(generators[prefix].bit_generator, value, prefix)
        for prefix, value in state.items():
            generators[prefix].bit_generator.state = value

    # --- display ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + ("\n)" if self._modules else ")")

"""Every optimizer described once: the registry the rest of the package derives from.

An :class:`OptimizerSpec` holds an optimizer's torch name, its hyperparameters (name, default,
allowed range, type, whether it is keyword-only in torch's signature), its state arrays (name,
whether they stay non-negative, which option turns them on) and its per-tensor scalars. From it:

* ``ferroptim.optim``: the optimizer class (signature, defaults, validation, docstring, state
  handling and the kernel call) — :func:`ferroptim.optim.optimizer.optimizer_class`;
* ``ferroptim.functional``: the stateless ``<kernel>_step`` functions;
* ``ferroptim.reference``: argument parsing and the loop around each element update;
* the test tables (``tests/conftest.py``), and the checks that the native kernels take exactly
  these keyword arguments and state lists.

The element update itself lives in ``rust/core/src/optim/<kernel>.rs`` and its NumPy twin in
``ferroptim/reference/<kernel>.py``. ``docs/adding-an-optimizer.md`` walks through adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ferroptim._checks import (
    CLOSED_UNIT,
    FINITE,
    NON_NEGATIVE,
    UNIT,
    Range,
    check_flag,
    check_real,
    invalid,
)

__all__ = [
    "OPTIMIZERS",
    "SPECS",
    "Hyper",
    "OptimizerSpec",
    "Scalar",
    "State",
    "by_kernel",
]

Kind = Literal["real", "flag", "betas"]


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter, named as in torch.optim.

    ``kind`` is ``"real"``, ``"flag"`` (a bool) or ``"betas"`` (a pair; the kernels take it as
    ``beta1`` and ``beta2``, each in ``allowed``). ``keyword_only`` places it after the ``*`` of
    torch's signature. ``kernel=False`` marks an option the kernel never sees (Adagrad's
    ``initial_accumulator_value`` only fills the state).
    """

    name: str
    default: Any
    kind: Kind = "real"
    allowed: Range = NON_NEGATIVE
    keyword_only: bool = False
    kernel: bool = True
    doc: str = ""

    def check(self, value: object) -> Any:
        """``value`` checked and normalized (a float, a bool, or a pair of floats)."""
        if self.kind == "flag":
            return check_flag(self.name, value)
        if self.kind == "betas":
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise TypeError(f"{self.name} must be a pair (beta1, beta2), got {value!r}")
            return (
                check_real(f"{self.name}[0]", value[0], self.allowed),
                check_real(f"{self.name}[1]", value[1], self.allowed),
            )
        return check_real(self.name, value, self.allowed)

    @property
    def kernel_names(self) -> tuple[str, ...]:
        """The kernel's keyword argument(s) for this hyperparameter."""
        if not self.kernel:
            return ()
        return ("beta1", "beta2") if self.kind == "betas" else (self.name,)

    def type_name(self) -> str:
        return {"real": "float", "flag": "bool", "betas": "(float, float)"}[self.kind]


@dataclass(frozen=True)
class State:
    """One state array per parameter, as named in torch's ``state_dict`` (``"exp_avg"``).

    ``kernel_arg`` names the kernel's list argument (``"exp_avgs"`` by default). ``when`` is the
    option that turns the state on: the name of a flag hyperparameter (``"amsgrad"``: the state
    exists exactly when the flag is on, so the functional form infers the flag from the list), or
    ``(text, test)`` for any other condition (``("momentum != 0", <group -> bool>)``); ``None``
    means always. ``non_negative`` states (sums, maxima of squares or magnitudes) refuse negative
    values on load.
    """

    name: str
    non_negative: bool = False
    when: str | tuple[str, Callable[[Mapping[str, Any]], bool]] | None = None
    kernel_arg: str = ""

    def __post_init__(self) -> None:
        if not self.kernel_arg:
            object.__setattr__(self, "kernel_arg", self.name + "s")

    @property
    def optional(self) -> bool:
        return self.when is not None

    @property
    def flag(self) -> str | None:
        """The flag hyperparameter that turns this state on, if that is what does."""
        return self.when if isinstance(self.when, str) else None

    @property
    def condition(self) -> str:
        """The condition in words (``"amsgrad=True"``)."""
        if self.when is None:
            return "always"
        return f"{self.when}=True" if isinstance(self.when, str) else self.when[0]

    def used(self, group: Mapping[str, Any]) -> bool:
        if self.when is None:
            return True
        if isinstance(self.when, str):
            return bool(group[self.when])
        return bool(self.when[1](group))


@dataclass(frozen=True)
class Scalar:
    """A scalar kept per parameter besides ``step`` (NAdam's ``mu_product``): a float32 array with
    one value per tensor, passed to the kernel as ``kernel_arg``, allowed in ``allowed`` on load."""

    name: str
    initial: float
    allowed: Range
    kernel_arg: str


@dataclass(frozen=True)
class OptimizerSpec:
    """The single description of one optimizer.

    ``kernel`` names the kernel family (``"adam"``: ``ferroptim._native.adam_step``,
    ``ferroptim.reference.adam``, ``ferroptim.functional.adam_step``). ``decay`` says how
    ``weight_decay`` applies: ``"l2"`` (added to the gradient), ``"decoupled"`` (``p *= 1 -
    lr*wd``) or ``"option"`` (the ``decoupled_weight_decay`` flag chooses). ``steps`` says how
    the update uses the step count ``t``: ``"count"`` (bias corrections, lr decay), ``"first"``
    (only ``t == 1`` matters: SGD's buffer) or ``"none"``; it also decides whether the functional
    form takes ``step``, and whether ``step`` is saved (``"first"``: torch's SGD saves none).
    ``fixed`` pins hyperparameters a variant does not expose (AdamW's ``decoupled_weight_decay``).
    ``golden`` names the fixture in ``tests/data`` holding its trajectories from the library it
    follows (torch.optim or optax).
    """

    name: str
    kernel: str
    summary: str
    formula: str
    hypers: tuple[Hyper, ...]
    states: tuple[State, ...]
    scalars: tuple[Scalar, ...] = ()
    decay: Literal["l2", "decoupled", "option"] = "l2"
    steps: Literal["count", "first", "none"] = "count"
    eager_state: bool = False
    state_fill: str | None = None
    combination: Callable[[Mapping[str, Any]], str | None] | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    golden: str = "golden.npz"

    # ----- derived views ------------------------------------------------------------------------
    @property
    def kernel_name(self) -> str:
        return f"{self.kernel}_step"

    @property
    def defaults(self) -> dict[str, Any]:
        return {h.name: h.default for h in self.hypers}

    @property
    def exposed(self) -> tuple[Hyper, ...]:
        """The hyperparameters of the class signature (``fixed`` ones left out)."""
        return tuple(h for h in self.hypers if h.name not in self.fixed)

    def hyper(self, name: str) -> Hyper:
        return next(h for h in self.hypers if h.name == name)

    @property
    def kernel_hypers(self) -> tuple[str, ...]:
        """The kernel's keyword arguments (besides ``grad_scale`` and ``clip_value``), in the
        order the kernels check them."""
        return tuple(n for h in self.hypers for n in h.kernel_names)

    @property
    def non_negative_states(self) -> frozenset[str]:
        return frozenset(s.name for s in self.states if s.non_negative)

    def active_states(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays ``group``'s options use, in kernel order."""
        return tuple(s.name for s in self.states if s.used(group))

    def variant(self, name: str, *, defaults: Mapping[str, Any], fixed: Mapping[str, Any]) -> Any:
        """The same optimizer under another name, with other defaults and pinned options."""
        hypers = tuple(
            replace(h, default=fixed.get(h.name, defaults.get(h.name, h.default)))
            for h in self.hypers
        )
        return replace(self, name=name, hypers=hypers, fixed=dict(fixed))

    # ----- checks ------------------------------------------------------------------------------
    def check_group(self, group: dict[str, Any]) -> None:
        """Check (and normalize in place) every hyperparameter of ``group``, then the
        combinations the optimizer refuses."""
        for h in self.hypers:
            group[h.name] = h.check(group[h.name])
        if self.combination is not None:
            why = self.combination(group)
            if why is not None:
                raise ValueError(why)

    def kernel_kwargs(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The kernel's keyword arguments from a checked group (``betas`` split in two)."""
        out: dict[str, Any] = {}
        for h in self.hypers:
            if not h.kernel:
                continue
            if h.kind == "betas":
                out["beta1"], out["beta2"] = group[h.name]
            else:
                out[h.name] = group[h.name]
        return out

    # ----- documentation -----------------------------------------------------------------------
    def parameters_doc(self) -> str:
        """The numpydoc ``Parameters`` entries of the hyperparameters."""
        lines = []
        for h in self.exposed:
            default = h.default
            shown = f"{default!r}" if h.kind != "real" else f"{default:g}"
            lines.append(f"{h.name} : {h.type_name()}, default {shown}")
            if h.doc:
                lines.append(f"    {h.doc}")
        return "\n".join(lines)


# ----- the optimizers --------------------------------------------------------------------------


def _lr(default: float) -> Hyper:
    return Hyper("lr", default, doc="Learning rate.")


def _betas(default: tuple[float, float]) -> Hyper:
    return Hyper("betas", default, "betas", UNIT, doc="Decay rates of the moment estimates.")


_WEIGHT_DECAY = Hyper("weight_decay", 0.0)
_MAXIMIZE = Hyper("maximize", False, "flag", keyword_only=True, doc="Maximize the objective.")
_DECOUPLED = Hyper("decoupled_weight_decay", False, "flag", doc="AdamW-style weight decay.")
_EXP_AVG = State("exp_avg")
_EXP_AVG_SQ = State("exp_avg_sq", non_negative=True)


def _nesterov_needs_momentum(group: Mapping[str, Any]) -> str | None:
    if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
        return "nesterov: Nesterov momentum requires a momentum and zero dampening"
    return None


SGD = OptimizerSpec(
    name="SGD",
    kernel="sgd",
    summary="Stochastic gradient descent, as ``torch.optim.SGD``.",
    formula="``buf = g`` on the first step, then ``buf = momentum * buf + (1 - dampening) * g``; "
    "``d = g + momentum * buf`` (nesterov) or ``buf``; ``p -= lr * d`` (``d = g`` without "
    "momentum).",
    hypers=(
        _lr(1e-3),
        Hyper("momentum", 0.0),
        Hyper("dampening", 0.0, allowed=FINITE),
        _WEIGHT_DECAY,
        Hyper("nesterov", False, "flag", doc="Requires ``momentum > 0`` and ``dampening == 0``."),
        _MAXIMIZE,
    ),
    states=(State("momentum_buffer", when=("momentum != 0", lambda g: g["momentum"] != 0)),),
    steps="first",
    combination=_nesterov_needs_momentum,
)

ADAGRAD = OptimizerSpec(
    name="Adagrad",
    kernel="adagrad",
    summary="Adagrad, as ``torch.optim.Adagrad``.",
    formula="``clr = lr / (1 + (t - 1) * lr_decay)``; ``sum += g * g``; "
    "``p -= clr * g / (sqrt(sum) + eps)``.",
    hypers=(
        _lr(1e-2),
        Hyper("lr_decay", 0.0),
        _WEIGHT_DECAY,
        Hyper(
            "initial_accumulator_value",
            0.0,
            kernel=False,
            doc="Starting value of ``sum`` (state is created at construction, as torch does).",
        ),
        Hyper("eps", 1e-10),
        _MAXIMIZE,
    ),
    states=(State("sum", non_negative=True, kernel_arg="state_sums"),),
    eager_state=True,
    state_fill="initial_accumulator_value",
)

ADADELTA = OptimizerSpec(
    name="Adadelta",
    kernel="adadelta",
    summary="Adadelta, as ``torch.optim.Adadelta``.",
    formula="``sq = rho*sq + (1-rho)*g*g``; ``delta = sqrt(acc + eps) / sqrt(sq + eps) * g``; "
    "``acc = rho*acc + (1-rho)*delta*delta``; ``p -= lr * delta``.",
    hypers=(
        _lr(1.0),
        Hyper("rho", 0.9, allowed=CLOSED_UNIT),
        Hyper("eps", 1e-6),
        _WEIGHT_DECAY,
        _MAXIMIZE,
    ),
    states=(State("square_avg", non_negative=True), State("acc_delta", non_negative=True)),
    steps="none",
)

RMSPROP = OptimizerSpec(
    name="RMSprop",
    kernel="rmsprop",
    summary="RMSprop, as ``torch.optim.RMSprop``.",
    formula="``sq = alpha*sq + (1-alpha)*g*g``; centered: ``ga = lerp(ga, g, 1-alpha)``, "
    "``avg = sqrt(sq - ga*ga) + eps``, else ``avg = sqrt(sq) + eps``; with momentum "
    "``buf = momentum*buf + g/avg``, ``p -= lr*buf``, else ``p -= lr*g/avg``.",
    hypers=(
        _lr(1e-2),
        Hyper("alpha", 0.99),
        Hyper("eps", 1e-8),
        _WEIGHT_DECAY,
        Hyper("momentum", 0.0),
        Hyper("centered", False, "flag"),
        _MAXIMIZE,
    ),
    states=(
        State("square_avg", non_negative=True),
        State("grad_avg", when="centered"),
        State("momentum_buffer", when=("momentum > 0", lambda g: g["momentum"] > 0)),
    ),
    steps="none",
)

#: Adam's moment hyperparameters, shared by its family (Adam, Adamax, NAdam, RAdam)
_ADAM_MOMENTS = (_betas((0.9, 0.999)), Hyper("eps", 1e-8), _WEIGHT_DECAY)

ADAM = OptimizerSpec(
    name="Adam",
    kernel="adam",
    summary="Adam, as ``torch.optim.Adam`` (AMSGrad with ``amsgrad=True``).",
    formula="``m = lerp(m, g, 1-beta1)``; ``v = beta2*v + (1-beta2)*g*g``; (amsgrad: "
    "``vmax = max(vmax, v)`` replaces ``v``); "
    "``p -= lr/(1-beta1**t) * m / (sqrt(v)/sqrt(1-beta2**t) + eps)``. ``weight_decay`` is an L2 "
    "term added to the gradient, or with ``decoupled_weight_decay=True`` (AdamW) "
    "``p *= 1 - lr*weight_decay`` first.",
    hypers=(
        _lr(1e-3),
        *_ADAM_MOMENTS,
        Hyper("amsgrad", False, "flag"),
        _MAXIMIZE,
        Hyper("decoupled_weight_decay", False, "flag", keyword_only=True),
    ),
    states=(
        _EXP_AVG,
        _EXP_AVG_SQ,
        State("max_exp_avg_sq", non_negative=True, when="amsgrad"),
    ),
    decay="option",
)

ADAMW = ADAM.variant(
    "AdamW",
    defaults={"weight_decay": 1e-2},
    fixed={"decoupled_weight_decay": True},
)
ADAMW = replace(
    ADAMW,
    summary="AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2).",
    formula="``p *= 1 - lr*weight_decay`` before the Adam update (see :class:`Adam`).",
)

ADAMAX = OptimizerSpec(
    name="Adamax",
    kernel="adamax",
    summary="Adamax, as ``torch.optim.Adamax``.",
    formula="``m = lerp(m, g, 1-beta1)``; ``u = max(beta2*u, |g| + eps)``; "
    "``p -= lr/(1-beta1**t) * m/u``.",
    hypers=(_lr(2e-3), *_ADAM_MOMENTS, _MAXIMIZE),
    states=(_EXP_AVG, State("exp_inf", non_negative=True)),
)

NADAM = OptimizerSpec(
    name="NAdam",
    kernel="nadam",
    summary="NAdam, as ``torch.optim.NAdam``.",
    formula="``mu_t = beta1*(1 - 0.5*0.96**(t*momentum_decay))``; ``mu_product *= mu_t`` "
    "(float32, as torch's scalar state); ``m``, ``v`` as Adam; "
    "``denom = sqrt(v/(1-beta2**t)) + eps``; ``p -= lr*(1-mu_t)/(1-mu_product) * g/denom + "
    "lr*mu_{t+1}/(1-mu_product*mu_{t+1}) * m/denom``.",
    hypers=(
        _lr(2e-3),
        *_ADAM_MOMENTS,
        Hyper("momentum_decay", 4e-3),
        _DECOUPLED,
        _MAXIMIZE,
    ),
    states=(_EXP_AVG, _EXP_AVG_SQ),
    scalars=(Scalar("mu_product", 1.0, CLOSED_UNIT, "mu_products"),),
    decay="option",
)

RADAM = OptimizerSpec(
    name="RAdam",
    kernel="radam",
    summary="RAdam, as ``torch.optim.RAdam``.",
    formula="``m``, ``v`` as Adam; ``rho_inf = 2/(1-beta2) - 1``; "
    "``rho_t = rho_inf - 2t*beta2**t/(1-beta2**t)``; if ``rho_t > 5``: "
    "``p -= lr * m/(1-beta1**t) * rect * sqrt(1-beta2**t)/(sqrt(v) + eps)`` with "
    "``rect = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))``, else "
    "``p -= lr * m/(1-beta1**t)``.",
    hypers=(
        _lr(1e-3),
        *_ADAM_MOMENTS,
        _DECOUPLED,
        _MAXIMIZE,
    ),
    states=(_EXP_AVG, _EXP_AVG_SQ),
    decay="option",
)

LION = OptimizerSpec(
    name="Lion",
    kernel="lion",
    summary="Lion (optax.lion).",
    formula="``c = beta1*m + (1-beta1)*g``; ``p = p*(1 - lr*weight_decay) - lr*sign(c)``; "
    "``m = beta2*m + (1-beta2)*g``.",
    hypers=(
        _lr(1e-4),
        _betas((0.9, 0.99)),
        replace(_WEIGHT_DECAY, doc="Decoupled, as optax.lion's."),
        _MAXIMIZE,
    ),
    states=(_EXP_AVG,),
    decay="decoupled",
    steps="none",
)

ADABELIEF = OptimizerSpec(
    name="AdaBelief",
    kernel="adabelief",
    summary="AdaBelief, as ``optax.adabelief``: Adam whose second moment is the variance of the "
    "gradient around its moving average (the belief in the gradient).",
    formula="``m = lerp(m, g, 1-beta1)``; ``s = beta2*s + (1-beta2)*(g-m)**2 + eps_root``; "
    "``p -= lr/(1-beta1**t) * m / (sqrt(s)/sqrt(1-beta2**t) + eps)``. ``weight_decay`` is an L2 "
    "term added to the gradient, or with ``decoupled_weight_decay=True`` "
    "``p *= 1 - lr*weight_decay`` first.",
    hypers=(
        _lr(1e-3),
        _betas((0.9, 0.999)),
        Hyper("eps", 1e-16),
        Hyper("eps_root", 1e-16, doc="Added to the second moment at every step."),
        _WEIGHT_DECAY,
        _MAXIMIZE,
        Hyper("decoupled_weight_decay", False, "flag", keyword_only=True),
    ),
    states=(_EXP_AVG, State("exp_avg_var", non_negative=True)),
    decay="option",
    golden="golden_adabelief.npz",
)

#: every optimizer class, in the order of ``ferroptim.optim.__all__``'s documentation
OPTIMIZERS: tuple[OptimizerSpec, ...] = (
    SGD,
    ADAGRAD,
    ADADELTA,
    RMSPROP,
    ADAM,
    ADAMW,
    ADAMAX,
    NADAM,
    RADAM,
    LION,
    ADABELIEF,
)

#: one spec per kernel (variants such as AdamW share their base's kernel)
SPECS: tuple[OptimizerSpec, ...] = tuple(s for s in OPTIMIZERS if not s.fixed)


def by_kernel(kernel: str) -> OptimizerSpec:
    """The spec of kernel family ``kernel`` (``"adam"``)."""
    for spec in SPECS:
        if spec.kernel == kernel:
            return spec
    raise invalid("kernel", kernel, f"one of {[s.kernel for s in SPECS]}")

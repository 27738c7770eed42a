"""Weight initializers with ``torch.nn.init`` semantics, in place on NumPy arrays.

Every initializer fills a floating-point ``numpy.ndarray`` in place and returns it. Values are
drawn in float64 from ``rng`` (``None``: the seedable default generator of
:func:`ferroptim.nn.manual_seed`; an int: a new generator seeded with it; or a
``numpy.random.Generator``) and rounded once to the array's dtype. ::

    from ferroptim.nn import init
    init.kaiming_uniform_(layer.weight, a=5**0.5, rng=0)
    init.normal_(layer.weight, std=0.02)           # the guide's 0.02 * randn
    init.scaled_normal_(layer.weight, init_scale=0.1)  # init_scale / sqrt(fan_in) * randn

Fans follow torch: for a weight of shape ``(out, in, *kernel)``,
``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferroptim._checks import NOT_NAN, check_real
from ferroptim.nn._rng import resolve_rng

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "scaled_normal_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

#: torch's gains that do not depend on ``param`` (leaky_relu's does: see calculate_gain)
_FIXED_GAINS: dict[str, float] = {
    **dict.fromkeys(("linear", "sigmoid"), 1.0),
    **dict.fromkeys((f"conv{d}d" for d in (1, 2, 3)), 1.0),
    **dict.fromkeys((f"conv_transpose{d}d" for d in (1, 2, 3)), 1.0),
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "selu": 3.0 / 4.0,
}


def _check_tensor(tensor: Any, function: str) -> np.ndarray:
    if not isinstance(tensor, np.ndarray):
        raise TypeError(f"{function}: tensor must be a numpy array, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{function}: tensor must have a floating dtype, got {tensor.dtype}")
    if not tensor.flags.writeable:
        raise ValueError(f"{function}: tensor is read-only")
    return tensor


def _fill(tensor: np.ndarray, values: np.ndarray | float) -> np.ndarray:
    tensor[...] = np.asarray(values).astype(tensor.dtype, copy=False)
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    ========================  ==========================================
    nonlinearity              gain
    ========================  ==========================================
    linear, convNd            1
    sigmoid                   1
    tanh                      5/3
    relu                      sqrt(2)
    leaky_relu                sqrt(2 / (1 + negative_slope^2)), slope = param or 0.01
    selu                      3/4
    ========================  ==========================================

    Raises
    ------
    ValueError
        An unknown ``nonlinearity`` (named in the message) or a ``param`` that is not a number.
    """
    if isinstance(nonlinearity, str) and nonlinearity in _FIXED_GAINS:
        return _FIXED_GAINS[nonlinearity]
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(
            param, (int, float, np.integer, np.floating)
        ):
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: np.ndarray) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *receptive_field)``.

    Raises ``ValueError`` for fewer than 2 dimensions.
    """
    shape = np.shape(tensor)
    if len(shape) < 2:
        raise ValueError(
            "fan in and fan out can not be computed for an array with fewer than 2 dimensions, "
            f"got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor: np.ndarray, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: np.ndarray, a: float = 0.0, b: float = 1.0, rng: Any = None) -> np.ndarray:
    """Fill with values from :math:`\\mathcal{U}(a, b)`; ``a <= b`` (ValueError otherwise)."""
    _check_tensor(tensor, "uniform_")
    low = check_real("uniform_: a", a, NOT_NAN)
    high = check_real("uniform_: b", b, NOT_NAN)
    if low > high:
        raise ValueError(f"uniform_: a must be <= b, got a={low} and b={high}")
    generator = resolve_rng(rng)
    return _fill(tensor, generator.uniform(low, high, tensor.shape))


def normal_(tensor: np.ndarray, mean: float = 0.0, std: float = 1.0, rng: Any = None) -> np.ndarray:
    """Fill with values from :math:`\\mathcal{N}(\\text{mean}, \\text{std}^2)`; ``std >= 0``.

    ``normal_(w, std=0.02)`` is the guide's ``0.02 * randn`` initialization.
    """
    _check_tensor(tensor, "normal_")
    mean = check_real("normal_: mean", mean, NOT_NAN)
    std = check_real("normal_: std", std, NOT_NAN)
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    generator = resolve_rng(rng)
    return _fill(tensor, mean + std * generator.standard_normal(tensor.shape))


def scaled_normal_(tensor: np.ndarray, init_scale: float = 1.0, rng: Any = None) -> np.ndarray:
    """Fill with :math:`\\frac{\\text{init\\_scale}}{\\sqrt{\\text{fan\\_in}}} \\mathcal{N}(0, 1)`.

    The guide's second recipe (``init_scale / sqrt(layer_width) * randn`` with ``init_scale``
    0.1 or 1); ``fan_in`` as in torch (input features times the kernel size).
    """
    _check_tensor(tensor, "scaled_normal_")
    scale = check_real("scaled_normal_: init_scale", init_scale, NOT_NAN)
    if scale < 0:
        raise ValueError(f"scaled_normal_: init_scale must be >= 0, got {scale}")
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    std = scale / math.sqrt(fan_in) if fan_in > 0 else 0.0
    generator = resolve_rng(rng)
    return _fill(tensor, std * generator.standard_normal(tensor.shape))


def trunc_normal_(
    tensor: np.ndarray,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    rng: Any = None,
) -> np.ndarray:
    """Fill with :math:`\\mathcal{N}(\\text{mean}, \\text{std}^2)` truncated to ``[a, b]``
    (absolute bounds, as in torch).

    Sampled exactly by rejection in standardized units ``z = (x - mean) / std``: normal
    proposals when at least 1 in 20 lands in the interval; otherwise uniform proposals on a
    narrow interval (accepted with probability :math:`e^{-(z^2 - z_{min}^2)/2}`) or, for a wide
    interval in one tail, Robert's (1995) shifted-exponential proposals. Values are finally
    clipped to ``[a, b]`` against rounding.
    """
    _check_tensor(tensor, "trunc_normal_")
    mean = check_real("trunc_normal_: mean", mean, NOT_NAN)
    std = check_real("trunc_normal_: std", std, NOT_NAN)
    low = check_real("trunc_normal_: a", a, NOT_NAN)
    high = check_real("trunc_normal_: b", b, NOT_NAN)
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be > 0, got {std}")
    if not low < high:
        raise ValueError(f"trunc_normal_: a must be < b, got a={low} and b={high}")
    generator = resolve_rng(rng)
    z = _standard_truncated_normal((low - mean) / std, (high - mean) / std, tensor.size, generator)
    values = np.clip(mean + std * z, low, high)
    return _fill(tensor, values.reshape(tensor.shape))


def _standard_truncated_normal(
    za: float, zb: float, size: int, generator: np.random.Generator
) -> np.ndarray:
    """``size`` draws of N(0, 1) conditioned on ``[za, zb]`` (see :func:`trunc_normal_`)."""
    sign = 1.0
    if zb <= 0.0:  # reflect a left-tail interval to the right
        za, zb, sign = -zb, -za, -1.0
    za, zb = max(za, -40.0), min(zb, 40.0)
    root2 = math.sqrt(2.0)
    if za >= 0.0:
        mass = 0.5 * (math.erfc(za / root2) - math.erfc(zb / root2))
    else:
        mass = 0.5 * (math.erf(zb / root2) - math.erf(za / root2))
    if mass >= 0.05:
        method, rate = "normal", mass
    elif za <= 0.0 or (zb - za) * za < 1.0:
        method, rate = "uniform", 0.3
    else:
        method, rate = "exponential", 0.5
    z_min = max(za, 0.0)
    shift = (za + math.sqrt(za * za + 4.0)) / 2.0  # Robert's optimal exponential rate
    out = np.empty(size)
    filled = proposed = accepted = 0
    while filled < size:
        want = size - filled
        batch = max(64, int(1.2 * want / rate))
        if method == "normal":
            draws = generator.standard_normal(batch)
            draws = draws[(draws >= za) & (draws <= zb)]
        elif method == "uniform":
            draws = generator.uniform(za, zb, batch)
            keep = generator.random(batch) < np.exp(-(draws * draws - z_min * z_min) / 2.0)
            draws = draws[keep]
        else:
            draws = za + generator.exponential(1.0 / shift, batch)
            keep = generator.random(batch) < np.exp(-((draws - shift) ** 2) / 2.0)
            draws = draws[keep & (draws <= zb)]
        take = draws[:want]
        out[filled : filled + take.size] = take
        filled += take.size
        proposed += batch
        accepted += draws.size
        rate = max(accepted / proposed, 1e-3)
    return sign * out


def constant_(tensor: np.ndarray, val: float) -> np.ndarray:
    """Fill with ``val``."""
    _check_tensor(tensor, "constant_")
    return _fill(tensor, check_real("constant_: val", val, NOT_NAN))


def zeros_(tensor: np.ndarray) -> np.ndarray:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor: np.ndarray) -> np.ndarray:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: np.ndarray, gain: float = 1.0, rng: Any = None) -> np.ndarray:
    """Glorot uniform: :math:`\\mathcal{U}(-b, b)` with
    :math:`b = \\text{gain} \\sqrt{6 / (\\text{fan\\_in} + \\text{fan\\_out})}`."""
    _check_tensor(tensor, "xavier_uniform_")
    gain = check_real("xavier_uniform_: gain", gain, NOT_NAN)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    return _fill(tensor, resolve_rng(rng).uniform(-bound, bound, tensor.shape))


def xavier_normal_(tensor: np.ndarray, gain: float = 1.0, rng: Any = None) -> np.ndarray:
    """Glorot normal: :math:`\\mathcal{N}(0, \\sigma^2)` with
    :math:`\\sigma = \\text{gain} \\sqrt{2 / (\\text{fan\\_in} + \\text{fan\\_out})}`."""
    _check_tensor(tensor, "xavier_normal_")
    gain = check_real("xavier_normal_: gain", gain, NOT_NAN)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    return _fill(tensor, std * resolve_rng(rng).standard_normal(tensor.shape))


def _kaiming_std(tensor: np.ndarray, a: float, mode: str, nonlinearity: str, function: str):
    _check_tensor(tensor, function)
    gain = calculate_gain(nonlinearity, a)
    fan = _calculate_correct_fan(tensor, mode)
    return gain / math.sqrt(fan) if fan > 0 else 0.0


def kaiming_uniform_(
    tensor: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: Any = None,
) -> np.ndarray:
    """He uniform: :math:`\\mathcal{U}(-b, b)` with
    :math:`b = \\text{gain} \\sqrt{3 / \\text{fan\\_mode}}`, ``gain = calculate_gain(nonlinearity,
    a)``. torch's default Linear/Conv weight init is ``kaiming_uniform_(w, a=sqrt(5))``
    (``b = 1/sqrt(fan_in)``)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    bound = math.sqrt(3.0) * std
    return _fill(tensor, resolve_rng(rng).uniform(-bound, bound, tensor.shape))


def kaiming_normal_(
    tensor: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: Any = None,
) -> np.ndarray:
    """He normal: :math:`\\mathcal{N}(0, \\sigma^2)` with
    :math:`\\sigma = \\text{gain} / \\sqrt{\\text{fan\\_mode}}`."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    return _fill(tensor, std * resolve_rng(rng).standard_normal(tensor.shape))


def orthogonal_(tensor: np.ndarray, gain: float = 1.0, rng: Any = None) -> np.ndarray:
    """A (semi-)orthogonal matrix times ``gain``, as torch: the array viewed as
    ``(shape[0], prod(shape[1:]))`` gets the Q factor of the QR decomposition of a standard
    normal matrix, with column signs fixed by ``sign(diag(R))`` (so Q is Haar distributed).
    Rows are orthonormal when ``rows <= cols``, columns otherwise."""
    _check_tensor(tensor, "orthogonal_")
    gain = check_real("orthogonal_: gain", gain, NOT_NAN)
    if tensor.ndim < 2:
        raise ValueError(
            f"orthogonal_: only arrays with 2 or more dimensions are supported, "
            f"got shape {tensor.shape}"
        )
    if tensor.size == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.size // rows
    flat = resolve_rng(rng).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(tensor.shape))


# --- layer initialization (Linear, Conv2d) ------------------------------------------------------
_NAMED_WEIGHT_INITS = {
    "normal": lambda w, rng: normal_(w, std=0.02, rng=rng),
    "scaled_normal": lambda w, rng: scaled_normal_(w, init_scale=1.0, rng=rng),
    "xavier_uniform": lambda w, rng: xavier_uniform_(w, rng=rng),
    "xavier_normal": lambda w, rng: xavier_normal_(w, rng=rng),
    "kaiming_uniform": lambda w, rng: kaiming_uniform_(w, nonlinearity="relu", rng=rng),
    "kaiming_normal": lambda w, rng: kaiming_normal_(w, nonlinearity="relu", rng=rng),
    "orthogonal": lambda w, rng: orthogonal_(w, rng=rng),
    "zeros": lambda w, rng: zeros_(w),
}
LAYER_INITS = tuple(_NAMED_WEIGHT_INITS)


def _check_layer_init(init: Any, layer: str) -> None:
    if init is None or callable(init):
        return
    if not isinstance(init, str) or init not in _NAMED_WEIGHT_INITS:
        raise ValueError(
            f"{layer}: init must be None, a callable(weight, rng) or one of {list(LAYER_INITS)}, "
            f"got {init!r}"
        )


def initialize_layer(
    weight: np.ndarray, bias: np.ndarray | None, init: Any, rng: Any, layer: str
) -> None:
    """Initialize a Linear/Conv weight (``(out, in, *kernel)``) and bias in place.

    ``init=None`` is torch's default: ``kaiming_uniform_(weight, a=sqrt(5))`` (that is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``) and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    A name from :data:`LAYER_INITS` or a ``callable(weight, rng)`` chooses the weight init
    (``"normal"`` is ``normal_(std=0.02)``, ``"scaled_normal"`` is ``scaled_normal_(init_scale=1)``,
    ``"kaiming_*"`` use ``nonlinearity="relu"``) and the bias starts at zero.
    """
    _check_layer_init(init, layer)
    generator = resolve_rng(rng)
    if init is None:
        kaiming_uniform_(weight, a=math.sqrt(5.0), rng=generator)
        if bias is not None:
            fan_in, _ = _calculate_fan_in_and_fan_out(weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            uniform_(bias, -bound, bound, rng=generator)
        return
    if callable(init):
        init(weight, generator)
    else:
        _NAMED_WEIGHT_INITS[init](weight, generator)
    if bias is not None:
        zeros_(bias)

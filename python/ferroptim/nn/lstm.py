"""LSTM: a stack of long short-term memory layers with backpropagation through time
(``torch.nn.LSTM``: same gate order, parameter names, layouts and initialisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ferroptim._checks import check_flag, check_int
from ferroptim.nn._checks import check_input, require_cache
from ferroptim.nn._grad_mode import run_forward
from ferroptim.nn._rng import resolve_rng
from ferroptim.nn.functional import sigmoid
from ferroptim.nn.init import initialize_layer
from ferroptim.nn.module import Module


@dataclass
class _LayerCache:
    """What one layer's backward needs: its input sequence, the hidden and cell states
    ``h[0..L]`` / ``c[0..L]`` (index 0 is the initial state), the activated gates and tanh(c)."""

    x: np.ndarray  # (L, N, I)
    h: np.ndarray  # (L + 1, N, H)
    c: np.ndarray  # (L + 1, N, H)
    gates: np.ndarray  # (L, N, 4H): sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    tanh_c: np.ndarray  # (L, N, H)


@dataclass
class _LayerGrads:
    """One layer's gradients: input sequence, initial states, weights and (summed) bias."""

    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db: np.ndarray


def lstm_layer_forward(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    bias: np.ndarray | None,
) -> _LayerCache:
    """Run one layer over a time-major sequence ``x`` (L, N, I) from states ``h0``, ``c0`` (N, H).

    The input projection ``x @ w_ih.T (+ bias)`` is one matmul for all steps; each step then adds
    ``h[t-1] @ w_hh.T`` and applies the gates (order i, f, g, o as in torch)::

        i, f, o = sigmoid(.), g = tanh(.),  c[t] = f * c[t-1] + i * g,  h[t] = o * tanh(c[t])
    """
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    projected = x @ w_ih.T
    if bias is not None:
        projected += bias
    h = np.empty((steps + 1, batch, hidden), x.dtype)
    c = np.empty_like(h)
    h[0], c[0] = h0, c0
    gates = np.empty_like(projected)
    tanh_c = np.empty((steps, batch, hidden), x.dtype)
    for t in range(steps):
        a = projected[t] + h[t] @ w_hh.T
        gate = gates[t]
        gate[:, : 2 * hidden] = sigmoid(a[:, : 2 * hidden])
        gate[:, 2 * hidden : 3 * hidden] = np.tanh(a[:, 2 * hidden : 3 * hidden])
        gate[:, 3 * hidden :] = sigmoid(a[:, 3 * hidden :])
        i, f, g, o = np.split(gate, 4, axis=1)
        c[t + 1] = f * c[t] + i * g
        tanh_c[t] = np.tanh(c[t + 1])
        h[t + 1] = o * tanh_c[t]
    return _LayerCache(x, h, c, gates, tanh_c)


def lstm_layer_backward(
    cache: _LayerCache,
    dh_seq: np.ndarray,
    dh_last: np.ndarray,
    dc_last: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
) -> _LayerGrads:
    """Backpropagation through time for one layer.

    ``dh_seq`` (L, N, H) is d loss / d h[t] from outside the recurrence (the layer's output
    sequence), ``dh_last`` / ``dc_last`` (N, H) the gradients of the final states. Walking
    ``t = L-1 .. 0`` with ``dh = dh_seq[t] + (carried dh)``::

        dc += dh * o * (1 - tanh(c)^2)
        da_i = dc * g * i(1-i),  da_f = dc * c[t-1] * f(1-f),  da_g = dc * i * (1-g^2),
        da_o = dh * tanh(c) * o(1-o),  carried dc = dc * f,  carried dh = da @ w_hh

    and then, over all steps at once, ``dx = da @ w_ih``, ``dw_ih = sum da^T x``,
    ``dw_hh = sum da^T h[t-1]``, ``db = sum da``.
    """
    steps, batch, _ = cache.x.shape
    hidden = w_hh.shape[1]
    da = np.empty_like(cache.gates)
    dh, dc = dh_last, dc_last
    for t in range(steps - 1, -1, -1):
        i, f, g, o = np.split(cache.gates[t], 4, axis=1)
        tanh_c = cache.tanh_c[t]
        dh = dh + dh_seq[t]
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        step = da[t]
        step[:, :hidden] = dc * g * i * (1.0 - i)
        step[:, hidden : 2 * hidden] = dc * cache.c[t] * f * (1.0 - f)
        step[:, 2 * hidden : 3 * hidden] = dc * i * (1.0 - g * g)
        step[:, 3 * hidden :] = dh * tanh_c * o * (1.0 - o)
        dc = dc * f
        dh = step @ w_hh
    flat = da.reshape(steps * batch, 4 * hidden)
    return _LayerGrads(
        dx=da @ w_ih,
        dh0=dh,
        dc0=dc,
        dw_ih=flat.T @ cache.x.reshape(steps * batch, -1),
        dw_hh=flat.T @ cache.h[:-1].reshape(steps * batch, hidden),
        db=flat.sum(axis=0),
    )


class LSTM(Module):
    """Multi-layer LSTM over a whole sequence, torch's ``nn.LSTM`` (unidirectional).

    Each layer ``k`` computes, for ``t = 1 .. L`` (layer 0 reads the input, layer ``k > 0`` the
    hidden states of layer ``k - 1``)::

        [i, f, g, o] = x_t @ weight_ih_lk.T + bias_ih_lk + h_{t-1} @ weight_hh_lk.T + bias_hh_lk
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    Parameters
    ----------
    input_size, hidden_size : int
        Features per input step ``I`` and hidden units ``H``.
    num_layers : int, optional
        Stacked layers (default 1).
    bias : bool, optional
        Whether to use ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (default ``True``).
    batch_first : bool, optional
        Batched input and output are ``(N, L, .)`` instead of ``(L, N, .)``; states are always
        ``(num_layers, N, H)``, as in torch.
    dtype : numpy dtype, optional
        ``float32`` (default) or ``float64``.
    init : None, str or callable, optional
        Weight initialization. ``None`` (default) is torch's: every weight and bias
        ``~ U(-1/sqrt(H), 1/sqrt(H))``. A name from ``nn.init.LAYER_INITS`` (``"orthogonal"``,
        ``"xavier_uniform"``, ``"normal"``, ...) or a ``callable(weight, rng)`` initializes each
        ``weight_ih_l{k}`` and ``weight_hh_l{k}`` as a whole ``(4H, .)`` matrix (as
        ``Linear(init=...)`` does its weight) and sets the biases to zero.
    rng : None, int or numpy Generator, optional
        Source of the initial weights (default: the generator seeded by ``nn.manual_seed``).

    Notes
    -----
    Parameters per layer, in torch's order: ``weight_ih_l{k}`` (4H, I or H), ``weight_hh_l{k}``
    (4H, H), ``bias_ih_l{k}`` (4H), ``bias_hh_l{k}`` (4H), gate rows ordered i, f, g, o; all drawn
    from ``U(-1/sqrt(H), 1/sqrt(H))``. ``forward(x)`` returns the output sequence (the last
    layer's ``h_t``) and sets ``h_n`` and ``c_n``. An unbatched ``(L, I)`` input gives an
    ``(L, H)`` output and ``(num_layers, H)`` states. ``backward(dy, dh_n=None, dc_n=None)``
    returns d loss / d x and sets ``dh_0`` / ``dc_0`` (gradients of the initial states).
    ``dropout``, ``bidirectional`` and ``proj_size`` are not supported.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        *,
        dtype: Any = np.float32,
        init: Any = None,
        rng: Any = None,
    ) -> None:
        super().__init__(dtype)
        self.input_size = check_int("input_size", input_size, low=1)
        self.hidden_size = check_int("hidden_size", hidden_size, low=1)
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        generator = resolve_rng(rng)
        bound = 1.0 / np.sqrt(self.hidden_size)
        gates = 4 * self.hidden_size
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else self.hidden_size
            shapes: dict[str, tuple[int, ...]] = {
                f"weight_ih_l{k}": (gates, fan_in),
                f"weight_hh_l{k}": (gates, hidden_size),
            }
            if self.bias:
                shapes.update({f"bias_ih_l{k}": (gates,), f"bias_hh_l{k}": (gates,)})
            for name, shape in shapes.items():
                if init is None:
                    self.register_parameter(name, generator.uniform(-bound, bound, shape))
                    continue
                array = self.register_parameter(name, np.zeros(shape))
                if name.startswith("weight"):
                    initialize_layer(array, None, init, generator, "LSTM")
        self.h_n: np.ndarray | None = None
        self.c_n: np.ndarray | None = None
        self.dh_0: np.ndarray | None = None
        self.dc_0: np.ndarray | None = None
        self._cache: tuple[list[_LayerCache], bool] | None = None

    def __call__(self, x: np.ndarray, hx: Any = None) -> np.ndarray:
        return run_forward(self, self.forward, x, hx)

    # --- shapes --------------------------------------------------------------------------
    def _state_shape(self, batch: int, batched: bool) -> tuple[int, ...]:
        if batched:
            return (self.num_layers, batch, self.hidden_size)
        return (self.num_layers, self.hidden_size)

    def _check_state(self, value: Any, name: str, batch: int, batched: bool) -> np.ndarray:
        """A state argument (``h_0``, ``dh_n``, ...) as a ``(num_layers, N, H)`` array."""
        shape = self._state_shape(batch, batched)
        array = check_input(value, self.dtype, name=name, ndim=len(shape), layer="LSTM")
        if array.shape != shape:
            raise ValueError(f"LSTM: {name} must have shape {shape}, got {array.shape}")
        return array.reshape(self.num_layers, batch, self.hidden_size)

    def _to_time_major(self, x: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return x[:, None, :]
        return np.ascontiguousarray(x.transpose(1, 0, 2)) if self.batch_first else x

    def _from_time_major(self, seq: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return seq[:, 0, :]
        return np.ascontiguousarray(seq.transpose(1, 0, 2)) if self.batch_first else seq

    def _layer_params(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        w_ih = self._parameters[f"weight_ih_l{k}"]
        w_hh = self._parameters[f"weight_hh_l{k}"]
        if not self.bias:
            return w_ih, w_hh, None
        return w_ih, w_hh, self._parameters[f"bias_ih_l{k}"] + self._parameters[f"bias_hh_l{k}"]

    # --- forward / backward --------------------------------------------------------------
    def forward(self, x: np.ndarray, hx: Any = None) -> np.ndarray:
        """The last layer's hidden states for every step: ``(L, N, H)``, ``(N, L, H)`` with
        ``batch_first``, or ``(L, H)`` for an unbatched ``(L, I)`` input.

        ``hx = (h_0, c_0)``, each ``(num_layers, N, H)`` (``(num_layers, H)`` unbatched), sets the
        initial states (zeros when omitted). Afterwards ``self.h_n`` and ``self.c_n`` hold the
        final states in the same layout.
        """
        x = check_input(x, self.dtype, name="input", ndim=(2, 3), layer="LSTM")
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"LSTM: input must have {self.input_size} features on the last axis, "
                f"got shape {x.shape}"
            )
        batched = x.ndim == 3
        seq = self._to_time_major(x, batched)
        if seq.shape[0] == 0:
            raise ValueError(f"LSTM: input must have at least one time step, got shape {x.shape}")
        batch = seq.shape[1]
        if hx is None:
            h0 = c0 = np.zeros((self.num_layers, batch, self.hidden_size), self.dtype)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a pair (h_0, c_0)")
            h0 = self._check_state(hx[0], "h_0", batch, batched)
            c0 = self._check_state(hx[1], "c_0", batch, batched)
        caches = []
        for k in range(self.num_layers):
            caches.append(lstm_layer_forward(seq, h0[k], c0[k], *self._layer_params(k)))
            seq = caches[-1].h[1:]
        shape = self._state_shape(batch, batched)
        self.h_n = np.stack([cache.h[-1] for cache in caches]).reshape(shape)
        self.c_n = np.stack([cache.c[-1] for cache in caches]).reshape(shape)
        self._cache = (caches, batched)
        return self._from_time_major(seq, batched)

    def backward(self, dy: np.ndarray | None, dh_n: Any = None, dc_n: Any = None) -> np.ndarray:
        """Backpropagation through time: accumulate every parameter gradient and return
        d loss / d x (shaped like the input).

        ``dy`` is d loss / d output (``None`` for zeros, e.g. when only ``h_n`` is used);
        ``dh_n`` / ``dc_n`` are the optional gradients of the final states, shaped like
        ``h_n``. Afterwards ``self.dh_0`` and ``self.dc_0`` hold the gradients of the initial
        states (shaped like ``h_n``).
        """
        caches, batched = require_cache(self._cache, "LSTM")
        steps, batch, _ = caches[0].x.shape
        hidden = self.hidden_size
        if dy is None:
            dh_seq = np.zeros((steps, batch, hidden), self.dtype)
        else:
            dy = check_input(dy, self.dtype, name="dy", layer="LSTM")
            expected = self._from_time_major(caches[-1].h[1:], batched).shape
            if dy.shape != expected:
                raise ValueError(f"LSTM: dy must have shape {expected}, got {dy.shape}")
            dh_seq = self._to_time_major(dy, batched)
        zeros = np.zeros((self.num_layers, batch, hidden), self.dtype)
        dh_last = zeros if dh_n is None else self._check_state(dh_n, "dh_n", batch, batched)
        dc_last = zeros if dc_n is None else self._check_state(dc_n, "dc_n", batch, batched)
        dh0 = np.empty_like(zeros)
        dc0 = np.empty_like(zeros)
        for k in range(self.num_layers - 1, -1, -1):
            w_ih, w_hh, _ = self._layer_params(k)
            grads = lstm_layer_backward(caches[k], dh_seq, dh_last[k], dc_last[k], w_ih, w_hh)
            self.grad(f"weight_ih_l{k}")[...] += grads.dw_ih
            self.grad(f"weight_hh_l{k}")[...] += grads.dw_hh
            if self.bias:
                self.grad(f"bias_ih_l{k}")[...] += grads.db
                self.grad(f"bias_hh_l{k}")[...] += grads.db
            dh0[k], dc0[k] = grads.dh0, grads.dc0
            dh_seq = grads.dx
        shape = self._state_shape(batch, batched)
        self.dh_0, self.dc_0 = dh0.reshape(shape), dc0.reshape(shape)
        self._cache = None
        return self._from_time_major(dh_seq, batched)

    def extra_repr(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if not self.bias:
            parts.append("bias=False")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)

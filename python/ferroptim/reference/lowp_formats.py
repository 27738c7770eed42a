"""Reference low-precision state formats: bfloat16 with stochastic rounding, 8-bit blockwise.

Twins of ``rust/core/src/lowp/{hash,bf16,quant8}.rs``, bit for bit.

Random bits (counter-based, so identical at any SIMD level, thread count or split of the work)::

    key = mix(mix(mix(splitmix64(seed), step), stream), pair)       mix(h, x) = splitmix64(h ^ x)
    bits(key, i) = lowbias32(lo32(i) ^ lo32(key)) ^ hi32(key) ^ hi32(i)

State ``k`` of a tensor uses the stream of pair ``k // 2``: the high 16 bits of ``bits`` for even
``k``, the low 16 for odd ``k`` (one hash per element serves two state arrays).

bfloat16 is the top half of a float32's bits. Narrowing adds 16 random bits (stochastic) or
``0x7fff + lsb`` (nearest even) to the float32 bit pattern and keeps the top half; NaN stays a
quiet NaN (``(x >> 16) | 0x40``).

8-bit state: per block of 256 values, ``absmax = max |x|`` (float32) and per value the code of the
nearest entry of a 256-value dynamic map to the normalized value ``y``: ``y = x * (1 / absmax)``
(float32 operations, as bitsandbytes' kernels) when absmax is a normal float, ``y = x / absmax``
when it is subnormal, infinite or NaN, ``y = x`` when it is 0. The code is the number of
thresholds ``t_j <= y``, ``t_j`` the smallest float32 at or above the exact midpoint of ``map[j]``
and ``map[j + 1]``; a NaN gets code 255. The value of a code is ``map[code] * absmax``.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "BLOCK",
    "bf16_narrow",
    "bf16_widen",
    "dequantize",
    "dynamic_map",
    "element_bits",
    "quantize",
    "splitmix64",
    "state_bits",
    "stream_key",
]

BLOCK = 256
_MASK64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """splitmix64's output function of ``z + golden ratio`` (Python ints, modulo 2**64)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, stream: int, state: int) -> int:
    """The key of one state array's random stream at one step."""
    h = splitmix64(seed & _MASK64)
    for x in (step, stream, state):
        h = splitmix64(h ^ (x & _MASK64))
    return h


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def element_bits(key: int, first: int, n: int) -> np.ndarray:
    """32 random bits (uint32) for elements ``first .. first + n`` of the stream ``key``."""
    index = np.arange(first, first + n, dtype=np.uint64)
    lo = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (index >> np.uint64(32)).astype(np.uint32)
    return _lowbias32(lo ^ np.uint32(key & 0xFFFFFFFF)) ^ np.uint32(key >> 32) ^ hi


def bf16_widen(b: np.ndarray) -> np.ndarray:
    """The exact float32 values of bfloat16 bit patterns (uint16)."""
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def state_bits(seed: int, step: int, stream: int, k: int, n: int) -> np.ndarray:
    """The 16 random bits (uint32) narrowing state ``k`` of elements ``0 .. n`` of the tensor
    with stream ``stream`` at ``step``: half of the bits of stream pair ``k // 2``."""
    bits = element_bits(stream_key(seed, step, stream, k // 2), 0, n)
    return bits >> np.uint32(16) if k % 2 == 0 else bits & np.uint32(0xFFFF)


def bf16_narrow(v: np.ndarray, bits: np.ndarray | None) -> np.ndarray:
    """float32 -> bfloat16 bit patterns: stochastic with 16 random ``bits`` per element of the
    flattened array (:func:`state_bits`), or nearest even when ``bits`` is None."""
    x = np.ascontiguousarray(v, dtype=np.float32).reshape(-1).view(np.uint32)
    if bits is None:
        add = np.uint32(0x7FFF) + ((x >> np.uint32(16)) & np.uint32(1))
    else:
        add = bits.astype(np.uint32)
    rounded = ((x + add) >> np.uint32(16)).astype(np.uint16)
    nan = (x & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = ((x >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return np.where(nan, quiet, rounded).reshape(np.shape(v))


@functools.cache
def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 sorted values of the dynamic (tree) map (bitsandbytes' ``create_dynamic_map``,
    ``max_exponent_bits=7``): for decade ``i = 0..6``, the midpoints of ``k + 1`` equally spaced
    points from 0.1 to 1 divided by ``10**(6 - i)`` (``k = 2**i`` and their negatives when signed,
    ``k = 2**(i + 1)`` unsigned), plus 0 and 1; computed in float64, rounded once to float32."""
    values = [0.0, 1.0]
    for i in range(7):
        k = 2**i if signed else 2 ** (i + 1)
        scale = float(10 ** (6 - i))
        for j in range(k):
            lo = 0.1 + j * 0.9 / k
            hi = 0.1 + (j + 1) * 0.9 / k
            mean = (lo + hi) / 2.0 / scale
            values.append(mean)
            if signed:
                values.append(-mean)
    out = np.sort(np.array(values, dtype=np.float32))
    out.setflags(write=False)
    return out


@functools.cache
def _thresholds(signed: bool) -> np.ndarray:
    m = dynamic_map(signed).astype(np.float64)
    mid = (m[:-1] + m[1:]) / 2.0
    t = mid.astype(np.float32)
    below = t.astype(np.float64) < mid
    t[below] = np.nextafter(t[below], np.float32(np.inf))
    t.setflags(write=False)
    return t


def _blocks(x: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    pad = (-flat.size) % BLOCK
    return np.concatenate([flat, np.zeros(pad, np.float32)]).reshape(-1, BLOCK)


def quantize(x: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise 8-bit codes (uint8, shaped like ``x``) and absmax (float32, one per block)."""
    blocks = _blocks(x)
    mags = blocks.view(np.uint32) & np.uint32(0x7FFFFFFF)
    absmax = mags.max(axis=1).view(np.float32)
    normal = np.isfinite(absmax) & (absmax >= np.finfo(np.float32).tiny)
    divisor = np.where(absmax == 0, np.float32(1), absmax)[:, None]
    with np.errstate(all="ignore"):
        scale = (np.float32(1) / np.where(normal, absmax, np.float32(1)))[:, None]
        normalized = np.where(normal[:, None], blocks * scale, blocks / divisor)
    codes = np.searchsorted(_thresholds(signed), normalized, side="right")
    codes = np.where(np.isnan(normalized), 255, codes).astype(np.uint8)
    return codes.reshape(-1)[: np.size(x)].reshape(np.shape(x)), absmax


def dequantize(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """float32 values ``map[code] * absmax`` of each block, shaped like ``codes``."""
    flat = codes.reshape(-1)
    scale = np.repeat(absmax.astype(np.float32), BLOCK)[: flat.size]
    with np.errstate(all="ignore"):
        return (dynamic_map(signed)[flat] * scale).reshape(codes.shape)

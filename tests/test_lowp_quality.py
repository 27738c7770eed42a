"""Quality of low-precision optimizer state against float32 (the kernels directly).

* bitsandbytes' optimizer test pattern: 50 steps on (1024, d) tensors, d in {32, 1024, 4097},
  gradients N(0, 0.01^2). With the float32 optimizer re-synced each step to the low-precision
  parameters and widened state, a step's parameter update is identical by construction (the
  low-precision kernel updates from the widened float32 state), so the error budget is the
  state's: every 10th step the stored state is checked close to float32's (bitsandbytes'
  tolerances for 8-bit; a bfloat16 ulp for bfloat16).
* Stochastic rounding is unbiased (mean of 10^6 roundings within 3e-5 of the float32 value) and
  round-to-nearest is not (the negative control).
* The decay test: a bfloat16 second moment under gradients that shrink 10x tracks float32 with
  stochastic rounding, and fails to with round-to-nearest (a negative control that must fail).
"""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim._native as native
from ferroptim.reference.lowp_formats import bf16_widen, dequantize

ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
            maximize=False, decoupled_weight_decay=False)  # fmt: skip
BF16 = dict(stochastic_rounding=True, seed=7, stream_offset=0)


class Float32Adam:
    def __init__(self, p: np.ndarray) -> None:
        self.p, self.m, self.v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        self.steps = np.zeros(1, np.int64)

    def step(self, g: np.ndarray) -> None:
        native.adam_step([self.p], [g], [self.m], [self.v], None, self.steps, **ADAM)


class LowAdam:
    def __init__(self, p: np.ndarray, form: str) -> None:
        self.form, self.p = form, p.copy()
        self.steps = np.zeros(1, np.int64)
        if form == "bf16":
            self.m, self.v = np.zeros(p.shape, np.uint16), np.zeros(p.shape, np.uint16)
        else:
            blocks = -(-p.size // 256)
            self.m = (np.zeros(p.shape, np.uint8), np.zeros(blocks, np.float32))
            self.v = (np.zeros(p.shape, np.uint8), np.zeros(blocks, np.float32))

    def step(self, g: np.ndarray) -> None:
        if self.form == "bf16":
            native.adam_step_bf16(
                [self.p], [g], [self.m], [self.v], None, self.steps, **ADAM, **BF16
            )
        else:
            (mc, ma), (vc, va) = self.m, self.v
            native.adam_step_8bit(
                [self.p], [g], [mc], [ma], [vc], [va], None, None, self.steps, **ADAM
            )

    def widened(self) -> tuple[np.ndarray, np.ndarray]:
        if self.form == "bf16":
            return bf16_widen(self.m), bf16_widen(self.v)
        return dequantize(*self.m, signed=True), dequantize(*self.v, signed=False)


def errors(p32: np.ndarray, low: np.ndarray) -> tuple[float, float]:
    err = np.abs(p32.astype(np.float64) - low)
    return float(err.mean()), float((err / (np.abs(p32) + 1e-9)).mean())


@pytest.mark.parametrize("d", [32, 1024, 4097])
@pytest.mark.parametrize("form", ["bf16", "8bit"])
def test_bitsandbytes_pattern_resynced(form, d):
    rng = np.random.default_rng(d)
    p = (rng.standard_normal((1024, d)) * 0.1).astype(np.float32)
    f32, low = Float32Adam(p), LowAdam(p, form)
    for t in range(50):
        g = (rng.standard_normal(p.shape) * 0.01).astype(np.float32)
        f32.step(g)
        low.step(g)
        mae, rel = errors(f32.p, low.p)
        assert mae <= 6e-5 and rel <= 6e-4, (mae, rel)
        m, v = low.widened()
        if t % 10 != 9:
            f32.p[...], f32.m[...], f32.v[...] = low.p, m, v
            continue
        # The stored state is float32's to the format's precision (bitsandbytes: atol 3e-3,
        # rtol 1e-3 with at most 20 elements outside for 8-bit; bfloat16 is far tighter).
        for ours, ref in ((m, f32.m), (v, f32.v)):
            if form == "bf16":
                np.testing.assert_allclose(ours, ref, rtol=2**-7, atol=0)
            else:
                outside = ~np.isclose(ours, ref, atol=3e-3, rtol=1e-3)
                assert outside.sum() < 20
        f32.p[...], f32.m[...], f32.v[...] = low.p, m, v


def bf16_round(x: np.ndarray, stochastic: bool, seed: int = 0) -> np.ndarray:
    """Round with the native kernel: a Lion step with beta2 = 0 and lr = 0 stores m = g."""
    m = np.zeros(x.shape, np.uint16)
    native.lion_step_bf16([np.zeros_like(x)], [x], [m], np.zeros(1, np.int64), lr=0.0,
                          beta1=0.0, beta2=0.0, weight_decay=0.0, maximize=False,
                          stochastic_rounding=stochastic, seed=seed, stream_offset=0)  # fmt: skip
    return bf16_widen(m)


@pytest.mark.parametrize("value", [0.1234567, 1.0 + 2**-9, -3.3333333, 7.77e-5, 1e30])
def test_stochastic_rounding_is_unbiased(value):
    x = np.full(1_000_000, value, np.float32)
    mean = bf16_round(x, stochastic=True).astype(np.float64).mean()
    assert abs(mean - np.float64(x[0])) <= 3e-5 * max(1.0, abs(float(x[0])))
    nearest = bf16_round(x, stochastic=False).astype(np.float64).mean()
    if value in (0.1234567, 1.0 + 2**-9, -3.3333333):
        # The negative control: round-to-nearest moves every value the same way.
        assert abs(nearest - np.float64(x[0])) > 3e-5


def second_moment_after_shrink(stochastic: bool) -> float:
    """mean(v_bf16) / mean(v_float32) after 1000 steps of N(0, 1) gradients and 3000 of
    N(0, 0.1^2)."""
    rng = np.random.default_rng(0)
    p = np.zeros(4096, np.float32)
    f32 = Float32Adam(p)
    m, v = np.zeros(4096, np.uint16), np.zeros(4096, np.uint16)
    steps = np.zeros(1, np.int64)
    p_low = p.copy()
    for t in range(4000):
        g = rng.standard_normal(4096).astype(np.float32) * np.float32(1.0 if t < 1000 else 0.1)
        f32.step(g)
        native.adam_step_bf16([p_low], [g], [m], [v], None, steps, **ADAM,
                              stochastic_rounding=stochastic, seed=3, stream_offset=0)  # fmt: skip
    return float(bf16_widen(v).astype(np.float64).mean() / f32.v.astype(np.float64).mean())


def test_decay_tracks_with_stochastic_rounding_and_not_with_nearest():
    tracked = second_moment_after_shrink(stochastic=True)
    stuck = second_moment_after_shrink(stochastic=False)
    assert abs(tracked - 1.0) < 0.05, tracked
    assert stuck > 2.0, stuck  # the negative control must fail to track

//! Adam with bfloat16 state in explicit AVX-512 vectors: the element loop of `fused.rs` for
//! [`super::bf16::Bf16Storage`] and plain Adam (no amsgrad), written out so that it issues fewer
//! instructions per element than the compiler's vectorization of the element code. The bits are
//! the same: the same float32 operations in the same order (no contraction), the same hash and the
//! same narrowing ([`super::bf16`]), checked against the element loop in the tests below.
//!
//! Per 32 elements (two vectors of 16):
//! * widen: `vpmovzxwd` + shift per state vector;
//! * the common gradient steps and Adam's update, one instruction per float operation
//!   (`sqrt` and the division go to the divider, which bounds the loop: about 12 + 10 cycles per
//!   16 elements);
//! * narrowing: one hash per element serves both states (as in the element loop); the 16 random
//!   (or round-to-nearest) bits are added and one `vpermt2w` takes the high halves of two vectors,
//!   32 bfloat16 values in order, instead of a shift and a two-instruction `vpmovdw` per vector;
//!   NaN lanes (checked once per 32 elements with one comparison of both states) take the exact
//!   NaN rule (quiet bit, nothing added) in a rarely taken branch;
//! * software prefetch of all five streams [`PREFETCH`] elements ahead, so memory stays busy
//!   while the divider works.

use crate::fused::{AdamRun, Args, DECOUPLED_DECAY, L2_DECAY};
use crate::optim::adam::AdamOp;

/// How the loop narrows: the pair key of states 0 and 1 (see `Bf16Storage`), or nearest even.
#[derive(Clone, Copy)]
pub(super) struct Narrowing {
    pub(super) stochastic: bool,
    pub(super) key_low: u32,
    pub(super) key_high: u32,
}

/// Elements ahead of the loop that it prefetches.
const PREFETCH: usize = 1024;

/// Run Adam over the leading multiple of 32 elements when the active level is AVX-512; returns how
/// many elements were done (0 elsewhere: the element loop does them all).
#[inline(always)]
pub(super) fn adam_lead<const CLAMP: bool, const SCALE: bool, const DECAY: u8>(
    adam: &AdamOp<f32, false>,
    args: &Args<f32>,
    rounding: Narrowing,
    run: AdamRun<'_, f32, u16>,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::{level, SimdLevel};
        if level() == SimdLevel::Avx512 {
            // Safety: the AVX-512 level is only active on CPUs that support it.
            return unsafe {
                if rounding.stochastic {
                    x86::adam::<CLAMP, SCALE, DECAY, true>(adam, args, rounding, run)
                } else {
                    x86::adam::<CLAMP, SCALE, DECAY, false>(adam, args, rounding, run)
                }
            };
        }
    }
    let _ = (adam, args, rounding, run);
    0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// 16 bfloat16 patterns widened to float32.
    #[inline(always)]
    unsafe fn widen(src: *const u16) -> __m512 {
        let x = _mm512_cvtepu16_epi32(_mm256_loadu_si256(src.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(x))
    }

    /// C. Wellons' `lowbias32` on 16 lanes, XORed with `key_high` (`hash::element_bits`).
    #[inline(always)]
    unsafe fn element_bits(index: __m512i, key_low: __m512i, key_high: __m512i) -> __m512i {
        let x = _mm512_xor_si512(index, key_low);
        let x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
        let x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb_352d));
        let x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
        let x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x846c_a68b_u32 as i32));
        // x ^ (x >> 16) ^ key_high
        _mm512_ternarylogic_epi32::<0x96>(x, _mm512_srli_epi32::<16>(x), key_high)
    }

    /// Round-to-nearest-even's addend for the float patterns `x`: `0x7fff + ((x >> 16) & 1)`.
    #[inline(always)]
    unsafe fn nearest_add(x: __m512i) -> __m512i {
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
        _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))
    }

    /// The NaN rule of `bf16::narrowed` on the NaN lanes of `value`: its pattern with the quiet bit
    /// set, nothing added.
    #[inline(always)]
    unsafe fn fix_nan(sum: __m512i, value: __m512) -> __m512i {
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(value, value);
        let quiet = _mm512_or_si512(_mm512_castps_si512(value), _mm512_set1_epi32(0x0040_0000));
        _mm512_mask_mov_epi32(sum, nan, quiet)
    }

    /// See the module docs. `run.g`, `run.m`, `run.v` have at least `run.p.len()` elements;
    /// does `run.p.len() / 32 * 32` of them.
    ///
    /// Safety: the CPU supports AVX-512F/BW/VL/DQ.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
    pub(super) unsafe fn adam<
        const CLAMP: bool,
        const SCALE: bool,
        const DECAY: u8,
        const STOCHASTIC: bool,
    >(
        adam: &AdamOp<f32, false>,
        args: &Args<f32>,
        rounding: Narrowing,
        run: AdamRun<'_, f32, u16>,
    ) -> usize {
        let AdamRun { low, p, g, m, v } = run;
        let n = p.len() / 32 * 32;
        assert!(g.len() >= n && m.len() >= n && v.len() >= n);
        let (pp, gp, mp, vp) = (p.as_mut_ptr(), g.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
        let set = _mm512_set1_ps;
        let (clip, neg_clip, scale, wd) = (
            set(args.clip),
            set(-args.clip),
            set(args.scale),
            set(args.wd),
        );
        let lerp = adam.moments.lerp;
        let from_end: __mmask16 = if lerp.from_end { 0xffff } else { 0 };
        let (coeff, beta2, one_minus_beta2) = (
            set(lerp.coeff),
            set(adam.moments.beta2),
            set(adam.moments.one_minus_beta2),
        );
        let (inv_bc2, eps, step_size) = (
            set(adam.inv_bias_correction2_sqrt),
            set(adam.eps),
            set(adam.step_size),
        );
        let key_low = _mm512_set1_epi32(rounding.key_low as i32);
        let key_high = _mm512_set1_epi32(rounding.key_high as i32);
        let low16 = _mm512_set1_epi32(0xffff);
        // Word j of the result: the high half of dword j of the first vector (j < 16), of dword
        // j - 16 of the second (j >= 16).
        let high_halves: [u16; 32] = std::array::from_fn(|j| (2 * j + 1) as u16);
        let high_halves = _mm512_loadu_si512(high_halves.as_ptr().cast());
        let mut index = _mm512_add_epi32(
            _mm512_set1_epi32(low as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        let sixteen = _mm512_set1_epi32(16);
        for i in (0..n).step_by(32) {
            let ahead = i + PREFETCH;
            _mm_prefetch::<_MM_HINT_T0>(pp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(pp.wrapping_add(ahead + 16).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(gp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(gp.wrapping_add(ahead + 16).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(mp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(vp.wrapping_add(ahead).cast::<i8>());
            let mut new = [[_mm512_setzero_ps(); 2]; 2];
            let mut sum = [[_mm512_setzero_si512(); 2]; 2];
            let mut nan: __mmask16 = 0;
            for h in 0..2 {
                let j = i + 16 * h;
                let mut gv = _mm512_loadu_ps(gp.add(j));
                let mut pv = _mm512_loadu_ps(pp.add(j));
                let m0 = widen(mp.add(j));
                let v0 = widen(vp.add(j));
                if CLAMP {
                    // clamp_value: -c below -c, else c above c, else g (NaN stays).
                    let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(gv, neg_clip);
                    let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(gv, clip);
                    gv = _mm512_mask_mov_ps(gv, above, clip);
                    gv = _mm512_mask_mov_ps(gv, below, neg_clip);
                }
                if SCALE {
                    gv = _mm512_mul_ps(gv, scale);
                }
                if DECAY == L2_DECAY {
                    gv = _mm512_add_ps(gv, _mm512_mul_ps(wd, pv));
                } else if DECAY == DECOUPLED_DECAY {
                    pv = _mm512_mul_ps(pv, wd);
                }
                // m = base + coeff * (g - m), base = g or m (Lerp); v = v b2 + ((1 - b2) g) g.
                let base = _mm512_mask_mov_ps(m0, from_end, gv);
                let m1 = _mm512_add_ps(base, _mm512_mul_ps(coeff, _mm512_sub_ps(gv, m0)));
                let v1 = _mm512_add_ps(
                    _mm512_mul_ps(v0, beta2),
                    _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, gv), gv),
                );
                let denom = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(v1), inv_bc2), eps);
                let p1 = _mm512_sub_ps(pv, _mm512_mul_ps(step_size, _mm512_div_ps(m1, denom)));
                _mm512_storeu_ps(pp.add(j), p1);
                let (mb, vb) = (_mm512_castps_si512(m1), _mm512_castps_si512(v1));
                let (add_m, add_v) = if STOCHASTIC {
                    let bits = element_bits(index, key_low, key_high);
                    (_mm512_srli_epi32::<16>(bits), _mm512_and_si512(bits, low16))
                } else {
                    (nearest_add(mb), nearest_add(vb))
                };
                index = _mm512_add_epi32(index, sixteen);
                sum[0][h] = _mm512_add_epi32(mb, add_m);
                sum[1][h] = _mm512_add_epi32(vb, add_v);
                new[0][h] = m1;
                new[1][h] = v1;
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m1, v1);
            }
            if nan != 0 {
                for k in 0..2 {
                    for h in 0..2 {
                        sum[k][h] = fix_nan(sum[k][h], new[k][h]);
                    }
                }
            }
            for (k, dst) in [mp, vp].into_iter().enumerate() {
                let packed = _mm512_permutex2var_epi16(sum[k][0], high_halves, sum[k][1]);
                _mm512_storeu_si512(dst.add(i).cast(), packed);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use crate::clip::GradClip;
    use crate::lowp::hash::splitmix64;
    use crate::lowp::{adam_step_bf16, Bf16TensorRef, Rounding};
    use crate::optim::adam::AdamConfig;
    use crate::simd::{detected_level, set_level, supported_levels};

    /// Parameters, gradients and state with normal, tiny (subnormal), huge, zero, infinite and
    /// NaN values.
    fn data(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u16>, Vec<u16>) {
        let mut state = seed;
        let mut next = || {
            state = splitmix64(state);
            state
        };
        let value = |r: u64| -> f32 {
            match r % 64 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -f32::INFINITY,
                3 => 0.0,
                4 => -0.0,
                5 => f32::from_bits((r >> 32) as u32 & 0x807f_ffff),
                6 => 3.0e38,
                _ => {
                    let u = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    u * 2f32.powi(((r >> 8) % 60) as i32 - 40)
                }
            }
        };
        let p = (0..n).map(|_| value(next())).collect();
        let g = (0..n).map(|_| value(next())).collect();
        let m = (0..n).map(|_| (next() >> 16) as u16).collect();
        let v = (0..n)
            .map(|_| {
                let r = next();
                let b = (r >> 16) as u16 & 0x7fff;
                if r % 50 == 0 {
                    b | 0x7f80
                } else {
                    b
                }
            })
            .collect();
        (p, g, m, v)
    }

    /// Parameters and state after two steps of `cfg` on `n` elements of `data(n, seed)`.
    fn run(cfg: &AdamConfig, rounding: Rounding, n: usize, seed: u64) -> Vec<u32> {
        let (mut p, g, mut m, mut v) = data(n, seed);
        for step in 1..=2 {
            let mut t = [Bf16TensorRef::new(&mut p, &g, step, rounding)
                .with_state(&mut m)
                .with_state(&mut v)];
            adam_step_bf16(&mut t, cfg).unwrap();
        }
        // A NaN (parameter or state) compares as the default NaN: which input NaN's payload an
        // addition or multiplication passes on depends on the operand order the compiler picks
        // (it may swap the operands of these commutative instructions; release and debug builds
        // differ), so only NaN-ness is part of the bits.
        let mut out: Vec<u32> = p
            .iter()
            .map(|x| if x.is_nan() { f32::NAN } else { *x }.to_bits())
            .collect();
        out.extend(m.iter().chain(&v).map(|&x| {
            if x & 0x7fff > 0x7f80 {
                0x7fc0 // any bfloat16 NaN
            } else {
                u32::from(x)
            }
        }));
        out
    }

    #[test]
    fn explicit_loop_gives_the_element_loops_bits() {
        let levels = supported_levels();
        let lowest = *levels.last().unwrap();
        let mut checked = 0;
        for (clip, scale, decay, decoupled, beta1) in [
            (None, 1.0, 0.0, false, 0.9),
            (Some(0.5), 0.8, 0.1, true, 0.9),
            (Some(1e-30), -1.0, 0.1, false, 0.3),
            (None, 2.0, 0.01, true, 0.0),
        ] {
            let cfg = AdamConfig {
                lr: 0.01,
                beta1,
                weight_decay: decay,
                decoupled_weight_decay: decoupled,
                maximize: scale < 0.0,
                grad_clip: GradClip {
                    scale: f64::abs(scale),
                    clip_value: clip,
                },
                ..AdamConfig::default()
            };
            for rounding in [
                Rounding::NearestEven,
                Rounding::Stochastic { seed: 3, stream: 1 },
            ] {
                for n in [31, 32, 33, 100, 1000, 5000] {
                    assert!(set_level(lowest));
                    let expected = run(&cfg, rounding, n, n as u64);
                    for &level in &levels {
                        assert!(set_level(level));
                        assert_eq!(run(&cfg, rounding, n, n as u64), expected, "{level:?} {n}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(set_level(detected_level()));
        assert!(checked > 0);
    }
}

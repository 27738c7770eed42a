//! Adam with bfloat16 state in explicit AVX-512 vectors: the element loop of `fused.rs` for
//! [`super::bf16::Bf16Storage`] and plain Adam (no amsgrad), written out so that it issues fewer
//! instructions per element than the compiler's vectorization of the element code. The bits are
//! the same: the same float32 operations in the same order (no contraction), the same hash and the
//! same narrowing ([`super::bf16`]), checked against the element loop in the tests below.
//!
//! Per 32 elements (two vectors of 16), counting the vector instructions, which all compete for
//! the two ports that run 512-bit operations (besides the divider, which `sqrt` and the division
//! keep busy about 20 of every 24 cycles per 16 elements on the machine measured):
//! * widen: one 64-byte load per state and one zero-masked `vpermw` per vector of 16, which puts
//!   pattern j in the high half of dword j;
//! * the common gradient steps and Adam's update, one instruction per float operation; the lerp's
//!   form (`from_end`) is a compile-time parameter, not a blend;
//! * the hash: `lowbias32(x)` starts with `x ^= x >> 16` on `x = index ^ key_low`, which for the
//!   32 indices of an aligned group (one high half, `first + lane == first ^ lane`) is `first ^
//!   lane ^ K` with `K` a scalar that changes every 2^16 elements: one XOR per vector instead of
//!   an add, two XORs and a shift (other groups take the general form);
//! * narrowing: one hash per element serves both states (as in the element loop); the 16 random
//!   (or round-to-nearest) bits are added and one `vpermt2b` (VBMI) takes the high halves of two
//!   vectors, 32 bfloat16 values in order;
//! * NaN: a NaN moment makes the new parameter NaN, so one comparison of the two parameter
//!   vectors flags the groups whose NaN lanes take the exact NaN rule (quiet bit, nothing added)
//!   in a rarely taken branch;
//! * software prefetch of all five streams [`PREFETCH`] elements ahead, so memory stays busy
//!   while the divider works.
//!
//! Measured on one thread with L2-resident arrays (2^17 elements, AVX-512 Xeon, under load,
//! lowest of 31 interleaved timings per call): 0.572 ns per element before these changes, 0.538
//! after; without the hash (round to nearest) 0.499 and 0.491, which is what `sqrt` and the
//! division cost (the loop is within 10% of that floor). Taking `sqrt` off the divider for every
//! second vector (reciprocal square root, a Newton step and an exact FMA rounding check, about 14
//! instructions) made it slower: 0.625.

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
        if level() == SimdLevel::Avx512 && explicit_loop_supported() {
            // Safety: checked just above.
            return unsafe { x86::adam_any::<CLAMP, SCALE, DECAY>(adam, args, rounding, run) };
        }
    }
    let _ = (adam, args, rounding, run);
    0
}

/// Whether this CPU has the loop's instructions: the AVX-512 level's, plus VBMI (`vpermt2b`,
/// which narrows 32 states in one instruction).
#[cfg(target_arch = "x86_64")]
fn explicit_loop_supported() -> bool {
    crate::simd::SimdLevel::Avx512.is_supported()
        && std::arch::is_x86_feature_detected!("avx512vbmi")
}

#[cfg(not(target_arch = "x86_64"))]
fn explicit_loop_supported() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// `key_low ^ ((index ^ key_low) >> 16)` for any `index` with high half `index >> 16`: the
    /// first two steps of `lowbias32(index ^ key_low)` (`x ^ (x >> 16)`) are `index ^` this, the
    /// same for every index that shares its high 16 bits.
    #[inline(always)]
    fn first_mix_key(index: u32, key_low: u32) -> u32 {
        key_low ^ ((index ^ key_low) >> 16)
    }

    /// The rest of C. Wellons' `lowbias32` on 16 lanes of `x = y ^ (y >> 16)`, `y = index ^
    /// key_low`, XORed with `key_high` (`hash::element_bits`).
    #[inline(always)]
    unsafe fn element_bits(x: __m512i, key_high: __m512i) -> __m512i {
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

    /// [`adam`] with the rounding and the lerp's form as compile-time parameters.
    ///
    /// Safety: `explicit_loop_supported()`.
    #[inline(always)]
    pub(super) unsafe fn adam_any<const CLAMP: bool, const SCALE: bool, const DECAY: u8>(
        op: &AdamOp<f32, false>,
        args: &Args<f32>,
        rounding: Narrowing,
        run: AdamRun<'_, f32, u16>,
    ) -> usize {
        match (rounding.stochastic, op.moments.lerp.from_end) {
            (true, true) => adam::<CLAMP, SCALE, DECAY, true, true>(op, args, rounding, run),
            (true, false) => adam::<CLAMP, SCALE, DECAY, true, false>(op, args, rounding, run),
            (false, true) => adam::<CLAMP, SCALE, DECAY, false, true>(op, args, rounding, run),
            (false, false) => adam::<CLAMP, SCALE, DECAY, false, false>(op, args, rounding, run),
        }
    }

    /// See the module docs. `run.g`, `run.m`, `run.v` have at least `run.p.len()` elements;
    /// does `run.p.len() / 32 * 32` of them.
    ///
    /// Safety: the CPU supports AVX-512F/BW/VL/DQ.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma")]
    pub(super) unsafe fn adam<
        const CLAMP: bool,
        const SCALE: bool,
        const DECAY: u8,
        const STOCHASTIC: bool,
        const FROM_END: bool,
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
        let key_high = _mm512_set1_epi32(rounding.key_high as i32);
        let low16 = _mm512_set1_epi32(0xffff);
        // Word 2j + 1 of widening vector h: word 16h + j of the 32 loaded patterns (the even
        // words are zeroed by the mask), so dword j is that pattern << 16.
        let widen_index: [[u16; 32]; 2] = std::array::from_fn(|h| {
            std::array::from_fn(|w| {
                if w % 2 == 1 {
                    (16 * h + w / 2) as u16
                } else {
                    0
                }
            })
        });
        let widen_index = widen_index.map(|w| _mm512_loadu_si512(w.as_ptr().cast()));
        // Bytes 2j, 2j + 1 of the result: bytes 2 and 3 (the high half) of dword j of the first
        // vector (j < 16), of dword j - 16 of the second (index bit 6 set).
        let high_halves: [u8; 64] = std::array::from_fn(|k| {
            let (j, byte) = (k / 2, k % 2);
            ((j / 16) * 64 + (j % 16) * 4 + 2 + byte) as u8
        });
        let high_halves = _mm512_loadu_si512(high_halves.as_ptr().cast());
        let lanes: [__m512i; 2] = std::array::from_fn(|h| {
            _mm512_add_epi32(
                _mm512_set1_epi32(16 * h as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            )
        });
        // The first mixing key (`first_mix_key`) of the high half `key_hi`.
        let (mut key_hi, mut mix_key) = (u32::MAX, 0);
        for i in (0..n).step_by(32) {
            let ahead = i + PREFETCH;
            _mm_prefetch::<_MM_HINT_T0>(pp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(pp.wrapping_add(ahead + 16).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(gp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(gp.wrapping_add(ahead + 16).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(mp.wrapping_add(ahead).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(vp.wrapping_add(ahead).cast::<i8>());
            // The 32 elements' indices `first + lane` (u32, no wrap: the run stays below 2^32).
            let first = low.wrapping_add(i as u32);
            let mixed: [__m512i; 2] = if STOCHASTIC {
                if first % 32 == 0 {
                    // One high half for all 32 indices, and `first + lane == first ^ lane`.
                    if first >> 16 != key_hi {
                        key_hi = first >> 16;
                        mix_key = first_mix_key(first, rounding.key_low);
                    }
                    let base = _mm512_set1_epi32((first ^ mix_key) as i32);
                    lanes.map(|l| _mm512_xor_si512(base, l))
                } else {
                    lanes.map(|l| {
                        let y = _mm512_xor_si512(
                            _mm512_add_epi32(_mm512_set1_epi32(first as i32), l),
                            _mm512_set1_epi32(rounding.key_low as i32),
                        );
                        _mm512_xor_si512(y, _mm512_srli_epi32::<16>(y))
                    })
                }
            } else {
                [_mm512_setzero_si512(); 2]
            };
            let m32 = _mm512_loadu_si512(mp.add(i).cast());
            let v32 = _mm512_loadu_si512(vp.add(i).cast());
            let mut new = [[_mm512_setzero_ps(); 2]; 2];
            let mut sum = [[_mm512_setzero_si512(); 2]; 2];
            let mut p_new = [_mm512_setzero_ps(); 2];
            for h in 0..2 {
                let j = i + 16 * h;
                let mut gv = _mm512_loadu_ps(gp.add(j));
                let mut pv = _mm512_loadu_ps(pp.add(j));
                let widen = |x| {
                    _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(
                        0xaaaa_aaaa,
                        widen_index[h],
                        x,
                    ))
                };
                let (m0, v0) = (widen(m32), widen(v32));
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
                let base = if FROM_END { gv } else { m0 };
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
                    let bits = element_bits(mixed[h], key_high);
                    (_mm512_srli_epi32::<16>(bits), _mm512_and_si512(bits, low16))
                } else {
                    (nearest_add(mb), nearest_add(vb))
                };
                sum[0][h] = _mm512_add_epi32(mb, add_m);
                sum[1][h] = _mm512_add_epi32(vb, add_v);
                new[0][h] = m1;
                new[1][h] = v1;
                p_new[h] = p1;
            }
            // A NaN moment makes the parameter NaN (m / denom, sqrt(v)), so NaN parameters flag
            // every lane that may need the NaN rule (and perhaps more: `fix_nan` checks).
            if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p_new[0], p_new[1]) != 0 {
                for k in 0..2 {
                    for h in 0..2 {
                        sum[k][h] = fix_nan(sum[k][h], new[k][h]);
                    }
                }
            }
            for (k, dst) in [mp, vp].into_iter().enumerate() {
                let packed = _mm512_permutex2var_epi8(sum[k][0], high_halves, sum[k][1]);
                _mm512_storeu_si512(dst.add(i).cast(), packed);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use crate::clip::GradClip;
    use crate::fused::{AdamMoments, AdamRun, Args, Storage, Update};
    use crate::lowp::bf16::{widen, Bf16Storage};
    use crate::lowp::hash::splitmix64;
    use crate::lowp::{adam_step_bf16, Bf16TensorRef, Rounding};
    use crate::optim::adam::AdamConfig;
    use crate::optim::adam::AdamOp;
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
        canonical(&p, &m, &v)
    }

    /// Parameters and state as compared: a NaN (parameter or state) compares as the default NaN:
    /// which input NaN's payload an addition or multiplication passes on depends on the operand
    /// order the compiler picks (it may swap the operands of these commutative instructions;
    /// release and debug builds differ), so only NaN-ness is part of the bits.
    fn canonical(p: &[f32], m: &[u16], v: &[u16]) -> Vec<u32> {
        let mut out: Vec<u32> = p
            .iter()
            .map(|x| if x.is_nan() { f32::NAN } else { *x }.to_bits())
            .collect();
        out.extend(m.iter().chain(v).map(|&x| {
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

    /// Runs starting at any index (not a multiple of 32, just below and across a multiple of
    /// 2^16 where the hash's first mixing key changes, just below 2^32): the explicit loop gives
    /// the bits of the element update, narrowed by the storage's `store` at each index.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn explicit_loop_at_any_start_index() {
        let cfg = AdamConfig {
            lr: 0.01,
            ..AdamConfig::default()
        };
        let step = 3;
        let t = step as f64;
        let adam = AdamOp::<f32, false> {
            moments: AdamMoments::new(cfg.beta1, cfg.beta2),
            inv_bias_correction2_sqrt: (1.0 / (1.0 - cfg.beta2.powf(t)).sqrt()) as f32,
            eps: cfg.eps as f32,
            step_size: (cfg.lr / (1.0 - cfg.beta1.powf(t))) as f32,
        };
        let args = Args {
            scale: 1.0,
            wd: 0.0,
            clip: 0.0,
            prefetch: false,
        };
        let n = 32 * 9;
        let mut checked = 0;
        for rounding in [
            Rounding::NearestEven,
            Rounding::Stochastic { seed: 5, stream: 2 },
        ] {
            let storage = Bf16Storage::new(rounding, step);
            for low in [
                0u32,
                5,
                31,
                (1 << 16) - 64,
                (1 << 16) - 40,
                (1 << 16) - 32,
                (1 << 16) - 7,
                (3 << 16) - 128,
                u32::MAX - n as u32 + 1,
                u32::MAX - n as u32 - 12,
            ] {
                let (mut p, g, mut m, mut v) = data(n, u64::from(low));
                let (mut p_lead, mut m_lead, mut v_lead) = (p.clone(), m.clone(), v.clone());
                let run = AdamRun {
                    low,
                    p: &mut p_lead,
                    g: &g,
                    m: &mut m_lead,
                    v: &mut v_lead,
                };
                // The explicit loop itself (the active level may be changed by other tests).
                let done = if super::explicit_loop_supported() {
                    // Safety: the CPU supports the loop's features.
                    unsafe {
                        super::x86::adam_any::<false, false, 0>(
                            &adam,
                            &args,
                            storage.narrowing(),
                            run,
                        )
                    }
                } else {
                    0
                };
                for i in 0..done {
                    let mut s = [widen(m[i]), widen(v[i]), 0.0];
                    p[i] = adam.update(p[i], g[i], &mut s);
                    let index = low.wrapping_add(i as u32);
                    m[i] = storage.store(0, s[0], index);
                    v[i] = storage.store(1, s[1], index);
                }
                assert_eq!(
                    canonical(&p_lead, &m_lead, &v_lead),
                    canonical(&p, &m, &v),
                    "{rounding:?} low {low}"
                );
                checked += done;
            }
        }
        // Where the explicit loop runs, it did every whole group of 32.
        let expected = if super::explicit_loop_supported() {
            2 * 10 * n
        } else {
            0
        };
        assert_eq!(checked, expected);
    }
}

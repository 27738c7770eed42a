//! bfloat16 storage: the top 16 bits of an IEEE float32 (sign, 8 exponent bits, 7 mantissa bits).
//!
//! Widening is exact (`f32::from_bits(b << 16)`). Narrowing rounds the 16 bits dropped:
//! * to nearest, ties to even: `(x + 0x7fff + ((x >> 16) & 1)) >> 16`;
//! * stochastically: `(x + r) >> 16` with `r` 16 uniformly random bits, so `x` rounds away from
//!   zero with probability (dropped bits) / 2^16 and the result is unbiased: E[narrow(x)] = x.
//!
//! `x` is the float's bit pattern; adding to it rounds the magnitude (sign-magnitude format), and
//! the sum never carries into the sign bit (the largest finite magnitude plus 0xffff is below
//! 0x8000_0000). NaN stays a quiet NaN with its sign (`(x >> 16) | 0x40`); infinities stay
//! infinite; magnitudes past the largest bfloat16 can round to infinity, as in any narrowing.

use super::hash::{element_bits, lowbias32, stream_key};
use crate::fused::{AdamRun, Args, Storage};
use crate::optim::adam::AdamOp;
use crate::tensor::MAX_STATE;

/// How float32 values are rounded to bfloat16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Round to nearest, ties to even (unsuitable for a slowly decaying `exp_avg_sq`: an update
    /// smaller than half a bfloat16 ulp is lost every step).
    NearestEven,
    /// Stochastic rounding with counter-based random bits (see [`super::hash`]).
    Stochastic {
        /// The optimizer's seed.
        seed: u64,
        /// The tensor's stream (its position among all the optimizer's parameters).
        stream: u64,
    },
}

/// The exact float32 value of a bfloat16 bit pattern.
#[inline(always)]
pub fn widen(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[inline(always)]
fn is_nan_bits(x: u32) -> bool {
    x & 0x7fff_ffff > 0x7f80_0000
}

/// Round to nearest bfloat16, ties to even.
#[inline(always)]
pub fn narrow_nearest(v: f32) -> u16 {
    let x = v.to_bits();
    narrowed(x, 0x7fff + ((x >> 16) & 1))
}

/// Round to bfloat16 up or down in magnitude using the low 16 bits of `r` as the random draw.
#[inline(always)]
pub fn narrow_stochastic(v: f32, r: u32) -> u16 {
    narrowed(v.to_bits(), r & 0xffff)
}

/// The 16 bits added before truncating `x` (a float32's bits): random ones, or `0x7fff` plus the
/// kept part's lowest bit (nearest, ties to even). A NaN adds nothing and gets its quiet bit set
/// instead (bit 22, which is bit 6 of the result), so it stays a NaN of the same sign: written as
/// two selects before one add, shift and narrowing, which vectorize to masked operations.
#[inline(always)]
fn narrowed(x: u32, add: u32) -> u16 {
    let nan = is_nan_bits(x);
    let x = if nan { x | 0x0040_0000 } else { x };
    let add = if nan { 0 } else { add };
    (x.wrapping_add(add) >> 16) as u16
}

/// bfloat16 state as the fused loop stores it (`crate::fused::Storage`): widened on load,
/// narrowed on store to nearest even or with the random bits of [`state_bits`] for the element's
/// index: one 32-bit hash serves two state arrays.
#[derive(Clone, Copy)]
pub(crate) struct Bf16Storage {
    stochastic: bool,
    /// Low and high halves of the stream key of each pair of states; the high half already XORed
    /// with the high 32 bits of the current run's element indices.
    key_low: [u32; PAIRS],
    key_high: [u32; PAIRS],
}

/// Pairs of state arrays sharing one stream key (each takes 16 of its 32 bits per element).
const PAIRS: usize = MAX_STATE.div_ceil(2);

impl Bf16Storage {
    /// The storage of one tensor's state at `step`.
    pub(crate) fn new(rounding: Rounding, step: u64) -> Self {
        let keys: [u64; PAIRS] = std::array::from_fn(|pair| match rounding {
            Rounding::NearestEven => 0,
            Rounding::Stochastic { seed, stream } => stream_key(seed, step, stream, pair),
        });
        Bf16Storage {
            stochastic: matches!(rounding, Rounding::Stochastic { .. }),
            key_low: keys.map(|k| k as u32),
            key_high: keys.map(|k| (k >> 32) as u32),
        }
    }
}

impl Bf16Storage {
    /// How the explicit Adam loop narrows states 0 and 1 (one pair, one key).
    pub(super) fn narrowing(self) -> super::bf16_adam::Narrowing {
        super::bf16_adam::Narrowing {
            stochastic: self.stochastic,
            key_low: self.key_low[0],
            key_high: self.key_high[0],
        }
    }
}

impl Storage<f32> for Bf16Storage {
    type Elem = u16;
    #[inline(always)]
    fn run_at(self, high: u32) -> Self {
        Bf16Storage {
            key_high: self.key_high.map(|k| k ^ high),
            ..self
        }
    }
    #[inline(always)]
    fn load(self, x: u16) -> f32 {
        widen(x)
    }
    /// [`state_bits`] on 32-bit lanes only: `element_bits(key, index)` is
    /// `lowbias32(lo32(index) ^ lo32(key)) ^ hi32(key) ^ hi32(index)`, two multiplies, shifts
    /// and XORs per element and pair of states at every SIMD level (the compiler computes the
    /// hash of a pair once).
    #[inline(always)]
    fn store(self, k: usize, value: f32, low: u32) -> u16 {
        let x = value.to_bits();
        let add = if self.stochastic {
            let bits = lowbias32(low ^ self.key_low[k / 2]) ^ self.key_high[k / 2];
            half(bits, k)
        } else {
            0x7fff + ((x >> 16) & 1)
        };
        narrowed(x, add)
    }

    #[inline(always)]
    fn adam_lead<const CLAMP: bool, const SCALE: bool, const DECAY: u8>(
        self,
        adam: &AdamOp<f32, false>,
        args: &Args<f32>,
        run: AdamRun<'_, f32, u16>,
    ) -> usize {
        super::bf16_adam::adam_lead::<CLAMP, SCALE, DECAY>(adam, args, self.narrowing(), run)
    }
}

/// State `k`'s 16 bits of its pair's 32: the high half for even `k`, the low half for odd.
#[inline(always)]
fn half(bits: u32, k: usize) -> u32 {
    if k.is_multiple_of(2) {
        bits >> 16
    } else {
        bits & 0xffff
    }
}

/// The 16 random bits with which state `k` of element `index` is narrowed, from the stream of
/// `(seed, step, stream)`: half of `element_bits(stream_key(seed, step, stream, k / 2), index)`
/// (the high half for even `k`, the low half for odd).
pub fn state_bits(seed: u64, step: u64, stream: u64, k: usize, index: u64) -> u32 {
    half(
        element_bits(stream_key(seed, step, stream, k / 2), index),
        k,
    )
}

/// Widen `src` into `dst` (same length).
pub fn widen_slice(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = widen(s);
    }
}

/// Narrow `src` into `dst` (same length) as state `k` of elements `first..` of the tensor whose
/// stream is `(seed, step, stream)` ([`state_bits`]), or to nearest even when `stochastic` is
/// `None`. (The optimizer steps narrow inside their fused loop; this is the same rounding alone.)
pub fn narrow_slice(
    src: &[f32],
    dst: &mut [u16],
    stochastic: Option<(u64, u64, u64, usize)>,
    first: u64,
) {
    for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
        *d = match stochastic {
            Some((seed, step, stream, k)) => {
                narrow_stochastic(s, state_bits(seed, step, stream, k, first + i as u64))
            }
            None => narrow_nearest(s),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_uses_state_bits_across_a_2_pow_32_boundary() {
        let rounding = Rounding::Stochastic { seed: 7, stream: 3 };
        let storage = Bf16Storage::new(rounding, 5);
        for index in [0u64, 1, (1 << 32) - 1, 1 << 32, (1 << 32) + 9, 3 << 40] {
            let run = storage.run_at((index >> 32) as u32);
            let v = 1.0 + index as f32 * 1e-4;
            for k in 0..MAX_STATE {
                let bits = state_bits(7, 5, 3, k, index);
                assert_eq!(run.store(k, v, index as u32), narrow_stochastic(v, bits));
            }
        }
        let nearest = Bf16Storage::new(Rounding::NearestEven, 5);
        assert_eq!(nearest.store(0, 1.0 + 2f32.powi(-8), 3), 0x3f80);
    }

    #[test]
    fn a_pair_of_states_splits_one_hash() {
        let bits = element_bits(stream_key(1, 2, 3, 0), 99);
        assert_eq!(state_bits(1, 2, 3, 0, 99), bits >> 16);
        assert_eq!(state_bits(1, 2, 3, 1, 99), bits & 0xffff);
        let next = element_bits(stream_key(1, 2, 3, 1), 99);
        assert_eq!(state_bits(1, 2, 3, 2, 99), next >> 16);
    }

    #[test]
    fn widen_narrow_round_trips_every_pattern() {
        for b in 0..=u16::MAX {
            let v = widen(b);
            let back = narrow_nearest(v);
            if v.is_nan() {
                assert!(widen(back).is_nan());
                assert_eq!(back & 0x8000, b & 0x8000);
            } else {
                assert_eq!(back, b);
                assert_eq!(narrow_stochastic(v, 0xffff), b);
            }
        }
    }

    #[test]
    fn nearest_even_ties_and_halves() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even pattern (1.0).
        assert_eq!(narrow_nearest(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: goes up to even.
        assert_eq!(narrow_nearest(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(
            narrow_nearest(-1.0 - 2f32.powi(-8) - 2f32.powi(-20)),
            0xbf81
        );
        assert_eq!(narrow_nearest(f32::INFINITY), 0x7f80);
        assert_eq!(narrow_nearest(f32::MAX), 0x7f80);
    }

    #[test]
    fn stochastic_rounds_down_or_up_only() {
        let v = 1.0 + 2f32.powi(-9); // a quarter of the way from 1.0 to the next bfloat16
        for r in [0, 0x3fff, 0xbfff, 0xc000, 0xffff] {
            let b = narrow_stochastic(v, r);
            assert_eq!(b, if r >= 0xc000 { 0x3f81 } else { 0x3f80 });
        }
        assert_eq!(narrow_stochastic(-v, 0xc000), 0xbf81);
        assert_eq!(narrow_stochastic(f32::NEG_INFINITY, 0xffff), 0xff80);
        assert!(widen(narrow_stochastic(f32::NAN, 0xffff)).is_nan());
    }
}

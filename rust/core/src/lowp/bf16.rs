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

use super::hash::lowbias32;

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
    let rounded = (x.wrapping_add(0x7fff + ((x >> 16) & 1)) >> 16) as u16;
    if is_nan_bits(x) {
        (x >> 16) as u16 | 0x40
    } else {
        rounded
    }
}

/// Round to bfloat16 up or down in magnitude using the low 16 bits of `r` as the random draw.
#[inline(always)]
pub fn narrow_stochastic(v: f32, r: u32) -> u16 {
    let x = v.to_bits();
    let rounded = (x.wrapping_add(r & 0xffff) >> 16) as u16;
    if is_nan_bits(x) {
        (x >> 16) as u16 | 0x40
    } else {
        rounded
    }
}

/// Narrow `src` into `dst` (same length), element `i` using the random bits of element
/// `first + i` of stream `key` when stochastic.
#[inline(always)]
pub fn narrow_slice(src: &[f32], dst: &mut [u16], key: Option<u64>, first: u64) {
    let dst = &mut dst[..src.len()];
    let Some(key) = key else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = narrow_nearest(s);
        }
        return;
    };
    // Runs that stay within one 2^32-aligned range of indices, so the loop works on 32-bit
    // lanes only (the high half of the index is constant in a run).
    let mut start = 0;
    while start < src.len() {
        let at = first + start as u64;
        let room = (1u64 << 32) - (at & 0xffff_ffff);
        let end = src
            .len()
            .min(start.saturating_add(usize::try_from(room).unwrap_or(usize::MAX)));
        narrow_run(&src[start..end], &mut dst[start..end], key, at);
        start = end;
    }
}

/// [`narrow_slice`] for indices `first..first + src.len()` that share their high 32 bits:
/// `element_bits` with the index split into a running low half and a constant high half.
#[inline(always)]
fn narrow_run(src: &[f32], dst: &mut [u16], key: u64, first: u64) {
    let high = (key >> 32) as u32 ^ (first >> 32) as u32;
    let (low0, key_low) = (first as u32, key as u32);
    for (j, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
        let low = low0.wrapping_add(j as u32);
        let bits = lowbias32(low ^ key_low) ^ high;
        *d = narrow_stochastic(s, bits >> 16);
    }
}

/// Widen `src` into `dst` (same length).
#[inline(always)]
pub fn widen_slice(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = widen(s);
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::element_bits;
    use super::*;

    #[test]
    fn narrow_slice_uses_element_bits_across_a_2_pow_32_boundary() {
        let src: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 * 1e-4).collect();
        let (key, first) = (0x1234_5678_9abc_def0, (1u64 << 32) - 17);
        let mut dst = vec![0u16; src.len()];
        narrow_slice(&src, &mut dst, Some(key), first);
        for (i, (&s, &d)) in src.iter().zip(&dst).enumerate() {
            let bits = element_bits(key, first + i as u64);
            assert_eq!(d, narrow_stochastic(s, bits >> 16), "element {i}");
        }
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

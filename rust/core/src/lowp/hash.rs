//! The counter-based random bits of stochastic rounding.
//!
//! Every random number is a pure function of (seed, step, tensor stream, state index, element
//! index), so a step gives the same bits at every SIMD level, thread count and split of the work,
//! is reproducible from a checkpoint, and the NumPy reference computes the same bits.
//!
//! ```text
//! key  = mix(mix(mix(splitmix64(seed), step), stream), state)      (u64, once per array and step)
//! mix(h, x) = splitmix64(h ^ x)
//! bits(key, i) = lowbias32(lo32(i) ^ lo32(key)) ^ hi32(key) ^ hi32(i)
//! ```
//! `splitmix64` is Steele et al.'s finalizer; `lowbias32` is C. Wellons' 32-bit integer hash
//! (`x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16`), a bijection
//! of `u32`, so for a fixed key the per-element bits are exactly uniform over any 2^32 consecutive
//! indices. The key is a full splitmix64 output per (seed, step, stream, state), so one round per
//! element suffices: two 32-bit multiplies, which every SIMD level has.

/// splitmix64's output function applied to `z + golden ratio` (Steele, Lea & Flood 2014).
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(h: u64, x: u64) -> u64 {
    splitmix64(h ^ x)
}

/// The key of one state array's random stream at one step.
pub fn stream_key(seed: u64, step: u64, stream: u64, state: usize) -> u64 {
    mix(mix(mix(splitmix64(seed), step), stream), state as u64)
}

/// C. Wellons' `lowbias32` integer hash (a bijection of `u32`).
#[inline(always)]
pub fn lowbias32(x: u32) -> u32 {
    let mut x = x;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// 32 random bits for element `index` of the stream `key`.
#[inline(always)]
pub fn element_bits(key: u64, index: u64) -> u32 {
    lowbias32(index as u32 ^ key as u32) ^ (key >> 32) as u32 ^ (index >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_published_sequence() {
        // splitmix64 seeded with 0: the generator adds the golden ratio before mixing.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn lowbias32_is_a_bijection_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for x in 0..1u32 << 16 {
            assert!(seen.insert(lowbias32(x.wrapping_mul(65_537))));
        }
    }

    #[test]
    fn keys_differ_per_coordinate() {
        let base = stream_key(1, 2, 3, 0);
        assert_ne!(base, stream_key(0, 2, 3, 0));
        assert_ne!(base, stream_key(1, 3, 3, 0));
        assert_ne!(base, stream_key(1, 2, 4, 0));
        assert_ne!(base, stream_key(1, 2, 3, 1));
        assert_ne!(element_bits(base, 0), element_bits(base, 1));
        assert_ne!(element_bits(base, 5), element_bits(base, 5 + (1 << 32)));
    }
}

//! The 8-bit block pass with explicit vectors: the same codes as [`super::quant8`]'s scalar
//! code, 16 (AVX-512) or 8 (AVX2) values at a time.
//!
//! Quantizing `x = value * scale` (`scale = 1 / absmax`, exactly as the scalar code does; the
//! caller uses these only for blocks with a normal absmax, where every `x` is in
//! [-1 - 2^-23, 1 + 2^-23]), with one gather from the bucket table per 16 or 8 values:
//! ```text
//! m         = max(top16(|x|), LOW) - LOW                  (|x| < 2: no upper clamp)
//! bucket    = x < 0 ? SPAN - 1 - m : SPAN + m             (monotone in x)
//! entry     = table[bucket]                               (one gather)
//! threshold = float(top16(x) << 16 | low16(entry))
//! code      = (entry >> START_SHIFT) + (entry has a threshold and x >= threshold)
//! ```
//! Dequantizing is a lookup in the 256-value map and one multiplication by absmax: byte permutes
//! over the map's four byte planes, 64 codes at a time, where the CPU has AVX-512 VBMI, and
//! otherwise one AVX2 gather per 8 codes (at the AVX-512 level too). Each
//! function handles the whole vectors at the start of its slices at the active
//! [`crate::simd::level`] and returns how many values it did; the caller finishes the rest with
//! the scalar code, so every level gives the same bits.

use super::quant8::Quantizer;
#[cfg(target_arch = "x86_64")]
use crate::simd::{level, SimdLevel};

/// Write the codes of `values[i] * scale` for the first whole vectors of `values`; returns how
/// many values were done (0 at levels without a vector version).
#[inline(always)]
pub(super) fn quantize(q: &Quantizer, values: &[f32], scale: f32, codes: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let n = values.len().min(codes.len());
        let values = &values[..n];
        match level() {
            // Safety: `level()` returns only levels this CPU supports.
            SimdLevel::Avx512 => unsafe { x86::quantize_avx512(q, values, scale, codes) },
            // Safety: as above.
            SimdLevel::Avx2 => unsafe { x86::quantize_avx2(q, values, scale, codes) },
            _ => 0,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, values, scale, codes);
        0
    }
}

/// Write `map[codes[i]] * absmax` for the first whole vectors of `codes`; returns how many values
/// were done (0 at levels without a vector version). At the AVX-512 level the lookup uses byte
/// permutes (AVX-512 VBMI) where the CPU has them, and AVX2 gathers otherwise.
#[inline(always)]
pub(super) fn dequantize(q: &Quantizer, codes: &[u8], absmax: f32, out: &mut [f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let n = codes.len().min(out.len());
        let codes = &codes[..n];
        match level() {
            // Safety: `level()` returns only levels this CPU supports, and VBMI was detected.
            SimdLevel::Avx512 if has_vbmi() => unsafe {
                x86::dequantize_vbmi(q.planes(), codes, absmax, out)
            },
            // Safety: as above (the AVX-512 level includes AVX2).
            SimdLevel::Avx512 | SimdLevel::Avx2 => unsafe {
                x86::dequantize_avx2(q.map(), codes, absmax, out)
            },
            _ => 0,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, codes, absmax, out);
        0
    }
}

/// Whether the CPU has AVX-512 BW and VBMI (byte permutes), detected once.
#[cfg(target_arch = "x86_64")]
fn has_vbmi() -> bool {
    static VBMI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VBMI.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::quant8::{Quantizer, HAS_THRESHOLD, LOW, SPAN, START_SHIFT};
    use std::arch::x86_64::*;

    /// AVX-512 quantization of `values.len() / 16 * 16` values (`codes` at least as long); every
    /// `value * scale` must be in (-2, 2). 64 values per iteration, their codes packed into one
    /// store, then 16 at a time.
    ///
    /// Safety: the CPU supports AVX-512F/BW/DQ.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    pub(super) unsafe fn quantize_avx512(
        q: &Quantizer,
        values: &[f32],
        scale: f32,
        codes: &mut [u8],
    ) -> usize {
        let n = values.len() / 16 * 16;
        assert!(codes.len() >= n);
        // Indexed from (the address of) bucket SPAN - LOW < 0, a positive value's index is its
        // clamped top 16 bits `m` and a negative one's `2 LOW - 1 - m` (bucket
        // SPAN - 1 - (m - LOW)), so only addresses of buckets are read.
        let table = q
            .table()
            .as_ptr()
            .cast::<i32>()
            .wrapping_sub((LOW - SPAN) as usize);
        let s = _mm512_set1_ps(scale);
        let magnitude = _mm512_set1_epi32(0x7fff_ffff);
        let low = _mm512_set1_epi32(LOW as i32);
        let negative_base = _mm512_set1_epi32(2 * LOW as i32 - 1);
        let (top, has, one) = (
            _mm512_set1_epi32(0xffff_0000_u32 as i32),
            _mm512_set1_epi32(HAS_THRESHOLD as i32),
            _mm512_set1_epi32(1),
        );
        // The codes of `values[i..i + 16]`, one per 32-bit lane.
        let codes16 = |i: usize| {
            let x = _mm512_mul_ps(_mm512_loadu_ps(values.as_ptr().add(i)), s);
            let bits = _mm512_castps_si512(x);
            // |x| < 2: only the low clamp can apply.
            let m = _mm512_max_epu32(
                _mm512_srli_epi32::<16>(_mm512_and_si512(bits, magnitude)),
                low,
            );
            let index = _mm512_mask_sub_epi32(m, _mm512_movepi32_mask(bits), negative_base, m);
            // Safety: `table + index` is a bucket, below 2 * SPAN = BUCKETS.
            let entry = _mm512_i32gather_epi32::<4>(index, table);
            // (bits & top) | (entry & !top): the bucket's threshold.
            let threshold =
                _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xe4>(bits, entry, top));
            let flagged = _mm512_test_epi32_mask(entry, has);
            let up = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(flagged, x, threshold);
            let code = _mm512_srli_epi32::<START_SHIFT>(entry);
            _mm512_mask_add_epi32(code, up, code, one)
        };
        // The packs leave 32-bit group 4 lane + r holding codes 16 r + 4 lane .. + 3.
        let natural = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let wide = n / 64 * 64;
        for i in (0..wide).step_by(64) {
            let [c0, c1, c2, c3] = [
                codes16(i),
                codes16(i + 16),
                codes16(i + 32),
                codes16(i + 48),
            ];
            let packed =
                _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3));
            let packed = _mm512_permutexvar_epi32(natural, packed);
            _mm512_storeu_si512(codes.as_mut_ptr().add(i).cast(), packed);
        }
        for i in (wide..n).step_by(16) {
            _mm_storeu_si128(
                codes.as_mut_ptr().add(i).cast(),
                _mm512_cvtepi32_epi8(codes16(i)),
            );
        }
        n
    }

    /// AVX2 quantization of `values.len() / 8 * 8` values (`codes` at least as long); every
    /// `value * scale` must be in (-2, 2).
    ///
    /// Safety: the CPU supports AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_avx2(
        q: &Quantizer,
        values: &[f32],
        scale: f32,
        codes: &mut [u8],
    ) -> usize {
        let n = values.len() / 8 * 8;
        assert!(codes.len() >= n);
        let table = q.table().as_ptr().cast::<i32>();
        let s = _mm256_set1_ps(scale);
        let magnitude = _mm256_set1_epi32(0x7fff_ffff);
        let low = _mm256_set1_epi32(LOW as i32);
        let positive_base = _mm256_set1_epi32(SPAN as i32 - LOW as i32);
        // Negative: SPAN - 1 + LOW - m = positive bucket - (2m + 1 - 2 LOW).
        let odd = _mm256_set1_epi32(1 - 2 * LOW as i32);
        let (top, has) = (
            _mm256_set1_epi32(0xffff_0000_u32 as i32),
            _mm256_set1_epi32(HAS_THRESHOLD as i32),
        );
        // Dwords 0 and 4 (each holding 4 packed codes) to the low 8 bytes.
        let gather_low = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
        for i in (0..n).step_by(8) {
            let x = _mm256_mul_ps(_mm256_loadu_ps(values.as_ptr().add(i)), s);
            let bits = _mm256_castps_si256(x);
            let m = _mm256_max_epu32(
                _mm256_srli_epi32::<16>(_mm256_and_si256(bits, magnitude)),
                low,
            );
            let negative = _mm256_srai_epi32::<31>(bits);
            let shift = _mm256_and_si256(negative, _mm256_add_epi32(_mm256_add_epi32(m, m), odd));
            let bucket = _mm256_sub_epi32(_mm256_add_epi32(m, positive_base), shift);
            // Safety: `bucket` is below 2 * SPAN = BUCKETS.
            let entry = _mm256_i32gather_epi32::<4>(table, bucket);
            let threshold = _mm256_castsi256_ps(_mm256_or_si256(
                _mm256_and_si256(bits, top),
                _mm256_andnot_si256(top, entry),
            ));
            let flagged = _mm256_cmpeq_epi32(_mm256_and_si256(entry, has), has);
            let ge = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(x, threshold));
            let up = _mm256_and_si256(flagged, ge);
            let code = _mm256_sub_epi32(_mm256_srli_epi32::<{ START_SHIFT as i32 }>(entry), up);
            let words = _mm256_packus_epi32(code, code);
            let bytes = _mm256_packus_epi16(words, words);
            let low8 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, gather_low));
            _mm_storel_epi64(codes.as_mut_ptr().add(i).cast(), low8);
        }
        n
    }

    /// AVX-512 VBMI dequantization of `codes.len() / 64 * 64` values (`out` at least as long):
    /// each byte of the map values is looked up for 64 codes at once (two 128-entry byte permutes
    /// and a blend on the code's top bit), then the four byte planes are interleaved into floats.
    /// The codes are first reordered so that the in-lane interleave yields values in order.
    ///
    /// Safety: the CPU supports AVX-512F/BW/VBMI.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx512vbmi,avx2,fma")]
    pub(super) unsafe fn dequantize_vbmi(
        planes: &[[u8; 256]; 4],
        codes: &[u8],
        absmax: f32,
        out: &mut [f32],
    ) -> usize {
        let n = codes.len() / 64 * 64;
        assert!(out.len() >= n);
        let scale = _mm512_set1_ps(absmax);
        let table: [[__m512i; 4]; 4] = std::array::from_fn(|b| {
            std::array::from_fn(|k| _mm512_loadu_si512(planes[b].as_ptr().add(64 * k).cast()))
        });
        // Byte p = 16 lane + 4 r + j receives code 16 r + 4 lane + j: after the two unpack
        // rounds, output vector r holds codes 16 r .. 16 r + 15 in order.
        let order: [u8; 64] =
            std::array::from_fn(|p| (16 * (p % 16 / 4) + 4 * (p / 16) + p % 4) as u8);
        let order = _mm512_loadu_si512(order.as_ptr().cast());
        for i in (0..n).step_by(64) {
            let c =
                _mm512_permutexvar_epi8(order, _mm512_loadu_si512(codes.as_ptr().add(i).cast()));
            let upper = _mm512_movepi8_mask(c);
            let byte = |t: &[__m512i; 4]| {
                let low = _mm512_permutex2var_epi8(t[0], c, t[1]);
                let high = _mm512_permutex2var_epi8(t[2], c, t[3]);
                _mm512_mask_blend_epi8(upper, low, high)
            };
            let [b0, b1, b2, b3] = [
                byte(&table[0]),
                byte(&table[1]),
                byte(&table[2]),
                byte(&table[3]),
            ];
            let (w01l, w01h) = (_mm512_unpacklo_epi8(b0, b1), _mm512_unpackhi_epi8(b0, b1));
            let (w23l, w23h) = (_mm512_unpacklo_epi8(b2, b3), _mm512_unpackhi_epi8(b2, b3));
            let values = [
                _mm512_unpacklo_epi16(w01l, w23l),
                _mm512_unpackhi_epi16(w01l, w23l),
                _mm512_unpacklo_epi16(w01h, w23h),
                _mm512_unpackhi_epi16(w01h, w23h),
            ];
            for (r, v) in values.into_iter().enumerate() {
                let v = _mm512_mul_ps(_mm512_castsi512_ps(v), scale);
                _mm512_storeu_ps(out.as_mut_ptr().add(i + 16 * r), v);
            }
        }
        n
    }

    /// AVX2 dequantization of `codes.len() / 8 * 8` values (`out` at least as long).
    ///
    /// Safety: the CPU supports AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dequantize_avx2(
        map: &[f32; 256],
        codes: &[u8],
        absmax: f32,
        out: &mut [f32],
    ) -> usize {
        let n = codes.len() / 8 * 8;
        assert!(out.len() >= n);
        let scale = _mm256_set1_ps(absmax);
        for i in (0..n).step_by(8) {
            let c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(codes.as_ptr().add(i).cast()));
            // Safety: codes are below 256, the map's length.
            let v = _mm256_i32gather_ps::<4>(map.as_ptr(), c);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(v, scale));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::splitmix64;
    use super::super::quant8::{absmax, normalized, QuantMap, Quantizer, BLOCK};
    use crate::simd::{set_level, supported_levels};

    /// Blocks of every kind: random magnitudes over 40 binades, exact thresholds and their
    /// neighbours times absmax, zeros of both signs, tiny values, and non-finite values.
    fn blocks() -> Vec<Vec<f32>> {
        let mut state = 7u64;
        let mut next = || {
            state = splitmix64(state);
            state
        };
        let mut out = Vec::new();
        for len in [BLOCK, BLOCK, 255, 17, 16, 8, 3] {
            let block: Vec<f32> = (0..len)
                .map(|_| {
                    let r = next();
                    let u = (r >> 40) as f32 / (1u64 << 24) as f32;
                    (u * 2.0 - 1.0) * 2f32.powi(-(((r >> 8) % 40) as i32))
                })
                .collect();
            out.push(block);
        }
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let q = Quantizer::get(kind);
            let mut near: Vec<f32> = Vec::new();
            for &m in q.map() {
                for ulps in [-1i32, 0, 1] {
                    near.push(f32::from_bits((m.to_bits() as i32 + ulps) as u32));
                }
            }
            near.extend([1.0, -1.0, 0.0, -0.0, 1e-30, -1e-30, 3e-8, -3e-8]);
            out.extend(
                near.chunks(BLOCK)
                    .map(|c| c.iter().map(|v| v * 0.375).collect()),
            );
        }
        out.push(vec![0.0; BLOCK]);
        out.push(vec![-0.0; 40]);
        let mut special = vec![0.5f32; 48];
        special[3] = f32::INFINITY;
        special[20] = -f32::INFINITY;
        out.push(special.clone());
        special[30] = f32::NAN;
        out.push(special);
        out
    }

    #[test]
    fn every_level_quantizes_and_dequantizes_as_the_scalar_code() {
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let q = Quantizer::get(kind);
            for block in blocks() {
                let a = absmax(&block);
                let expected: Vec<u8> = block.iter().map(|&v| q.code(normalized(v, a))).collect();
                let back: Vec<u32> = expected
                    .iter()
                    .map(|&c| (q.map()[usize::from(c)] * a).to_bits())
                    .collect();
                for level in supported_levels() {
                    assert!(set_level(level));
                    let mut codes = vec![0u8; block.len()];
                    assert_eq!(q.quantize_block(&block, &mut codes).to_bits(), a.to_bits());
                    assert_eq!(codes, expected, "{kind:?} {level:?} {block:?}");
                    let mut out = vec![0f32; block.len()];
                    q.dequantize_block(&codes, a, &mut out);
                    let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, back, "{kind:?} {level:?}");
                }
                assert!(set_level(crate::simd::detected_level()));
            }
        }
    }
}

#[cfg(test)]
mod edge_tests {
    use super::super::hash::splitmix64;
    use super::super::quant8::{QuantMap, Quantizer, BLOCK};
    use crate::simd::{detected_level, set_level, supported_levels, SimdLevel};

    /// Quantizes `xs` (all in [-1, 1]) in blocks of 255 values and 1.0, so that absmax is 1 and
    /// each value is its own normalized value, at each of `levels`; panics where a code differs
    /// from the scalar table lookup's (itself checked against a brute-force search).
    fn check(q: &Quantizer, xs: &[f32], levels: &[SimdLevel]) {
        for &level in levels {
            assert!(set_level(level));
            for chunk in xs.chunks(BLOCK - 1) {
                let mut block = chunk.to_vec();
                block.push(1.0);
                let mut codes = vec![0u8; block.len()];
                assert_eq!(q.quantize_block(&block, &mut codes), 1.0);
                for (&x, &c) in block.iter().zip(&codes) {
                    assert_eq!(c, q.code(x), "{level:?} x={x:e} ({:#x})", x.to_bits());
                }
            }
        }
        assert!(set_level(detected_level()));
    }

    /// Every threshold and its 4 neighbours on each side, both signs, the decade boundaries'
    /// neighbourhoods, 0, -0, +-1, tiny and subnormal values, and random values over 40 binades.
    #[test]
    fn vector_codes_equal_the_table_lookup_at_thresholds_and_edges() {
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let q = Quantizer::get(kind);
            let mut xs: Vec<f32> = vec![
                0.0,
                -0.0,
                1.0,
                -1.0,
                f32::from_bits(0x3f7f_ffff),
                -f32::from_bits(0x3f7f_ffff),
                1e-40,
                -1e-40,
                f32::from_bits(1),
                -f32::from_bits(1),
                f32::MIN_POSITIVE,
                1e-30,
                -1e-30,
                2f32.powi(-30),
                2f32.powi(-31),
            ];
            for (j, &m) in q.map().iter().enumerate() {
                let t = if j < 255 {
                    0.5 * (f64::from(m) + f64::from(q.map()[j + 1]))
                } else {
                    1.0
                };
                for v in [m, t as f32] {
                    for ulps in -4i32..=4 {
                        let x = f32::from_bits((v.abs().to_bits() as i32 + ulps).max(0) as u32);
                        if x <= 1.0 {
                            xs.extend([x, -x]);
                        }
                    }
                }
            }
            let mut state = 99u64;
            for _ in 0..50_000 {
                state = splitmix64(state);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                xs.push((u * 2.0 - 1.0) * 2f32.powi(-(((state >> 8) % 40) as i32)));
            }
            check(q, &xs, &supported_levels());
        }
    }

    /// Every float32 in [-1, 1] at the best level (about 2.1e9 values per map; run in release mode:
    /// `cargo test --release -p ferroptim-core every_float -- --ignored`).
    #[test]
    #[ignore]
    fn every_float_in_the_unit_interval_quantizes_as_the_table_lookup() {
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let q = Quantizer::get(kind);
            let top = 1f32.to_bits();
            let mut xs = Vec::with_capacity(1 << 20);
            for bits in 0..=top {
                let x = f32::from_bits(bits);
                xs.extend([x, -x]);
                if xs.len() >= 1 << 20 || bits == top {
                    check(q, &xs, &[detected_level()]);
                    xs.clear();
                }
            }
        }
    }
}

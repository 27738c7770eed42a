//! 8-bit blockwise quantization with the dynamic (tree) maps of Dettmers et al. 2021, as in
//! bitsandbytes' `create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)`.
//!
//! A map is 256 sorted float32 values in [-1, 1] (signed) or [0, 1] (unsigned). For each decade
//! `i = 0..7` it holds the midpoints of `k + 1` equally spaced points from 0.1 to 1, scaled by
//! `10^(i - 6)`, with `k = 2^i` (signed: also their negatives) or `k = 2^(i + 1)` (unsigned), plus
//! 0 and 1. Here every value is computed in float64 (`b_j = 0.1 + j * 0.9 / k`,
//! `(b_j + b_{j+1}) / 2 / 10^(6 - i)`) and rounded once to float32.
//!
//! A block of [`BLOCK`] values `x` is stored as `absmax = max |x|` (float32) and one code per value:
//! the index of the map value nearest to the normalized value `y`, which is, as in bitsandbytes'
//! kernels, `y = x * s` with `s = 1 / absmax` (both float32 operations) when absmax is a normal
//! float; `y = x / absmax` when absmax is subnormal, infinite or NaN (where `1 / absmax` may
//! overflow), and `y = x` when absmax is 0. Its value is `map[code] * absmax`. Nearest is exact:
//! code = the number of thresholds `t_j <= y`, where `t_j` is the smallest float32 at or above the
//! exact midpoint of `map[j]` and `map[j+1]` (ties go to the larger value); a NaN quantizes to
//! code 255. Codes are found without a search: one entry of a table indexed by the top 16 bits of
//! `y` (its sign, exponent and 7 mantissa bits, clamped to |y| in [2^-24, 2]) gives the code at
//! the bucket's start and the low 16 bits of the bucket's threshold, if any (each bucket holds at
//! most one; checked when the table is built). The threshold is the value's top 16 bits joined to
//! those low 16 bits, so one float comparison finishes.
//!
//! The crate-private `quant8_simd` module runs the same lookup 16 (AVX-512) or 8 (AVX2) values
//! at a time with gathers, so every SIMD level gives the same codes.

use super::quant8_simd;
use std::sync::OnceLock;

/// Elements per quantization block (one float32 absmax each).
pub const BLOCK: usize = 256;

/// Four 256-byte tables, aligned for vector loads.
#[repr(align(64))]
struct BytePlanes([[u8; 256]; 4]);

/// Which dynamic map a state uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMap {
    /// Values in [-1, 1] (first moments).
    Signed,
    /// Values in [0, 1] (second moments).
    Unsigned,
}

/// The quantization tables of one map.
pub struct Quantizer {
    map: [f32; 256],
    /// Byte `b` of every map value's pattern, for byte-table lookups (`planes[b][code]`).
    planes: BytePlanes,
    /// `thresholds[j]` separates codes `j` and `j + 1`; `thresholds[255]` is NaN (never reached).
    thresholds: [f32; 256],
    /// Per bucket (see [`bucket`]): `start << 17 | HAS_THRESHOLD | low`, `start` the code at the
    /// bucket's start and, if the bucket holds a threshold, [`HAS_THRESHOLD`] and the low 16 bits
    /// of the threshold's pattern.
    table: Box<[u32; BUCKETS]>,
}

/// Byte `b` of every value's pattern, for byte-table lookups (`planes[b][index]`).
fn byte_planes(values: &[f32; 256]) -> BytePlanes {
    let mut planes = BytePlanes([[0; 256]; 4]);
    for (index, value) in values.iter().enumerate() {
        for (b, byte) in value.to_bits().to_le_bytes().into_iter().enumerate() {
            planes.0[b][index] = byte;
        }
    }
    planes
}

/// Top 16 bits of |x| below this (|x| < 2^-24, below every threshold) share the lowest bucket.
pub(super) const LOW: u32 = (127 - 24) << 7;
/// Top 16 bits of |x| from this (|x| >= 2) share the highest bucket.
pub(super) const HIGH: u32 = 128 << 7;
/// Buckets per sign.
pub(super) const SPAN: u32 = HIGH - LOW + 1;
/// Buckets in all.
pub(super) const BUCKETS: usize = 2 * SPAN as usize;
/// A table entry's flag: its bucket holds a threshold (in the entry's low 16 bits).
pub(super) const HAS_THRESHOLD: u32 = 1 << 16;
/// Bits below a table entry's start code.
pub(super) const START_SHIFT: u32 = 17;

/// The threshold of `x`'s bucket, whose top 16 bits are those of `x` (`entry` flags it).
#[inline(always)]
fn bucket_threshold(x: f32, entry: u32) -> f32 {
    f32::from_bits((x.to_bits() & 0xffff_0000) | (entry & 0xffff))
}

/// The bucket of `x`: monotone in `x` (non-decreasing), `2 * SPAN` buckets: `SPAN + m` for a
/// positive `x` and `SPAN - 1 - m` for a negative one, `m` its clamped magnitude bucket (written
/// without branches so that the loop vectorizes).
#[inline(always)]
fn bucket(x: f32) -> usize {
    let bits = x.to_bits();
    let magnitude = ((bits & 0x7fff_ffff) >> 16).clamp(LOW, HIGH) - LOW;
    let negative = bits >> 31;
    (SPAN + magnitude).wrapping_sub(negative * (2 * magnitude + 1)) as usize
}

/// The dynamic map's 256 values, sorted (see the module docs).
pub fn dynamic_map(kind: QuantMap) -> [f32; 256] {
    let signed = kind == QuantMap::Signed;
    let mut values: Vec<f64> = vec![0.0, 1.0];
    for i in 0..7i32 {
        let k = if signed { 1u32 << i } else { 1u32 << (i + 1) };
        let scale = 10f64.powi(6 - i);
        for j in 0..k {
            let lo = 0.1 + f64::from(j) * 0.9 / f64::from(k);
            let hi = 0.1 + f64::from(j + 1) * 0.9 / f64::from(k);
            let mean = (lo + hi) / 2.0 / scale;
            values.push(mean);
            if signed {
                values.push(-mean);
            }
        }
    }
    let mut map: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    map.sort_by(f32::total_cmp);
    map.try_into().expect("the dynamic map has 256 values")
}

/// The smallest float32 at or above `m`.
fn f32_at_or_above(m: f64) -> f32 {
    let f = m as f32;
    if f64::from(f) < m {
        f32::from_bits(if f >= 0.0 {
            f.to_bits() + 1
        } else {
            f.to_bits() - 1
        })
    } else {
        f
    }
}

impl Quantizer {
    fn new(kind: QuantMap) -> Self {
        let map = dynamic_map(kind);
        let mut thresholds = [f32::NAN; 256];
        for j in 0..255 {
            thresholds[j] = f32_at_or_above((f64::from(map[j]) + f64::from(map[j + 1])) / 2.0);
        }
        let mut table = Box::new([0u32; BUCKETS]);
        let mut code = 0usize;
        // Bucket b starts at the smallest float of that bucket; walk thresholds in order.
        for (b, entry) in table.iter_mut().enumerate() {
            let start = bucket_start(b);
            while code < 255 && thresholds[code] <= start {
                code += 1;
            }
            let next = thresholds[code];
            let low = if code < 255 && bucket(next) == b {
                HAS_THRESHOLD | (next.to_bits() & 0xffff)
            } else {
                0
            };
            *entry = (code as u32) << START_SHIFT | low;
        }
        let q = Quantizer {
            map,
            planes: byte_planes(&map),
            thresholds,
            table,
        };
        q.check_one_threshold_per_bucket();
        q
    }

    /// Panics if a bucket holds two thresholds (the table lookup would then be wrong) or a
    /// threshold lies in a bucket shared by clamped magnitudes (whose low bits do not order them).
    fn check_one_threshold_per_bucket(&self) {
        let low = f32::from_bits((LOW + 1) << 16);
        assert!(self.thresholds[..255].iter().all(|t| t.abs() >= low));
        for j in 1..255 {
            assert!(
                bucket(self.thresholds[j]) != bucket(self.thresholds[j - 1]),
                "quantization table: thresholds {} and {} share a bucket",
                j - 1,
                j
            );
        }
    }

    /// The tables of `kind`, built once.
    pub fn get(kind: QuantMap) -> &'static Quantizer {
        static SIGNED: OnceLock<Quantizer> = OnceLock::new();
        static UNSIGNED: OnceLock<Quantizer> = OnceLock::new();
        match kind {
            QuantMap::Signed => SIGNED.get_or_init(|| Quantizer::new(kind)),
            QuantMap::Unsigned => UNSIGNED.get_or_init(|| Quantizer::new(kind)),
        }
    }

    /// The map values' bytes (see [`Quantizer`]'s fields).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn planes(&self) -> &[[u8; 256]; 4] {
        &self.planes.0
    }

    /// The 256 map values.
    pub fn map(&self) -> &[f32; 256] {
        &self.map
    }

    /// The code of the map value nearest to `x` (a NaN gives 255).
    #[inline(always)]
    pub fn code(&self, x: f32) -> u8 {
        self.code32(x) as u8
    }

    /// The bucket table (see [`Quantizer`]'s fields).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn table(&self) -> &[u32; BUCKETS] {
        &self.table
    }

    /// [`Quantizer::code`] as a u32, without branches.
    #[inline(always)]
    fn code32(&self, x: f32) -> u32 {
        // `bucket` is below BUCKETS.
        let entry = self.table[bucket(x).min(BUCKETS - 1)];
        let up = entry & HAS_THRESHOLD != 0 && x >= bucket_threshold(x, entry);
        let code = (entry >> START_SHIFT) + u32::from(up);
        #[allow(clippy::eq_op)]
        let nan = x != x;
        if nan {
            255
        } else {
            code
        }
    }

    /// Quantize one block (at most [`BLOCK`] values): returns its absmax and writes one code per
    /// value, the code of its normalized value ([`normalized`]).
    #[inline(always)]
    pub fn quantize_block(&self, values: &[f32], codes: &mut [u8]) -> f32 {
        assert!(
            values.len() <= BLOCK,
            "a quantization block holds at most {BLOCK} values"
        );
        let codes = &mut codes[..values.len()];
        let absmax = absmax(values);
        if let Some(scale) = Self::block_scale(absmax) {
            self.quantize_scaled(values, scale, codes);
        } else {
            for (c, &v) in codes.iter_mut().zip(values) {
                *c = self.code32(normalized(v, absmax)) as u8;
            }
        }
        absmax
    }

    /// `1 / absmax` when a block's values are normalized by multiplying with it (a normal
    /// absmax), `None` otherwise (see [`normalized`]).
    #[inline(always)]
    pub fn block_scale(absmax: f32) -> Option<f32> {
        absmax.is_normal().then(|| 1.0 / absmax)
    }

    /// Write the code of `value * scale` for each of `values` (some values of a block whose
    /// [`Quantizer::block_scale`] is `scale`: every product is in [-1 - 2^-23, 1 + 2^-23], never
    /// NaN, as the vector code requires).
    #[inline(always)]
    pub fn quantize_scaled(&self, values: &[f32], scale: f32, codes: &mut [u8]) {
        let codes = &mut codes[..values.len()];
        let done = quant8_simd::quantize(self, values, scale, codes);
        for (c, &v) in codes[done..].iter_mut().zip(&values[done..]) {
            *c = self.code32(v * scale) as u8;
        }
    }

    /// Dequantize one block: `out[i] = map[codes[i]] * absmax`.
    #[inline(always)]
    pub fn dequantize_block(&self, codes: &[u8], absmax: f32, out: &mut [f32]) {
        let n = out.len().min(codes.len());
        let (codes, out) = (&codes[..n], &mut out[..n]);
        let done = quant8_simd::dequantize(self, codes, absmax, out);
        for (o, &c) in out[done..].iter_mut().zip(&codes[done..]) {
            *o = self.map[usize::from(c)] * absmax;
        }
    }
}

/// The normalized value of `value` in a block whose absmax is `absmax` (see the module docs):
/// `value * (1 / absmax)` for a normal absmax, `value / absmax` for a subnormal, infinite or NaN
/// one, `value` for 0.
pub fn normalized(value: f32, absmax: f32) -> f32 {
    match Quantizer::block_scale(absmax) {
        Some(scale) => value * scale,
        None if absmax == 0.0 => value,
        None => value / absmax,
    }
}

/// The smallest float32 whose bucket is `b`.
fn bucket_start(b: usize) -> f32 {
    let b = b as u32;
    if b >= SPAN {
        let magnitude = b - SPAN;
        if magnitude == 0 {
            0.0
        } else {
            f32::from_bits((magnitude + LOW) << 16)
        }
    } else {
        // Negative side: the bucket holds -|x| for |x| in [start of magnitude, next magnitude);
        // its smallest element is just above -(next magnitude start), or -inf for the top one.
        let magnitude = SPAN - 1 - b;
        if magnitude + LOW >= HIGH {
            f32::NEG_INFINITY
        } else {
            let next = f32::from_bits((magnitude + LOW + 1) << 16);
            f32::from_bits((-next).to_bits() - 1)
        }
    }
}

/// `max |x|` over `values`, NaN if any value is NaN: the maximum of the magnitudes' bit patterns
/// (integer order equals float order for magnitudes, and NaN patterns exceed infinity).
#[inline(always)]
pub fn absmax(values: &[f32]) -> f32 {
    let mut acc = 0u32;
    for &v in values {
        acc = acc.max(v.to_bits() & 0x7fff_ffff);
    }
    f32::from_bits(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(map: &[f32; 256], x: f32) -> f64 {
        map.iter()
            .map(|&m| (f64::from(m) - f64::from(x)).abs())
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn maps_have_the_dynamic_structure() {
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let map = dynamic_map(kind);
            assert!(
                map.windows(2).all(|w| w[0] < w[1]),
                "{kind:?} sorted, distinct"
            );
            assert_eq!(map[255], 1.0);
            assert!(map.contains(&0.0));
            if kind == QuantMap::Signed {
                assert!((map[0] + 0.992_968_75).abs() < 1e-6);
                assert_eq!(map[127], 0.0);
            } else {
                assert_eq!(map[0], 0.0);
                assert!((map[1] - 0.325e-6).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn code_is_nearest_by_brute_force() {
        for kind in [QuantMap::Signed, QuantMap::Unsigned] {
            let q = Quantizer::get(kind);
            let mut xs: Vec<f32> = vec![0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 2.5, -2.5];
            for &t in &q.thresholds[..255] {
                let below = f32::from_bits(if t > 0.0 {
                    t.to_bits() - 1
                } else if t < 0.0 {
                    t.to_bits() + 1
                } else {
                    0x8000_0001
                });
                xs.extend([t, below]);
            }
            let mut state = 12345u64;
            for _ in 0..20000 {
                state = super::super::hash::splitmix64(state);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                let e = ((state >> 8) % 30) as i32;
                xs.push((u * 2.0 - 1.0) * 2f32.powi(-e));
            }
            for x in xs {
                let c = q.code(x);
                let got = (f64::from(q.map[usize::from(c)]) - f64::from(x)).abs();
                assert_eq!(got, brute_force(&q.map, x), "{kind:?} x={x:e} code={c}");
                let count = q.thresholds[..255].iter().filter(|&&t| t <= x).count();
                assert_eq!(usize::from(c), count, "{kind:?} x={x:e}");
            }
            assert_eq!(q.code(f32::NAN), 255);
        }
    }

    #[test]
    fn block_round_trip_and_zero_block() {
        let q = Quantizer::get(QuantMap::Signed);
        let values: Vec<f32> = (0..BLOCK).map(|i| (i as f32 - 100.0) * 0.01).collect();
        let mut codes = vec![0u8; BLOCK];
        let absmax = q.quantize_block(&values, &mut codes);
        assert_eq!(absmax, 1.55);
        let mut back = vec![0f32; BLOCK];
        q.dequantize_block(&codes, absmax, &mut back);
        assert_eq!(back[255], 1.55);
        for (v, b) in values.iter().zip(&back) {
            assert!((v - b).abs() <= 0.02 * absmax, "{v} {b}");
        }
        let zeros = [0f32; 7];
        let absmax = q.quantize_block(&zeros, &mut codes[..7]);
        assert_eq!(absmax, 0.0);
        assert!(codes[..7].iter().all(|&c| c == 127));
        assert!(absmax_of_nan_is_nan());
    }

    fn absmax_of_nan_is_nan() -> bool {
        absmax(&[1.0, f32::NAN, -3.0]).is_nan() && absmax(&[1.0, -3.0, 2.0]) == 3.0
    }
}

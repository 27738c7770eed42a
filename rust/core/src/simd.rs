//! Run-time selection of the instruction set a kernel is compiled for.
//!
//! Every kernel is one generic body (a [`Kernel`]) that is instantiated once per level behind a
//! `#[target_feature]` trampoline; LLVM vectorizes the body for that level. The level is detected
//! once; the environment variable `FERROPTIM_SIMD` (`avx512`, `avx2`, `sse2`, `neon`, `scalar`)
//! forces a lower one, and [`set_level`] changes it at run time (tests use it to cover every path).
//! Because no level contracts multiply-adds, all levels produce identical bits.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level a kernel can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// x86-64 with AVX-512F/BW/VL/DQ (512-bit vectors), plus AVX2 and FMA.
    Avx512,
    /// x86-64 with AVX2 and FMA (256-bit vectors).
    Avx2,
    /// The x86-64 baseline (SSE2, 128-bit vectors).
    Sse2,
    /// The aarch64 baseline (NEON, 128-bit vectors).
    Neon,
    /// Portable code for any other target.
    Scalar,
}

impl SimdLevel {
    /// Every level, best first.
    pub const ALL: [SimdLevel; 5] = [
        Self::Avx512,
        Self::Avx2,
        Self::Sse2,
        Self::Neon,
        Self::Scalar,
    ];

    /// The lower-case name used by `FERROPTIM_SIMD` and `ferroptim.simd_level()`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Sse2 => "sse2",
            Self::Neon => "neon",
            Self::Scalar => "scalar",
        }
    }

    /// Parse a level name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this machine can run code compiled for this level.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && Self::Avx2.is_supported()
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Sse2 => true,
            #[cfg(target_arch = "aarch64")]
            Self::Neon => true,
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            Self::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Whether code for this level has a fused multiply-add instruction (`f64::mul_add` is one
    /// instruction there, a library call elsewhere).
    pub fn has_fused_multiply_add(self) -> bool {
        matches!(self, Self::Avx512 | Self::Avx2 | Self::Neon)
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// Levels this machine supports, best first.
pub fn supported_levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

/// The best level this machine supports.
pub fn detected_level() -> SimdLevel {
    SimdLevel::ALL
        .into_iter()
        .find(|l| l.is_supported())
        .unwrap_or(SimdLevel::Scalar)
}

/// 0 = not chosen yet; otherwise `SimdLevel::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The level kernels run at: `FERROPTIM_SIMD` if set to a supported level, else the detected one.
pub fn level() -> SimdLevel {
    if let Some(level) = SimdLevel::from_code(ACTIVE.load(Ordering::Relaxed)) {
        return level;
    }
    let chosen = std::env::var("FERROPTIM_SIMD")
        .ok()
        .and_then(|name| SimdLevel::parse(&name))
        .filter(|l| l.is_supported())
        .unwrap_or_else(detected_level);
    ACTIVE.store(chosen.code(), Ordering::Relaxed);
    chosen
}

/// Force a level for all later kernel calls. Fails (returning `false`) if the machine lacks it.
pub fn set_level(level: SimdLevel) -> bool {
    if !level.is_supported() {
        return false;
    }
    ACTIVE.store(level.code(), Ordering::Relaxed);
    true
}

/// A kernel body: one generic function that [`dispatch`] compiles per instruction set.
/// Implementations mark `run` `#[inline(always)]` so it is inlined into each trampoline.
pub trait Kernel {
    /// Do the work.
    fn run(self);
}

/// Run `kernel` with the code generated for the active level.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // Safety: `level()` only returns levels that `is_supported` confirmed on this CPU.
        SimdLevel::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // Safety: as above.
        SimdLevel::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512<K: Kernel>(kernel: K) {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(kernel: K) {
    kernel.run()
}

/// Ask for every cache line of `data` to be brought into L2 ahead of use (a hint: no effect on
/// results, never faults). Kernels that read from memory ask for the data of their next piece
/// while they compute on this one, so memory stays busy; other targets ignore it.
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T]) {
    prefetch_to::<2, T>(data)
}

/// [`prefetch`] into L1 (and L2), for data needed a few KB ahead of the loop.
#[inline(always)]
pub(crate) fn prefetch_l1<T>(data: &[T]) {
    prefetch_to::<3, T>(data)
}

/// Prefetch every cache line of `data` with x86's hint `HINT` (3: `_MM_HINT_T0`, into L1;
/// 2: `_MM_HINT_T1`, into L2).
#[inline(always)]
fn prefetch_to<const HINT: i32, T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::_mm_prefetch;
        let p = data.as_ptr().cast::<i8>();
        let mut offset = 0;
        while offset < core::mem::size_of_val(data) {
            // Safety: the address lies inside `data`; a prefetch never faults or changes state.
            unsafe { _mm_prefetch::<HINT>(p.add(offset)) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
            assert_eq!(SimdLevel::from_code(l.code()), Some(l));
        }
        assert_eq!(SimdLevel::parse("AVX2 "), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse("sse4"), None);
    }

    #[test]
    fn detected_is_supported() {
        assert!(detected_level().is_supported());
        assert!(supported_levels().contains(&detected_level()));
    }
}

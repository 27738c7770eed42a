//! The element types the kernels run on: `f32` and `f64`.
//!
//! Every operation here is a single IEEE-754 operation rounded to nearest, so a kernel gives the same
//! bits at every SIMD level and the same bits as NumPy doing the same operations in the same order.
//! (Rust never contracts `a * b + c` into a fused multiply-add on its own.)

use core::ops::{Add, Div, Mul, Neg, Sub};

/// A floating-point element type the kernels are instantiated for: `f32` and `f64` only (the
/// trait is sealed by its supertrait `bits::XorBits`, which the crate keeps to itself).
pub trait Real:
    bits::XorBits
    + Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    /// 0.0
    const ZERO: Self;
    /// 1.0
    const ONE: Self;
    /// Bytes per element.
    const BYTES: usize;
    /// Name as NumPy spells the dtype.
    const NAME: &'static str;
    /// Round a host (f64) scalar to this type.
    fn from_f64(x: f64) -> Self;
    /// Widen to f64 (exact).
    fn to_f64(self) -> f64;
    /// Correctly rounded square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;

    /// NaN-propagating maximum, as `torch.maximum` / `np.maximum`: NaN if either input is NaN.
    #[inline(always)]
    fn maximum(self, other: Self) -> Self {
        // `self != self` is the NaN test; written so that it lowers to compare + blend.
        #[allow(clippy::eq_op)]
        let self_nan = self != self;
        if self_nan || self > other {
            self
        } else {
            other
        }
    }

    /// Sign as `np.sign` / `jnp.sign`: -1, +1, zeros and NaN returned unchanged.
    #[inline(always)]
    fn sign(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            -Self::ONE
        } else {
            self
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $bits:ty, $name:literal) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const BYTES: usize = core::mem::size_of::<$t>();
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
        }

        impl bits::XorBits for $t {
            #[inline(always)]
            fn xor_bits(self, other: Self) -> Self {
                <$t>::from_bits(self.to_bits() ^ other.to_bits())
            }
        }
    };
}

/// Bit-level operations the crate needs on its element types but does not offer to users.
pub(crate) mod bits {
    /// Exclusive-or of the bit patterns: the roofline kernels' one operation per element, which
    /// keeps every load live without any floating-point work. Also seals [`Real`](super::Real):
    /// no other crate can name this trait, so none can implement `Real`.
    pub trait XorBits: Sized {
        fn xor_bits(self, other: Self) -> Self;
    }
}

impl_real!(f32, u32, "float32");
impl_real!(f64, u64, "float64");

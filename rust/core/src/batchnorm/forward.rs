//! The fused normalize + affine forward pass.

use super::elementwise::{run_spans, Coeffs, Span, Stretches};
use super::{Layout, Normalization};
use crate::error::Error;
use crate::real::Real;
use crate::simd::{dispatch, Kernel};

/// `y = (x - mean[k]) * (invstd[k]*weight[k]) + bias[k]` for every element of channel `k`, in f64
/// rounded once to `T`; one read of `x`, one write of `y`. Training and eval differ only in the
/// statistics passed (batch or running) and in the check `n*s > 1` for training.
///
/// Errors: `x` or `y` not `n*c*s` long, per-channel slices not `c` long, training with `n*s <= 1`.
pub fn batch_norm_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    layout: Layout,
    norm: &Normalization<'_>,
) -> Result<(), Error> {
    layout.check_len("x", x.len())?;
    layout.check_len("y", y.len())?;
    norm.check(&layout)?;
    if layout.is_empty() {
        return Ok(());
    }
    let coeffs = Coeffs::for_layout(layout);
    let mean = coeffs.lay_out(layout, |k| norm.mean[k]);
    let scale = coeffs.lay_out(layout, |k| norm.invstd[k] * norm.weight(k));
    let shift = coeffs.lay_out(layout, |k| norm.bias(k));
    let span = Span {
        start: 0,
        a: x,
        b: &[],
        out: y,
    };
    run_spans(span, |piece| {
        dispatch(Forward {
            piece,
            layout,
            coeffs,
            mean: &mean,
            scale: &scale,
            shift: &shift,
        })
    });
    Ok(())
}

struct Forward<'a, 'c, T> {
    piece: Span<'a, T>,
    layout: Layout,
    coeffs: Coeffs,
    mean: &'c [f64],
    scale: &'c [f64],
    shift: &'c [f64],
}

impl<T: Real> Kernel for Forward<'_, '_, T> {
    #[inline(always)]
    fn run(self) {
        let Span {
            start, a: x, out, ..
        } = self.piece;
        let (mean, scale, shift) = (self.mean, self.scale, self.shift);
        for (lo, hi, idx) in Stretches::new(start, out.len(), self.layout, self.coeffs) {
            let (x, y) = (&x[lo..hi], &mut out[lo..hi]);
            match self.coeffs {
                Coeffs::Columns(_) => {
                    let n = hi - lo;
                    let (m, k, b) = (&mean[idx..][..n], &scale[idx..][..n], &shift[idx..][..n]);
                    for ((((y, &x), &m), &k), &b) in y.iter_mut().zip(x).zip(m).zip(k).zip(b) {
                        *y = T::from_f64((x.to_f64() - m) * k + b);
                    }
                }
                Coeffs::Runs => {
                    let (m, k, b) = (mean[idx], scale[idx], shift[idx]);
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = T::from_f64((x.to_f64() - m) * k + b);
                    }
                }
            }
        }
    }
}

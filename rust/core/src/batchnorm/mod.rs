//! Batch normalization (torch.nn.BatchNorm1d / BatchNorm2d): per-channel statistics, the
//! running-statistics update, and fused forward and backward passes.
//!
//! An input of shape `(N, C)`, `(N, C, L)` or `(N, C, H, W)` is viewed as a [`Layout`] `(n, c, s)`
//! with `s` the product of the spatial dimensions (1 for 2-d input): channel `k` holds the
//! `n * s` elements `x[i, k, j]`, `n` runs of `s` contiguous elements.
//!
//! - [`batch_stats`]: per-channel `mean` and *biased* `var = sum((x - mean)^2) / (n*s)`, in f64.
//! - [`update_running`]: `running_mean = (1-momentum)*running_mean + momentum*mean`, and
//!   `running_var` likewise with the unbiased variance `var * (m/(m-1))`, `m = n*s`.
//! - [`inv_std`]: `invstd = 1/sqrt(var + eps)`.
//! - [`batch_norm_forward`]: `y = (x - mean) * (invstd*weight) + bias`, one pass.
//! - [`batch_norm_backward`]: in training, with `m = n*s` values per channel and
//!   `xhat = (x - mean)*invstd`: `dbias = sum(dy)`, `dweight = sum(dy*xhat)`,
//!   `dx = ((m*dy - dbias) - xhat*dweight) * (weight*invstd/m)`; in eval (running statistics,
//!   which do not depend on `x`), `dx = dy * (weight*invstd)`. One reduction pass, one
//!   elementwise pass.
//!
//! Numerics. All arithmetic is in f64 whatever the element type; elementwise results are rounded
//! once to the element type. Statistics read the input once: per fixed chunk (a block of at most
//! 131,072 elements, per column, or a segment of one channel), the sums `s1 = sum(x - K)` and
//! `s2 = sum((x - K)^2)` about a shift `K` (0, or the chunk's estimated mean where that is more
//! than an estimated standard deviation from 0) give its mean `K + s1/nb` and
//! `m2 = s2 - s1*(s1/nb)` (the shifts and the error bound are in `stats.rs`), and the chunks are
//! combined with Chan's formula in a fixed order. Sums use explicit fixed-lane accumulators. So
//! the results depend only on the shape and the data: the same bits at every SIMD level and thread
//! count. A float32 input with mean 1e4 and unit variance gets its variance to about 1e-12
//! relative.
//!
//! Errors ([`Error`]): an array length that does not fit the layout ([`Error::ElementCount`]), a
//! per-channel array of the wrong length ([`Error::ChannelCount`]), training with `n*s <= 1`
//! ([`Error::TooFewValues`], torch's "Expected more than 1 value per channel when training"),
//! `eps < 0` or `momentum` outside `[0, 1]` ([`Error::InvalidHyperparameter`]). Nothing is written
//! when an error is returned.

mod backward;
mod elementwise;
mod forward;
mod plan;
mod stats;
#[cfg(test)]
mod tests;

use crate::error::Error;

pub use backward::batch_norm_backward;
pub use forward::batch_norm_forward;
pub use stats::{batch_stats, inv_std, update_running};

/// The `(n, c, s)` view of a channels-first input: `n` samples, `c` channels, `s` contiguous
/// elements per sample and channel (the product of the spatial dimensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Batch size (axis 0).
    pub n: usize,
    /// Channels (axis 1).
    pub c: usize,
    /// Elements per (sample, channel): the product of the axes after the channel axis.
    pub s: usize,
}

impl Layout {
    /// The layout `(n, c, s)`.
    pub fn new(n: usize, c: usize, s: usize) -> Self {
        Layout { n, c, s }
    }

    /// The layout of a C-contiguous array of shape `(N, C, *spatial)` (at least 2 axes).
    pub fn from_shape(shape: &[usize]) -> Option<Self> {
        match shape {
            [n, c, rest @ ..] => Some(Layout::new(*n, *c, rest.iter().product())),
            _ => None,
        }
    }

    /// Total number of elements, `n * c * s`.
    pub fn len(&self) -> usize {
        self.n * self.c * self.s
    }

    /// Whether the input has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel, `n * s`.
    pub fn count(&self) -> usize {
        self.n * self.s
    }

    /// Elements per sample, `c * s`.
    pub(crate) fn row(&self) -> usize {
        self.c * self.s
    }

    /// Refuse training with at most one value per channel (torch: "Expected more than 1 value per
    /// channel when training").
    pub fn check_training(&self) -> Result<(), Error> {
        if self.count() > 1 || self.c == 0 {
            Ok(())
        } else {
            Err(Error::TooFewValues {
                per_channel: self.count(),
                channels: self.c,
            })
        }
    }

    pub(crate) fn check_len(&self, arg: &'static str, len: usize) -> Result<(), Error> {
        if len == self.len() {
            Ok(())
        } else {
            Err(Error::ElementCount {
                arg,
                got: len,
                expected: self.len(),
            })
        }
    }

    pub(crate) fn check_channels(&self, arg: &'static str, len: usize) -> Result<(), Error> {
        check_channels(arg, len, self.c)
    }
}

pub(crate) fn check_channels(arg: &'static str, got: usize, expected: usize) -> Result<(), Error> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::ChannelCount { arg, got, expected })
    }
}

/// How an input is normalized: per-channel statistics (batch statistics in training, running
/// statistics in eval), the optional affine parameters, and the mode. All per-channel slices have
/// `c` entries; a missing weight acts as 1 and a missing bias as 0 (`affine=False`).
#[derive(Clone, Copy, Debug)]
pub struct Normalization<'a> {
    /// Per-channel mean subtracted.
    pub mean: &'a [f64],
    /// Per-channel `1/sqrt(var + eps)` ([`inv_std`]).
    pub invstd: &'a [f64],
    /// Per-channel scale (`None`: 1).
    pub weight: Option<&'a [f64]>,
    /// Per-channel shift (`None`: 0). Not used by the backward pass.
    pub bias: Option<&'a [f64]>,
    /// Whether `mean` and `invstd` are this batch's statistics (training) or running statistics
    /// (eval). Training needs more than one value per channel, and its backward pass
    /// differentiates through the statistics.
    pub training: bool,
}

impl Normalization<'_> {
    fn check(&self, layout: &Layout) -> Result<(), Error> {
        layout.check_channels("mean", self.mean.len())?;
        layout.check_channels("invstd", self.invstd.len())?;
        if let Some(w) = self.weight {
            layout.check_channels("weight", w.len())?;
        }
        if let Some(b) = self.bias {
            layout.check_channels("bias", b.len())?;
        }
        if self.training {
            layout.check_training()?;
        }
        Ok(())
    }

    /// `weight[k]`, or 1.
    fn weight(&self, k: usize) -> f64 {
        self.weight.map_or(1.0, |w| w[k])
    }

    /// `bias[k]`, or 0.
    fn bias(&self, k: usize) -> f64 {
        self.bias.map_or(0.0, |b| b[k])
    }
}

//! Adagrad (torch.optim.Adagrad).
//!
//! Per element, with `t` the step after increment:
//! ```text
//! clr = lr / (1 + (t - 1) * lr_decay)
//! sum = sum + g * g
//! p = p - clr * (g / (sqrt(sum) + eps))
//! ```
//! State: `sum` (start it at `initial_accumulator_value`).

use crate::clip::GradClip;
use crate::error::{check_min, Error};
use crate::fused::{run, Decay, GradPrep, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// Adagrad hyperparameters; `Default` gives torch.optim.Adagrad's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AdagradConfig {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl AdagradConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_min("lr_decay", self.lr_decay, 0.0, "lr_decay >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")?;
        check_min("eps", self.eps, 0.0, "eps >= 0")
    }
}

#[derive(Clone, Copy)]
struct AdagradOp<T> {
    clr: T,
    eps: T,
}

impl<T: Real> Update<T> for AdagradOp<T> {
    const STATES: usize = 1;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let sum = s[0] + g * g;
        s[0] = sum;
        p - self.clr * (g / (sum.sqrt() + self.eps))
    }
}

/// One Adagrad step on every tensor. Each tensor's step count `t` must already be incremented.
pub fn adagrad_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &AdagradConfig,
) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, false, cfg.lr),
        &cfg.grad_clip,
    );
    run(tensors, prep, |_, t| AdagradOp {
        clr: T::from_f64(cfg.lr / (1.0 + (t as f64 - 1.0) * cfg.lr_decay)),
        eps: T::from_f64(cfg.eps),
    })
}

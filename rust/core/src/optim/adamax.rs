//! Adamax (torch.optim.Adamax).
//!
//! Per element, with `t` the step after increment:
//! ```text
//! m = lerp(m, g, 1 - beta1)
//! u = maximum(u * beta2, abs(g) + eps)
//! p = p - (lr / (1 - beta1^t)) * (m / u)
//! ```
//! State, in order: `exp_avg`, `exp_inf`.

use crate::clip::GradClip;
use crate::error::{check_min, check_unit, Error};
use crate::fused::{run, Decay, GradPrep, Lerp, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// Adamax hyperparameters; `Default` gives torch.optim.Adamax's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamaxConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        AdamaxConfig {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl AdamaxConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_unit("beta1", self.beta1)?;
        check_unit("beta2", self.beta2)?;
        check_min("eps", self.eps, 0.0, "eps >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")
    }
}

#[derive(Clone, Copy)]
struct AdamaxOp<T> {
    lerp: Lerp<T>,
    beta2: T,
    eps: T,
    clr: T,
}

impl<T: Real> Update<T> for AdamaxOp<T> {
    const STATES: usize = 2;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let m = self.lerp.apply(s[0], g);
        let u = (s[1] * self.beta2).maximum(g.abs() + self.eps);
        s[0] = m;
        s[1] = u;
        p - self.clr * (m / u)
    }
}

/// One Adamax step on every tensor. Each tensor's step count `t` must already be incremented.
pub fn adamax_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &AdamaxConfig,
) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, false, cfg.lr),
        &cfg.grad_clip,
    );
    run(tensors, prep, |_, t| AdamaxOp {
        lerp: Lerp::new(1.0 - cfg.beta1),
        beta2: T::from_f64(cfg.beta2),
        eps: T::from_f64(cfg.eps),
        clr: T::from_f64(cfg.lr / (1.0 - cfg.beta1.powf(t as f64))),
    })
}

//! Lion (Chen et al. 2023), matching optax.lion's defaults.
//!
//! Per element:
//! ```text
//! c = beta1 * m + (1 - beta1) * g
//! p = p * (1 - lr * weight_decay) - lr * sign(c)          (sign(0) = 0)
//! m = beta2 * m + (1 - beta2) * g
//! ```
//! State: `exp_avg`.

use crate::clip::GradClip;
use crate::error::{check_min, check_unit, Error};
use crate::fused::{Decay, GradPrep, Target, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// Lion hyperparameters; `Default` gives optax.lion's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LionConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for LionConfig {
    fn default() -> Self {
        LionConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl LionConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_unit("beta1", self.beta1)?;
        check_unit("beta2", self.beta2)?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")
    }
}

#[derive(Clone, Copy)]
struct LionOp<T> {
    lr: T,
    beta1: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
}

impl<T: Real> Update<T> for LionOp<T> {
    const STATES: usize = 1;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let m = s[0];
        let c = self.beta1 * m + self.one_minus_beta1 * g;
        s[0] = self.beta2 * m + self.one_minus_beta2 * g;
        p - self.lr * c.sign()
    }
}

/// One Lion step on every tensor.
pub fn lion_step<T: Real>(tensors: &mut [TensorRef<'_, T>], cfg: &LionConfig) -> Result<(), Error> {
    lion_on(tensors, cfg)
}

/// One Lion step on every tensor of `target` (float or low-precision state).
pub(crate) fn lion_on<T: Real>(target: impl Target<T>, cfg: &LionConfig) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, true, cfg.lr),
        &cfg.grad_clip,
    );
    let op = LionOp {
        lr: T::from_f64(cfg.lr),
        beta1: T::from_f64(cfg.beta1),
        one_minus_beta1: T::from_f64(1.0 - cfg.beta1),
        beta2: T::from_f64(cfg.beta2),
        one_minus_beta2: T::from_f64(1.0 - cfg.beta2),
    };
    target.apply(prep, |_, _| op)
}

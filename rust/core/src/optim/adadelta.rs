//! Adadelta (torch.optim.Adadelta).
//!
//! Per element:
//! ```text
//! sq = sq * rho + ((1 - rho) * g) * g
//! delta = (sqrt(acc + eps) / sqrt(sq + eps)) * g
//! acc = acc * rho + ((1 - rho) * delta) * delta
//! p = p - lr * delta
//! ```
//! State, in order: `square_avg`, `acc_delta`.

use crate::clip::GradClip;
use crate::error::{check_min, Error};
use crate::fused::{run, Decay, GradPrep, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// Adadelta hyperparameters; `Default` gives torch.optim.Adadelta's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AdadeltaConfig {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        AdadeltaConfig {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl AdadeltaConfig {
    /// Check every hyperparameter's range (rho in [0, 1], as torch).
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::InvalidHyperparameter {
                name: "rho",
                value: self.rho,
                expected: "0 <= rho <= 1",
            });
        }
        check_min("eps", self.eps, 0.0, "eps >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")
    }
}

#[derive(Clone, Copy)]
struct AdadeltaOp<T> {
    lr: T,
    rho: T,
    one_minus_rho: T,
    eps: T,
}

impl<T: Real> Update<T> for AdadeltaOp<T> {
    const STATES: usize = 2;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let sq = s[0] * self.rho + (self.one_minus_rho * g) * g;
        let delta = ((s[1] + self.eps).sqrt() / (sq + self.eps).sqrt()) * g;
        s[0] = sq;
        s[1] = s[1] * self.rho + (self.one_minus_rho * delta) * delta;
        p - self.lr * delta
    }
}

/// One Adadelta step on every tensor.
pub fn adadelta_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &AdadeltaConfig,
) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, false, cfg.lr),
        &cfg.grad_clip,
    );
    let op = AdadeltaOp {
        lr: T::from_f64(cfg.lr),
        rho: T::from_f64(cfg.rho),
        one_minus_rho: T::from_f64(1.0 - cfg.rho),
        eps: T::from_f64(cfg.eps),
    };
    run(tensors, prep, |_, _| op)
}

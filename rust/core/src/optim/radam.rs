//! RAdam (torch.optim.RAdam).
//!
//! Per element, with `t` the step after increment, `bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t`,
//! `rho_inf = 2 / (1 - beta2) - 1`, `rho_t = rho_inf - 2 t beta2^t / bc2`:
//! ```text
//! m, v as Adam
//! rho_t > 5:  p = p - (((m * (1 / bc1)) * lr) * (sqrt(bc2) / (sqrt(v) + eps))) * rect
//!             rect = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//! otherwise:  p = p - (m * (1 / bc1)) * lr
//! ```
//! `1 / bc1` is computed once on the host (torch divides by `bc1`: within an ulp).
//!
//! State, in order: `exp_avg`, `exp_avg_sq`.

use crate::clip::GradClip;
use crate::error::{check_min, check_unit, Error};
use crate::fused::{run, Decay, GradPrep, Lerp, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// RAdam hyperparameters; `Default` gives torch.optim.RAdam's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RadamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    pub decoupled_weight_decay: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for RadamConfig {
    fn default() -> Self {
        RadamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            decoupled_weight_decay: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl RadamConfig {
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
struct RadamOp<T> {
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    inv_bias_correction1: T,
    lr: T,
    bias_correction2_sqrt: T,
    eps: T,
    rect: T,
    rectified: bool,
}

impl<T: Real> RadamOp<T> {
    fn new(cfg: &RadamConfig, step: u64) -> Self {
        let t = step as f64;
        let bias_correction1 = 1.0 - cfg.beta1.powf(t);
        let bias_correction2 = 1.0 - cfg.beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - cfg.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * cfg.beta2.powf(t) / bias_correction2;
        let rectified = rho_t > 5.0;
        let rect = if rectified {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt()
        } else {
            1.0
        };
        RadamOp {
            lerp: Lerp::new(1.0 - cfg.beta1),
            beta2: T::from_f64(cfg.beta2),
            one_minus_beta2: T::from_f64(1.0 - cfg.beta2),
            inv_bias_correction1: T::from_f64(1.0 / bias_correction1),
            lr: T::from_f64(cfg.lr),
            bias_correction2_sqrt: T::from_f64(bias_correction2.sqrt()),
            eps: T::from_f64(cfg.eps),
            rect: T::from_f64(rect),
            rectified,
        }
    }
}

impl<T: Real> Update<T> for RadamOp<T> {
    const STATES: usize = 2;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let m = self.lerp.apply(s[0], g);
        let v = s[1] * self.beta2 + (self.one_minus_beta2 * g) * g;
        s[0] = m;
        s[1] = v;
        let corrected = (m * self.inv_bias_correction1) * self.lr;
        if self.rectified {
            let adaptive = self.bias_correction2_sqrt / (v.sqrt() + self.eps);
            p - (corrected * adaptive) * self.rect
        } else {
            p - corrected
        }
    }
}

/// One RAdam step on every tensor. Each tensor's step count `t` must already be incremented.
pub fn radam_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &RadamConfig,
) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, cfg.decoupled_weight_decay, cfg.lr),
        &cfg.grad_clip,
    );
    run(tensors, prep, |_, t| RadamOp::new(cfg, t))
}

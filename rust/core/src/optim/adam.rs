//! Adam, AdamW and AMSGrad (torch.optim.Adam / AdamW, single-tensor semantics).
//!
//! Per element, with `t` the step after increment:
//! ```text
//! m = lerp(m, g, 1 - beta1)
//! v = v * beta2 + ((1 - beta2) * g) * g
//! vmax = maximum(vmax, v)                                  (amsgrad; vmax replaces v below)
//! denom = sqrt(v) * (1 / sqrt(1 - beta2^t)) + eps
//! p = p - (lr / (1 - beta1^t)) * (m / denom)
//! ```
//! The reciprocal of `sqrt(1 - beta2^t)` is computed once on the host, so each element costs one
//! division and one square root; torch divides by `sqrt(1 - beta2^t)`, which differs by at most an
//! ulp in `denom`.
//!
//! State, in order: `exp_avg`, `exp_avg_sq`, and `max_exp_avg_sq` with amsgrad.

use crate::clip::GradClip;
use crate::error::{check_min, check_unit, Error};
use crate::fused::{Decay, GradPrep, Lerp, Target, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// Adam hyperparameters; `Default` gives torch.optim.Adam's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// AdamW: `p *= 1 - lr * weight_decay` instead of adding `weight_decay * p` to the gradient.
    pub decoupled_weight_decay: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl AdamConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_unit("beta1", self.beta1)?;
        check_unit("beta2", self.beta2)?;
        check_min("eps", self.eps, 0.0, "eps >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")
    }

    /// State arrays per tensor.
    pub fn state_count(&self) -> usize {
        if self.amsgrad {
            3
        } else {
            2
        }
    }
}

#[derive(Clone, Copy)]
struct AdamOp<T, const AMSGRAD: bool> {
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    inv_bias_correction2_sqrt: T,
    eps: T,
    step_size: T,
}

impl<T: Real, const AMSGRAD: bool> AdamOp<T, AMSGRAD> {
    fn new(cfg: &AdamConfig, step: u64) -> Self {
        let t = step as f64;
        let bias_correction1 = 1.0 - cfg.beta1.powf(t);
        let bias_correction2 = 1.0 - cfg.beta2.powf(t);
        AdamOp {
            lerp: Lerp::new(1.0 - cfg.beta1),
            beta2: T::from_f64(cfg.beta2),
            one_minus_beta2: T::from_f64(1.0 - cfg.beta2),
            inv_bias_correction2_sqrt: T::from_f64(1.0 / bias_correction2.sqrt()),
            eps: T::from_f64(cfg.eps),
            step_size: T::from_f64(cfg.lr / bias_correction1),
        }
    }
}

impl<T: Real, const AMSGRAD: bool> Update<T> for AdamOp<T, AMSGRAD> {
    const STATES: usize = 2 + AMSGRAD as usize;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let m = self.lerp.apply(s[0], g);
        let v = s[1] * self.beta2 + (self.one_minus_beta2 * g) * g;
        s[0] = m;
        s[1] = v;
        let v = if AMSGRAD {
            s[2] = s[2].maximum(v);
            s[2]
        } else {
            v
        };
        let denom = v.sqrt() * self.inv_bias_correction2_sqrt + self.eps;
        p - self.step_size * (m / denom)
    }
}

/// One Adam step on every tensor. Each tensor's step count `t` must already be incremented.
pub fn adam_step<T: Real>(tensors: &mut [TensorRef<'_, T>], cfg: &AdamConfig) -> Result<(), Error> {
    adam_on(tensors, cfg)
}

/// One Adam step on every tensor of `target` (float or low-precision state).
pub(crate) fn adam_on<T: Real>(target: impl Target<T>, cfg: &AdamConfig) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, cfg.decoupled_weight_decay, cfg.lr),
        &cfg.grad_clip,
    );
    if cfg.amsgrad {
        target.apply(prep, |_, t| AdamOp::<T, true>::new(cfg, t))
    } else {
        target.apply(prep, |_, t| AdamOp::<T, false>::new(cfg, t))
    }
}

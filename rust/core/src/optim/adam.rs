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

use crate::error::Error;
use crate::fused::{AdamMoments, Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// Adam hyperparameters; `Default` gives torch.optim.Adam's defaults.
    pub struct AdamConfig {
        lr: f64 = 1e-3 => non_negative,
        beta1: f64 = 0.9 => unit,
        beta2: f64 = 0.999 => unit,
        eps: f64 = 1e-8 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        amsgrad: bool = false => flag,
        maximize: bool = false => flag,
        /// AdamW: `p *= 1 - lr * weight_decay` instead of adding `weight_decay * p` to the gradient.
        decoupled_weight_decay: bool = false => flag,
    }
}

impl Optimizer for AdamConfig {
    const STATES: &'static [StateList] = &[
        StateList::always("exp_avgs"),
        StateList::always("exp_avg_sqs"),
        StateList::when("max_exp_avg_sqs", "amsgrad=True"),
    ];

    fn uses_state(&self, k: usize) -> bool {
        k < 2 || self.amsgrad
    }

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(self.decoupled_weight_decay)?;
        if self.amsgrad {
            target.apply(prep, |_, t| AdamOp::<T, true>::new(self, t))
        } else {
            target.apply(prep, |_, t| AdamOp::<T, false>::new(self, t))
        }
    }
}

/// Adam's element update at one step (`fused::Update`); `AMSGRAD` adds the third state.
#[derive(Clone, Copy)]
pub struct AdamOp<T, const AMSGRAD: bool> {
    pub(crate) moments: AdamMoments<T>,
    pub(crate) inv_bias_correction2_sqrt: T,
    pub(crate) eps: T,
    pub(crate) step_size: T,
}

impl<T: Real, const AMSGRAD: bool> AdamOp<T, AMSGRAD> {
    fn new(cfg: &AdamConfig, step: u64) -> Self {
        let t = step as f64;
        let bias_correction1 = 1.0 - cfg.beta1.powf(t);
        let bias_correction2 = 1.0 - cfg.beta2.powf(t);
        AdamOp {
            moments: AdamMoments::new(cfg.beta1, cfg.beta2),
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
        let (m, v) = self.moments.update(g, s);
        let v = if AMSGRAD {
            s[2] = s[2].maximum(v);
            s[2]
        } else {
            v
        };
        let denom = v.sqrt() * self.inv_bias_correction2_sqrt + self.eps;
        p - self.step_size * (m / denom)
    }

    fn as_adam(&self) -> Option<AdamOp<T, false>> {
        (!AMSGRAD).then_some(AdamOp {
            moments: self.moments,
            inv_bias_correction2_sqrt: self.inv_bias_correction2_sqrt,
            eps: self.eps,
            step_size: self.step_size,
        })
    }
}

crate::step_function! {
    /// One Adam step on every tensor. Each tensor's step count `t` must already be incremented.
    adam_step: AdamConfig
}

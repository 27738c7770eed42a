//! AdaBelief (Zhuang et al. 2020), as optax.adabelief: Adam whose second moment tracks the
//! squared deviation of the gradient from its moving average (the "belief" in the gradient).
//!
//! Per element, with `t` the step after increment, `bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t`:
//! ```text
//! m = lerp(m, g, 1 - beta1)
//! d = g - m
//! s = s * beta2 + ((1 - beta2) * d) * d + eps_root
//! denom = sqrt(s) * (1 / sqrt(bc2)) + eps
//! p = p - (lr / bc1) * (m / denom)
//! ```
//! optax computes `sqrt(s / bc2)`; the reciprocal square root is taken once on the host, as in
//! [`adam`](super::adam). State, in order: `exp_avg`, `exp_avg_var`.

use crate::error::Error;
use crate::fused::{AdamMoments, Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// AdaBelief hyperparameters; `Default` gives optax.adabelief's defaults (lr 1e-3).
    pub struct AdabeliefConfig {
        lr: f64 = 1e-3 => non_negative,
        beta1: f64 = 0.9 => unit,
        beta2: f64 = 0.999 => unit,
        eps: f64 = 1e-16 => non_negative,
        /// Added to the second moment at every step (optax's `eps_root`).
        eps_root: f64 = 1e-16 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        maximize: bool = false => flag,
        /// `p *= 1 - lr * weight_decay` instead of adding `weight_decay * p` to the gradient.
        decoupled_weight_decay: bool = false => flag,
    }
}

impl Optimizer for AdabeliefConfig {
    const STATES: &'static [StateList] = &[
        StateList::always("exp_avgs"),
        StateList::always("exp_avg_vars"),
    ];

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(self.decoupled_weight_decay)?;
        target.apply(prep, |_, step| {
            let t = step as f64;
            AdabeliefOp {
                moments: AdamMoments::new(self.beta1, self.beta2),
                eps_root: T::from_f64(self.eps_root),
                inv_bias_correction2_sqrt: T::from_f64(1.0 / (1.0 - self.beta2.powf(t)).sqrt()),
                eps: T::from_f64(self.eps),
                step_size: T::from_f64(self.lr / (1.0 - self.beta1.powf(t))),
            }
        })
    }
}

#[derive(Clone, Copy)]
struct AdabeliefOp<T> {
    moments: AdamMoments<T>,
    eps_root: T,
    inv_bias_correction2_sqrt: T,
    eps: T,
    step_size: T,
}

impl<T: Real> Update<T> for AdabeliefOp<T> {
    const STATES: usize = 2;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let m = self.moments.first(s[0], g);
        let v = self.moments.second(s[1], g - m) + self.eps_root;
        s[0] = m;
        s[1] = v;
        let denom = v.sqrt() * self.inv_bias_correction2_sqrt + self.eps;
        p - self.step_size * (m / denom)
    }
}

crate::step_function! {
    /// One AdaBelief step on every tensor. Each tensor's step count `t` must already be incremented.
    adabelief_step: AdabeliefConfig
}

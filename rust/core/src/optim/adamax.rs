//! Adamax (torch.optim.Adamax).
//!
//! Per element, with `t` the step after increment:
//! ```text
//! m = lerp(m, g, 1 - beta1)
//! u = maximum(u * beta2, abs(g) + eps)
//! p = p - (lr / (1 - beta1^t)) * (m / u)
//! ```
//! State, in order: `exp_avg`, `exp_inf`.

use crate::error::Error;
use crate::fused::{Lerp, Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// Adamax hyperparameters; `Default` gives torch.optim.Adamax's defaults.
    pub struct AdamaxConfig {
        lr: f64 = 2e-3 => non_negative,
        beta1: f64 = 0.9 => unit,
        beta2: f64 = 0.999 => unit,
        eps: f64 = 1e-8 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        maximize: bool = false => flag,
    }
}

impl Optimizer for AdamaxConfig {
    const STATES: &'static [StateList] =
        &[StateList::always("exp_avgs"), StateList::always("exp_infs")];

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(false)?;
        target.apply(prep, |_, t| AdamaxOp {
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: T::from_f64(self.beta2),
            eps: T::from_f64(self.eps),
            clr: T::from_f64(self.lr / (1.0 - self.beta1.powf(t as f64))),
        })
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

crate::step_function! {
    /// One Adamax step on every tensor. Each tensor's step count `t` must already be incremented.
    adamax_step: AdamaxConfig
}

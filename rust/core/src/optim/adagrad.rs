//! Adagrad (torch.optim.Adagrad).
//!
//! Per element, with `t` the step after increment:
//! ```text
//! clr = lr / (1 + (t - 1) * lr_decay)
//! sum = sum + g * g
//! p = p - clr * (g / (sqrt(sum) + eps))
//! ```
//! State: `sum` (start it at `initial_accumulator_value`).

use crate::error::Error;
use crate::fused::{Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// Adagrad hyperparameters; `Default` gives torch.optim.Adagrad's defaults
/// (`initial_accumulator_value` only fills the state, which the caller owns).
    pub struct AdagradConfig {
        lr: f64 = 1e-2 => non_negative,
        lr_decay: f64 = 0.0 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        eps: f64 = 1e-10 => non_negative,
        maximize: bool = false => flag,
    }
}

impl Optimizer for AdagradConfig {
    const STATES: &'static [StateList] = &[StateList::always("state_sums")];

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(false)?;
        target.apply(prep, |_, t| AdagradOp {
            clr: T::from_f64(self.lr / (1.0 + (t as f64 - 1.0) * self.lr_decay)),
            eps: T::from_f64(self.eps),
        })
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

crate::step_function! {
    /// One Adagrad step on every tensor. Each tensor's step count `t` must already be incremented.
    adagrad_step: AdagradConfig
}

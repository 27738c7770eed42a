//! Lion (Chen et al. 2023), matching optax.lion's defaults.
//!
//! Per element:
//! ```text
//! c = beta1 * m + (1 - beta1) * g
//! p = p * (1 - lr * weight_decay) - lr * sign(c)          (sign(0) = 0)
//! m = beta2 * m + (1 - beta2) * g
//! ```
//! State: `exp_avg`.

use crate::error::Error;
use crate::fused::{Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// Lion hyperparameters; `Default` gives optax.lion's defaults (lr 1e-4, betas (0.9, 0.99)).
    pub struct LionConfig {
        lr: f64 = 1e-4 => non_negative,
        beta1: f64 = 0.9 => unit,
        beta2: f64 = 0.99 => unit,
        /// Decoupled, as optax.lion's: `p *= 1 - lr * weight_decay`.
        weight_decay: f64 = 0.0 => non_negative,
        maximize: bool = false => flag,
    }
}

impl Optimizer for LionConfig {
    const STATES: &'static [StateList] = &[StateList::always("exp_avgs")];

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(true)?;
        let op = LionOp {
            lr: T::from_f64(self.lr),
            beta1: T::from_f64(self.beta1),
            one_minus_beta1: T::from_f64(1.0 - self.beta1),
            beta2: T::from_f64(self.beta2),
            one_minus_beta2: T::from_f64(1.0 - self.beta2),
        };
        target.apply(prep, |_, _| op)
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

crate::step_function! {
    /// One Lion step on every tensor.
    lion_step: LionConfig
}

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

use crate::error::Error;
use crate::fused::{Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// Adadelta hyperparameters; `Default` gives torch.optim.Adadelta's defaults.
    pub struct AdadeltaConfig {
        lr: f64 = 1.0 => non_negative,
        rho: f64 = 0.9 => closed_unit,
        eps: f64 = 1e-6 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        maximize: bool = false => flag,
    }
}

impl Optimizer for AdadeltaConfig {
    const STATES: &'static [StateList] = &[
        StateList::always("square_avgs"),
        StateList::always("acc_deltas"),
    ];

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(false)?;
        let op = AdadeltaOp {
            lr: T::from_f64(self.lr),
            rho: T::from_f64(self.rho),
            one_minus_rho: T::from_f64(1.0 - self.rho),
            eps: T::from_f64(self.eps),
        };
        target.apply(prep, |_, _| op)
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

crate::step_function! {
    /// One Adadelta step on every tensor.
    adadelta_step: AdadeltaConfig
}

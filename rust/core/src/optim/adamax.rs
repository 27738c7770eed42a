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
use crate::tensor::{TensorRef, MAX_STATE};

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
        adamax_on(target, self)
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

/// One Adamax step on every tensor. Each tensor's step count `t` must already be incremented.
pub fn adamax_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &AdamaxConfig,
) -> Result<(), Error> {
    adamax_on(tensors, cfg)
}

/// One step on every tensor of `target` (float or bfloat16 state).
fn adamax_on<T: Real>(target: impl Target<T>, cfg: &AdamaxConfig) -> Result<(), Error> {
    let prep = cfg.checked_prep(false)?;
    target.apply(prep, |_, t| AdamaxOp {
        lerp: Lerp::new(1.0 - cfg.beta1),
        beta2: T::from_f64(cfg.beta2),
        eps: T::from_f64(cfg.eps),
        clr: T::from_f64(cfg.lr / (1.0 - cfg.beta1.powf(t as f64))),
    })
}

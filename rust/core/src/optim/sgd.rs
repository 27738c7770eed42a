//! SGD with momentum, dampening and Nesterov (torch.optim.SGD).
//!
//! Per element:
//! ```text
//! buf = g                                          (first step)
//! buf = momentum * buf + (1 - dampening) * g       (later steps)
//! d = g + momentum * buf  if nesterov,  buf  otherwise      (d = g without momentum)
//! p = p - lr * d
//! ```
//! State: `momentum_buffer` when `momentum != 0`, none otherwise.

use crate::error::Error;
use crate::fused::{Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// SGD hyperparameters; `Default` gives torch.optim.SGD's defaults.
    pub struct SgdConfig {
        lr: f64 = 1e-3 => non_negative,
        momentum: f64 = 0.0 => non_negative,
        dampening: f64 = 0.0 => finite,
        weight_decay: f64 = 0.0 => non_negative,
        /// Requires `momentum > 0` and `dampening == 0`.
        nesterov: bool = false => flag,
        maximize: bool = false => flag,
    }
}

impl Optimizer for SgdConfig {
    const STATES: &'static [StateList] = &[StateList::when("momentum_buffers", "momentum != 0")];

    fn uses_state(&self, _k: usize) -> bool {
        self.momentum != 0.0
    }

    fn check_combination(&self) -> Result<(), Error> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::InvalidCombination(
                "nesterov: Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(())
    }

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(false)?;
        if self.momentum != 0.0 {
            target.apply(prep, |_, t| SgdOp::<T, true>::new(self, t))
        } else {
            target.apply(prep, |_, t| SgdOp::<T, false>::new(self, t))
        }
    }
}

#[derive(Clone, Copy)]
struct SgdOp<T, const MOMENTUM: bool> {
    lr: T,
    momentum: T,
    one_minus_dampening: T,
    nesterov: bool,
    first_step: bool,
}

impl<T: Real, const MOMENTUM: bool> SgdOp<T, MOMENTUM> {
    fn new(cfg: &SgdConfig, step: u64) -> Self {
        SgdOp {
            lr: T::from_f64(cfg.lr),
            momentum: T::from_f64(cfg.momentum),
            one_minus_dampening: T::from_f64(1.0 - cfg.dampening),
            nesterov: cfg.nesterov,
            first_step: step == 1,
        }
    }
}

impl<T: Real, const MOMENTUM: bool> Update<T> for SgdOp<T, MOMENTUM> {
    const STATES: usize = MOMENTUM as usize;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let d = if MOMENTUM {
            let buf = if self.first_step {
                g
            } else {
                s[0] * self.momentum + self.one_minus_dampening * g
            };
            s[0] = buf;
            if self.nesterov {
                g + self.momentum * buf
            } else {
                buf
            }
        } else {
            g
        };
        p - self.lr * d
    }
}

crate::step_function! {
    /// One SGD step on every tensor. With momentum, a tensor whose step is 1 starts its buffer from
    /// the gradient (torch's first step); the buffer's old contents are ignored then.
    sgd_step: SgdConfig
}

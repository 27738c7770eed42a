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

use crate::clip::GradClip;
use crate::error::{check_min, Error};
use crate::fused::{run, Decay, GradPrep, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// SGD hyperparameters; `Default` gives torch.optim.SGD's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl SgdConfig {
    /// Check ranges, and that nesterov has momentum and no dampening.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_min("momentum", self.momentum, 0.0, "momentum >= 0")?;
        if !self.dampening.is_finite() {
            return Err(Error::InvalidHyperparameter {
                name: "dampening",
                value: self.dampening,
                expected: "a finite number",
            });
        }
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::InvalidCombination(
                "nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(())
    }

    /// State arrays per tensor.
    pub fn state_count(&self) -> usize {
        usize::from(self.momentum != 0.0)
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

/// One SGD step on every tensor. With momentum, a tensor whose step is 1 starts its buffer from
/// the gradient (torch's first step); the buffer's old contents are ignored then.
pub fn sgd_step<T: Real>(tensors: &mut [TensorRef<'_, T>], cfg: &SgdConfig) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, false, cfg.lr),
        &cfg.grad_clip,
    );
    if cfg.momentum != 0.0 {
        run(tensors, prep, |_, t| SgdOp::<T, true>::new(cfg, t))
    } else {
        run(tensors, prep, |_, t| SgdOp::<T, false>::new(cfg, t))
    }
}

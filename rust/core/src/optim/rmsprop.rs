//! RMSprop, plain or centered, with or without momentum (torch.optim.RMSprop).
//!
//! Per element:
//! ```text
//! sq = sq * alpha + ((1 - alpha) * g) * g
//! centered:  ga = lerp(ga, g, 1 - alpha);  avg = sqrt(sq - ga * ga) + eps
//! otherwise: avg = sqrt(sq) + eps
//! momentum:  buf = buf * momentum + g / avg;  p = p - lr * buf
//! otherwise: p = p - lr * (g / avg)
//! ```
//! State, in order: `square_avg`, then `grad_avg` if centered, then `momentum_buffer` if momentum > 0.

use crate::clip::GradClip;
use crate::error::{check_min, Error};
use crate::fused::{run, Decay, GradPrep, Lerp, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// RMSprop hyperparameters; `Default` gives torch.optim.RMSprop's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RmspropConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        RmspropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl RmspropConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_min("alpha", self.alpha, 0.0, "alpha >= 0")?;
        check_min("eps", self.eps, 0.0, "eps >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")?;
        check_min("momentum", self.momentum, 0.0, "momentum >= 0")
    }

    /// State arrays per tensor.
    pub fn state_count(&self) -> usize {
        1 + usize::from(self.centered) + usize::from(self.momentum > 0.0)
    }
}

#[derive(Clone, Copy)]
struct RmspropOp<T, const CENTERED: bool, const MOMENTUM: bool> {
    lr: T,
    alpha: T,
    one_minus_alpha: T,
    lerp: Lerp<T>,
    eps: T,
    momentum: T,
}

impl<T: Real, const CENTERED: bool, const MOMENTUM: bool> RmspropOp<T, CENTERED, MOMENTUM> {
    fn new(cfg: &RmspropConfig) -> Self {
        RmspropOp {
            lr: T::from_f64(cfg.lr),
            alpha: T::from_f64(cfg.alpha),
            one_minus_alpha: T::from_f64(1.0 - cfg.alpha),
            lerp: Lerp::new(1.0 - cfg.alpha),
            eps: T::from_f64(cfg.eps),
            momentum: T::from_f64(cfg.momentum),
        }
    }
}

impl<T: Real, const CENTERED: bool, const MOMENTUM: bool> Update<T>
    for RmspropOp<T, CENTERED, MOMENTUM>
{
    const STATES: usize = 1 + CENTERED as usize + MOMENTUM as usize;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let sq = s[0] * self.alpha + (self.one_minus_alpha * g) * g;
        s[0] = sq;
        let avg = if CENTERED {
            let ga = self.lerp.apply(s[1], g);
            s[1] = ga;
            (sq - ga * ga).sqrt() + self.eps
        } else {
            sq.sqrt() + self.eps
        };
        if MOMENTUM {
            let k = 1 + CENTERED as usize;
            let buf = s[k] * self.momentum + g / avg;
            s[k] = buf;
            p - self.lr * buf
        } else {
            p - self.lr * (g / avg)
        }
    }
}

/// One RMSprop step on every tensor.
pub fn rmsprop_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    cfg: &RmspropConfig,
) -> Result<(), Error> {
    cfg.validate()?;
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, false, cfg.lr),
        &cfg.grad_clip,
    );
    match (cfg.centered, cfg.momentum > 0.0) {
        (false, false) => run(tensors, prep, |_, _| RmspropOp::<T, false, false>::new(cfg)),
        (false, true) => run(tensors, prep, |_, _| RmspropOp::<T, false, true>::new(cfg)),
        (true, false) => run(tensors, prep, |_, _| RmspropOp::<T, true, false>::new(cfg)),
        (true, true) => run(tensors, prep, |_, _| RmspropOp::<T, true, true>::new(cfg)),
    }
}

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

use crate::error::Error;
use crate::fused::{Lerp, Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::MAX_STATE;

crate::optimizer_config! {
    /// RMSprop hyperparameters; `Default` gives torch.optim.RMSprop's defaults.
    pub struct RmspropConfig {
        lr: f64 = 1e-2 => non_negative,
        alpha: f64 = 0.99 => non_negative,
        eps: f64 = 1e-8 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        momentum: f64 = 0.0 => non_negative,
        centered: bool = false => flag,
        maximize: bool = false => flag,
    }
}

impl Optimizer for RmspropConfig {
    const STATES: &'static [StateList] = &[
        StateList::always("square_avgs"),
        StateList::when("grad_avgs", "centered=True"),
        StateList::when("momentum_buffers", "momentum > 0"),
    ];

    fn uses_state(&self, k: usize) -> bool {
        [true, self.centered, self.momentum > 0.0][k]
    }

    fn step_on<T: Real>(&self, target: impl Target<T>, _: &mut [f32]) -> Result<(), Error> {
        let prep = self.checked_prep(false)?;
        match (self.centered, self.momentum > 0.0) {
            (false, false) => target.apply(prep, |_, _| RmspropOp::<T, false, false>::new(self)),
            (false, true) => target.apply(prep, |_, _| RmspropOp::<T, false, true>::new(self)),
            (true, false) => target.apply(prep, |_, _| RmspropOp::<T, true, false>::new(self)),
            (true, true) => target.apply(prep, |_, _| RmspropOp::<T, true, true>::new(self)),
        }
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

crate::step_function! {
    /// One RMSprop step on every tensor.
    rmsprop_step: RmspropConfig
}

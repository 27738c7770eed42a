//! NAdam (torch.optim.NAdam).
//!
//! With `t` the step after increment:
//! ```text
//! mu      = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
//! mu_next = beta1 * (1 - 0.5 * 0.96^((t + 1) * momentum_decay))
//! mu_product = mu_product * mu                 (kept in float32, as torch's scalar state)
//! m = lerp(m, g, 1 - beta1);  v = v * beta2 + ((1 - beta2) * g) * g
//! denom = sqrt(v * (1 / (1 - beta2^t))) + eps         (torch divides by 1 - beta2^t)
//! p = p - (lr (1 - mu) / (1 - mu_product)) * (g / denom)
//! p = p - (lr mu_next / (1 - mu_product * mu_next)) * (m / denom)
//! ```
//! State, in order: `exp_avg`, `exp_avg_sq`; plus one `mu_product` scalar per tensor.

use crate::error::Error;
use crate::fused::{AdamMoments, Target, Update};
use crate::optim::{Optimizer, StateList};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

crate::optimizer_config! {
    /// NAdam hyperparameters; `Default` gives torch.optim.NAdam's defaults.
    pub struct NadamConfig {
        lr: f64 = 2e-3 => non_negative,
        beta1: f64 = 0.9 => unit,
        beta2: f64 = 0.999 => unit,
        eps: f64 = 1e-8 => non_negative,
        weight_decay: f64 = 0.0 => non_negative,
        momentum_decay: f64 = 4e-3 => non_negative,
        decoupled_weight_decay: bool = false => flag,
        maximize: bool = false => flag,
    }
}

impl Optimizer for NadamConfig {
    const STATES: &'static [StateList] = &[
        StateList::always("exp_avgs"),
        StateList::always("exp_avg_sqs"),
    ];
    const SCALARS: Option<&'static str> = Some("mu_products");

    fn step_on<T: Real>(
        &self,
        target: impl Target<T>,
        mu_products: &mut [f32],
    ) -> Result<(), Error> {
        let prep = self.checked_prep(self.decoupled_weight_decay)?;
        let steps = target.steps();
        if mu_products.len() != steps.len() {
            return Err(Error::LengthMismatch {
                arg: "mu_products",
                index: 0,
                len: mu_products.len(),
                expected: steps.len(),
            });
        }
        let updated: Vec<f32> = steps
            .iter()
            .zip(mu_products.iter())
            .map(|(&t, &mp)| self.next_mu_product(mp, t))
            .collect();
        target.apply(prep, |i, t| NadamOp::new(self, t, updated[i]))?;
        mu_products.copy_from_slice(&updated);
        Ok(())
    }
}

impl NadamConfig {
    /// The momentum coefficient `mu` of step `t`.
    fn mu(&self, t: f64) -> f64 {
        self.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay))
    }

    /// `mu_product` after step `t`, from its value before (rounded to float32 as torch stores it).
    pub fn next_mu_product(&self, mu_product: f32, step: u64) -> f32 {
        mu_product * self.mu(step as f64) as f32
    }
}

#[derive(Clone, Copy)]
struct NadamOp<T> {
    moments: AdamMoments<T>,
    inv_bias_correction2: T,
    eps: T,
    grad_coeff: T,
    avg_coeff: T,
}

impl<T: Real> NadamOp<T> {
    /// `mu_product` is the value after this step's update.
    fn new(cfg: &NadamConfig, step: u64, mu_product: f32) -> Self {
        let t = step as f64;
        let mu = cfg.mu(t);
        let mu_next = cfg.mu(t + 1.0);
        let mu_product = f64::from(mu_product);
        let mu_product_next = mu_product * mu_next;
        NadamOp {
            moments: AdamMoments::new(cfg.beta1, cfg.beta2),
            inv_bias_correction2: T::from_f64(1.0 / (1.0 - cfg.beta2.powf(t))),
            eps: T::from_f64(cfg.eps),
            grad_coeff: T::from_f64(cfg.lr * (1.0 - mu) / (1.0 - mu_product)),
            avg_coeff: T::from_f64(cfg.lr * mu_next / (1.0 - mu_product_next)),
        }
    }
}

impl<T: Real> Update<T> for NadamOp<T> {
    const STATES: usize = 2;

    #[inline(always)]
    fn update(&self, p: T, g: T, s: &mut [T; MAX_STATE]) -> T {
        let (m, v) = self.moments.update(g, s);
        let denom = (v * self.inv_bias_correction2).sqrt() + self.eps;
        let p = p - self.grad_coeff * (g / denom);
        p - self.avg_coeff * (m / denom)
    }
}

/// One NAdam step on every tensor. `mu_products[i]` is tensor i's product of past `mu`s (1.0 before
/// the first step) and is updated in place when the step succeeds.
pub fn nadam_step<T: Real>(
    tensors: &mut [TensorRef<'_, T>],
    mu_products: &mut [f32],
    cfg: &NadamConfig,
) -> Result<(), Error> {
    cfg.step(tensors, mu_products)
}

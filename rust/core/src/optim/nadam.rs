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

use crate::clip::GradClip;
use crate::error::{check_min, check_unit, Error};
use crate::fused::{run, Decay, GradPrep, Lerp, Update};
use crate::real::Real;
use crate::tensor::{TensorRef, MAX_STATE};

/// NAdam hyperparameters; `Default` gives torch.optim.NAdam's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NadamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub maximize: bool,
    pub decoupled_weight_decay: bool,
    /// Gradient clipping inside the step (none by default).
    pub grad_clip: GradClip,
}

impl Default for NadamConfig {
    fn default() -> Self {
        NadamConfig {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            maximize: false,
            decoupled_weight_decay: false,
            grad_clip: GradClip::NONE,
        }
    }
}

impl NadamConfig {
    /// Check every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        self.grad_clip.validate()?;
        check_min("lr", self.lr, 0.0, "lr >= 0")?;
        check_unit("beta1", self.beta1)?;
        check_unit("beta2", self.beta2)?;
        check_min("eps", self.eps, 0.0, "eps >= 0")?;
        check_min("weight_decay", self.weight_decay, 0.0, "weight_decay >= 0")?;
        check_min(
            "momentum_decay",
            self.momentum_decay,
            0.0,
            "momentum_decay >= 0",
        )
    }

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
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
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
            lerp: Lerp::new(1.0 - cfg.beta1),
            beta2: T::from_f64(cfg.beta2),
            one_minus_beta2: T::from_f64(1.0 - cfg.beta2),
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
        let m = self.lerp.apply(s[0], g);
        let v = s[1] * self.beta2 + (self.one_minus_beta2 * g) * g;
        s[0] = m;
        s[1] = v;
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
    cfg.validate()?;
    if mu_products.len() != tensors.len() {
        return Err(Error::LengthMismatch {
            arg: "mu_products",
            index: 0,
            len: mu_products.len(),
            expected: tensors.len(),
        });
    }
    let updated: Vec<f32> = tensors
        .iter()
        .zip(mu_products.iter())
        .map(|(t, &mp)| cfg.next_mu_product(mp, t.step()))
        .collect();
    let prep = GradPrep::new(
        cfg.maximize,
        Decay::new(cfg.weight_decay, cfg.decoupled_weight_decay, cfg.lr),
        &cfg.grad_clip,
    );
    run(tensors, prep, |i, t| NadamOp::new(cfg, t, updated[i]))?;
    mu_products.copy_from_slice(&updated);
    Ok(())
}

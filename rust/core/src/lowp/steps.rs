//! The optimizer steps on low-precision state: each optimizer's float32 update, run on state
//! stored in bfloat16 (widened and narrowed per element in `fused.rs`'s loop) or 8 bits
//! (`run.rs`). State arrays are in the order the float32 optimizer documents; for 8-bit state,
//! first moments use [`super::QuantMap::Signed`] and second moments [`super::QuantMap::Unsigned`].

use super::tensor::{Bf16TensorRef, Quant8TensorRef};
use crate::error::Error;
use crate::optim::adam::AdamConfig;
use crate::optim::lion::LionConfig;
use crate::optim::Optimizer;

/// One step of any optimizer with bfloat16 state: `cfg`'s own element update, with each state
/// element widened to float32 before it and narrowed once after it. `scalars` is the optimizer's
/// per-tensor scalar array (NAdam's `mu_products`; empty for the others).
pub fn step_bf16<O: Optimizer>(
    cfg: &O,
    tensors: &mut [Bf16TensorRef<'_>],
    scalars: &mut [f32],
) -> Result<(), Error> {
    cfg.step_on(tensors, scalars)
}

/// One step of optimizer `cfg` with 8-bit blockwise state (each state array on its own map).
pub fn step_8bit<O: Optimizer>(cfg: &O, tensors: &mut [Quant8TensorRef<'_>]) -> Result<(), Error> {
    cfg.step_on(tensors, &mut [])
}

/// Adam / AdamW / AMSGrad with bfloat16 state (`exp_avg`, `exp_avg_sq`[, `max_exp_avg_sq`]).
pub fn adam_step_bf16(tensors: &mut [Bf16TensorRef<'_>], cfg: &AdamConfig) -> Result<(), Error> {
    step_bf16(cfg, tensors, &mut [])
}

/// Adam / AdamW / AMSGrad with 8-bit blockwise state.
pub fn adam_step_8bit(tensors: &mut [Quant8TensorRef<'_>], cfg: &AdamConfig) -> Result<(), Error> {
    step_8bit(cfg, tensors)
}

/// Lion with bfloat16 state (`exp_avg`).
pub fn lion_step_bf16(tensors: &mut [Bf16TensorRef<'_>], cfg: &LionConfig) -> Result<(), Error> {
    step_bf16(cfg, tensors, &mut [])
}

/// Lion with 8-bit blockwise state.
pub fn lion_step_8bit(tensors: &mut [Quant8TensorRef<'_>], cfg: &LionConfig) -> Result<(), Error> {
    step_8bit(cfg, tensors)
}

//! The optimizer steps on low-precision state: each optimizer's float32 update, run through
//! `run.rs`. State arrays are in the order the float32 optimizer documents; for 8-bit state,
//! first moments use [`super::QuantMap::Signed`] and second moments [`super::QuantMap::Unsigned`].

use super::tensor::{Bf16TensorRef, Quant8TensorRef};
use crate::error::Error;
use crate::optim::adam::{adam_on, AdamConfig};
use crate::optim::lion::{lion_on, LionConfig};

/// Adam / AdamW / AMSGrad with bfloat16 state (`exp_avg`, `exp_avg_sq`[, `max_exp_avg_sq`]).
pub fn adam_step_bf16(tensors: &mut [Bf16TensorRef<'_>], cfg: &AdamConfig) -> Result<(), Error> {
    adam_on(tensors, cfg)
}

/// Adam / AdamW / AMSGrad with 8-bit blockwise state.
pub fn adam_step_8bit(tensors: &mut [Quant8TensorRef<'_>], cfg: &AdamConfig) -> Result<(), Error> {
    adam_on(tensors, cfg)
}

/// Lion with bfloat16 state (`exp_avg`).
pub fn lion_step_bf16(tensors: &mut [Bf16TensorRef<'_>], cfg: &LionConfig) -> Result<(), Error> {
    lion_on(tensors, cfg)
}

/// Lion with 8-bit blockwise state.
pub fn lion_step_8bit(tensors: &mut [Quant8TensorRef<'_>], cfg: &LionConfig) -> Result<(), Error> {
    lion_on(tensors, cfg)
}

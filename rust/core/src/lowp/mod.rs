//! Optimizer state in fewer bits: bfloat16 ([`bf16`]) and 8-bit blockwise ([`quant8`]).
//!
//! Parameters and gradients stay float32. Each step widens the state into float32 registers,
//! runs the optimizer's float32 update unchanged, and narrows once when storing. bfloat16 state
//! works for every optimizer ([`step_bf16`]): its elements are widened and narrowed inside the
//! float loop of `fused.rs` (a 16-bit shift on load; on store, 16 random bits of a counter-based
//! hash ([`hash`]) added before truncating, or round to nearest even). 8-bit state (`run.rs`) is
//! requantized to the nearest code of a dynamic map with one absmax per block of [`BLOCK`]
//! elements.
//!
//! ```
//! use ferroptim_core::lowp::{adam_step_bf16, Bf16TensorRef, Rounding};
//! use ferroptim_core::AdamConfig;
//! let mut w = vec![1.0f32; 10];
//! let g = vec![0.5f32; 10];
//! let (mut m, mut v) = (vec![0u16; 10], vec![0u16; 10]);
//! let rounding = Rounding::Stochastic { seed: 0, stream: 0 };
//! let mut t = [Bf16TensorRef::new(&mut w, &g, 1, rounding).with_state(&mut m).with_state(&mut v)];
//! adam_step_bf16(&mut t, &AdamConfig::default())?;
//! assert!((w[0] - (1.0 - 1e-3)).abs() < 1e-6);
//! # Ok::<(), ferroptim_core::Error>(())
//! ```

pub mod bf16;
mod bf16_adam;
pub mod hash;
pub mod quant8;
mod quant8_simd;
mod run;
mod steps;
mod tensor;

pub use bf16::Rounding;
pub use quant8::{dynamic_map, QuantMap, Quantizer, BLOCK};
pub use steps::{
    adam_step_8bit, adam_step_bf16, lion_step_8bit, lion_step_bf16, step_8bit, step_bf16,
};
pub use tensor::{Bf16TensorRef, Quant8State, Quant8TensorRef};

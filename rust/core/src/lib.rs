//! ferroptim-core: fused optimizer kernels for deep learning, in pure Rust.
//!
//! Each optimizer updates parameters in place, reading every element of parameter, gradient and
//! state once and writing it once, vectorized for the best instruction set found at run time
//! ([`simd`]) and spread over a thread pool ([`set_num_threads`]). Update rules, defaults and the
//! order of floating-point operations follow PyTorch's single-tensor `torch.optim` code, so results
//! agree with it to rounding, and exactly with ferroptim's NumPy reference.
//!
//! ```
//! use ferroptim_core::{adam_step, AdamConfig, TensorRef};
//! let mut w = vec![1.0f32; 10];
//! let g = vec![0.5f32; 10];
//! let (mut m, mut v) = (vec![0.0f32; 10], vec![0.0f32; 10]);
//! let mut t = [TensorRef::new(&mut w, &g, 1).with_state(&mut m).with_state(&mut v)];
//! adam_step(&mut t, &AdamConfig::default())?;
//! assert!((w[0] - (1.0 - 1e-3)).abs() < 1e-6);
//! # Ok::<(), ferroptim_core::Error>(())
//! ```

mod assist;
pub mod batchnorm;
pub mod clip;
mod error;
mod fused;
pub mod lowp;
pub mod optim;
#[cfg(feature = "test-hooks")]
pub mod panic_probe;
mod pool;
mod real;
pub mod roofline;
pub mod simd;
mod tensor;

pub use clip::{GradClip, NormType};
pub use error::Error;
pub use optim::*;
pub use pool::{
    num_threads, set_num_threads, ASSIST_MIN_ELEMENTS, ASSIST_PIECE_ELEMENTS, GRAIN_ELEMENTS,
    MAX_THREADS, PARALLEL_MIN_ELEMENTS,
};
pub use real::Real;
pub use simd::SimdLevel;
pub use tensor::{TensorRef, MAX_STATE};

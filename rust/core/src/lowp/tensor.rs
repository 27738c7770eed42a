//! The arrays of one float32 parameter tensor whose optimizer state is stored in low precision.

use super::bf16::{Bf16Storage, Rounding};
use super::quant8::{QuantMap, BLOCK};
use crate::error::Error;
use crate::fused::AsTensor;
use crate::tensor::{Lanes, TensorRef, MAX_STATE};

/// A float32 parameter, its gradient and bfloat16 state arrays (`u16` bit patterns), in the order
/// the optimizer documents; `step` is the step count to use (1 on the first step) and `rounding`
/// how updated state is narrowed.
pub struct Bf16TensorRef<'a> {
    pub(crate) tensor: TensorRef<'a, f32, u16>,
    pub(crate) rounding: Rounding,
}

impl<'a> Bf16TensorRef<'a> {
    /// A tensor with no state yet; add state arrays with [`Bf16TensorRef::with_state`].
    pub fn new(param: &'a mut [f32], grad: &'a [f32], step: u64, rounding: Rounding) -> Self {
        Bf16TensorRef {
            tensor: TensorRef::with_storage(param, grad, step),
            rounding,
        }
    }

    /// Append the next state array.
    pub fn with_state(self, state: &'a mut [u16]) -> Self {
        Bf16TensorRef {
            tensor: self.tensor.with_state(state),
            rounding: self.rounding,
        }
    }
}

impl AsTensor<f32> for Bf16TensorRef<'_> {
    type Storage = Bf16Storage;
    fn tensor(&self) -> &TensorRef<'_, f32, u16> {
        &self.tensor
    }
    fn lanes(&mut self) -> Lanes<'_, f32, u16> {
        self.tensor.lanes()
    }
    fn storage(&self) -> Bf16Storage {
        Bf16Storage::new(self.rounding, self.tensor.step)
    }
}

/// One 8-bit state array: a code per element and a float32 absmax per block of [`BLOCK`].
pub struct Quant8State<'a> {
    /// One code per element.
    pub codes: &'a mut [u8],
    /// One scale per block: `len.div_ceil(BLOCK)` values.
    pub absmax: &'a mut [f32],
    /// The map the codes index.
    pub map: QuantMap,
}

/// A float32 parameter, its gradient and 8-bit blockwise state arrays.
pub struct Quant8TensorRef<'a> {
    pub(crate) param: &'a mut [f32],
    pub(crate) grad: &'a [f32],
    pub(crate) state: [Option<Quant8State<'a>>; MAX_STATE],
    pub(crate) n_state: usize,
    pub(crate) step: u64,
}

impl<'a> Quant8TensorRef<'a> {
    /// A tensor with no state yet; add state arrays with [`Quant8TensorRef::with_state`].
    pub fn new(param: &'a mut [f32], grad: &'a [f32], step: u64) -> Self {
        Quant8TensorRef {
            param,
            grad,
            state: [None, None, None],
            n_state: 0,
            step,
        }
    }

    /// Append the next state array.
    pub fn with_state(mut self, state: Quant8State<'a>) -> Self {
        if self.n_state < MAX_STATE {
            self.state[self.n_state] = Some(state);
        }
        self.n_state += 1;
        self
    }

    pub(crate) fn check(&self, index: usize, n_state: usize) -> Result<(), Error> {
        let n = self.param.len();
        check_common(index, n, self.grad.len(), self.step, self.n_state, n_state)?;
        for s in self.state.iter().flatten() {
            check_len("state", index, s.codes.len(), n)?;
            if s.absmax.len() != n.div_ceil(BLOCK) {
                return Err(Error::ElementCount {
                    arg: "absmax",
                    got: s.absmax.len(),
                    expected: n.div_ceil(BLOCK),
                });
            }
        }
        Ok(())
    }
}

fn check_len(arg: &'static str, index: usize, len: usize, expected: usize) -> Result<(), Error> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            arg,
            index,
            len,
            expected,
        })
    }
}

fn check_common(
    index: usize,
    n: usize,
    grad_len: usize,
    step: u64,
    got: usize,
    expected: usize,
) -> Result<(), Error> {
    if got != expected {
        return Err(Error::StateCount {
            index,
            got,
            expected,
        });
    }
    if step == 0 {
        return Err(Error::ZeroStep { index });
    }
    check_len("grads", index, grad_len, n)
}

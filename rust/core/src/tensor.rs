//! The arrays of one parameter tensor, as a kernel sees them.

use crate::error::Error;
use crate::real::Real;
use std::marker::PhantomData;

/// Most state arrays any optimizer keeps per parameter (AMSGrad, centered RMSprop with momentum).
pub const MAX_STATE: usize = 3;

/// One parameter tensor and what its update needs: the parameter (updated in place), its gradient,
/// the optimizer's state arrays in the order the optimizer documents, and the step count `t` to use
/// (1 on the first step). State elements are of type `S`: the parameter's type, or a narrower
/// storage (bfloat16 bits, see [`crate::lowp`]).
pub struct TensorRef<'a, T, S = T> {
    pub(crate) param: &'a mut [T],
    pub(crate) grad: &'a [T],
    pub(crate) state: [Option<&'a mut [S]>; MAX_STATE],
    pub(crate) n_state: usize,
    pub(crate) step: u64,
}

impl<'a, T: Real> TensorRef<'a, T> {
    /// A tensor with no state yet; add state arrays with [`TensorRef::with_state`].
    pub fn new(param: &'a mut [T], grad: &'a [T], step: u64) -> Self {
        Self::with_storage(param, grad, step)
    }
}

impl<'a, T, S> TensorRef<'a, T, S> {
    /// A tensor with no state yet whose state elements are stored as `S`.
    pub(crate) fn with_storage(param: &'a mut [T], grad: &'a [T], step: u64) -> Self {
        TensorRef {
            param,
            grad,
            state: [None, None, None],
            n_state: 0,
            step,
        }
    }

    /// Append the next state array. Arrays beyond [`MAX_STATE`] are counted but never used, so the
    /// kernel's state-count check reports them.
    pub fn with_state(mut self, state: &'a mut [S]) -> Self {
        if self.n_state < MAX_STATE {
            self.state[self.n_state] = Some(state);
        }
        self.n_state += 1;
        self
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.param.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.param.is_empty()
    }

    /// The step count this update uses.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Check lengths, state count and step before anything is written.
    pub(crate) fn check(&self, index: usize, n_state: usize) -> Result<(), Error> {
        if self.n_state != n_state {
            return Err(Error::StateCount {
                index,
                got: self.n_state,
                expected: n_state,
            });
        }
        if self.step == 0 {
            return Err(Error::ZeroStep { index });
        }
        let expected = self.param.len();
        let len_err = |arg, len| Error::LengthMismatch {
            arg,
            index,
            len,
            expected,
        };
        if self.grad.len() != expected {
            return Err(len_err("grads", self.grad.len()));
        }
        for s in self.state.iter().flatten() {
            if s.len() != expected {
                return Err(len_err("state", s.len()));
            }
        }
        Ok(())
    }

    /// Borrow as raw lanes for the fused loop.
    pub(crate) fn lanes(&mut self) -> Lanes<'_, T, S> {
        let len = self.param.len();
        let mut state = [std::ptr::NonNull::<S>::dangling().as_ptr(); MAX_STATE];
        for (dst, src) in state.iter_mut().zip(self.state.iter_mut()) {
            if let Some(s) = src {
                *dst = s.as_mut_ptr();
            }
        }
        Lanes {
            param: self.param.as_mut_ptr(),
            grad: self.grad.as_ptr(),
            state,
            len,
            _borrow: PhantomData,
        }
    }
}

/// Pointers into the arrays of one tensor (or a contiguous piece of one), all `len` elements long.
///
/// Built only by [`TensorRef::lanes`] from unique borrows of disjoint slices, and cut only by
/// [`Lanes::split_at`] into non-overlapping halves, so two `Lanes` never point at the same element.
/// State pointers beyond the optimizer's state count are dangling and never dereferenced.
pub(crate) struct Lanes<'a, T, S = T> {
    param: *mut T,
    grad: *const T,
    state: [*mut S; MAX_STATE],
    len: usize,
    _borrow: PhantomData<(&'a mut [T], &'a mut [S])>,
}

// Safety: a `Lanes` is a bundle of unique borrows (`&mut [T]`, `&[T]`, `&mut [S]`) of disjoint
// memory; such borrows are `Send` when `T` and `S` are.
unsafe impl<T: Send, S: Send> Send for Lanes<'_, T, S> {}

impl<'a, T, S> Lanes<'a, T, S> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Split into `[0, mid)` and `[mid, len)`.
    pub(crate) fn split_at(self, mid: usize) -> (Self, Self) {
        assert!(mid <= self.len);
        // Safety: `mid <= len`, so every offset pointer stays within (or one past) its array.
        // Dangling state pointers are offset too but never dereferenced.
        let right = unsafe {
            Lanes {
                param: self.param.add(mid),
                grad: self.grad.add(mid),
                state: self.state.map(|p| p.wrapping_add(mid)),
                len: self.len - mid,
                _borrow: PhantomData,
            }
        };
        let left = Lanes { len: mid, ..self };
        (left, right)
    }

    /// The parameter slice.
    ///
    /// Safety: the caller takes it once per `Lanes` (no second live borrow).
    pub(crate) unsafe fn param(&mut self) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.param, self.len)
    }

    /// The gradient slice.
    pub(crate) fn grad(&self) -> &'a [T] {
        // Safety: built from a `&'a [T]` of at least `len` elements.
        unsafe { std::slice::from_raw_parts(self.grad, self.len) }
    }

    /// State array `k`.
    ///
    /// Safety: `k` is below the tensor's state count and the caller takes it once per `Lanes`.
    pub(crate) unsafe fn state(&mut self, k: usize) -> &'a mut [S] {
        std::slice::from_raw_parts_mut(self.state[k], self.len)
    }
}

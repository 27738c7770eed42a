//! Optimizer steps on low-precision state, with the arguments of the float kernels
//! (`optim.rs`: positional arrays, keyword hyperparameters parsed from the core's declaration):
//!
//! * `<kernel>_bf16` for every optimizer kernel: the state lists hold uint16 arrays of bfloat16
//!   bit patterns shaped like the float32 parameters, and three more keywords say how updated
//!   state is narrowed (`stochastic_rounding`, `seed`, `stream_offset`); the arrays are checked
//!   as for the float kernels (`arrays.rs`).
//! * `adam_step_8bit`, `lion_step_8bit`: per state list, a list of uint8 code arrays shaped like
//!   the parameter and a list of 1-d float32 absmax arrays of `ceil(n / 256)` blocks. These
//!   arrays are borrowed through rust-numpy's borrow checker, so an array passed twice, read-only
//!   or non-contiguous is refused (ValueError/TypeError naming it) before anything runs.
//!
//! Lists are aligned by position; a `None` gradient skips its tensor.

use crate::arrays::{items, shape_str, type_name};
use crate::error::core_error;
use crate::optim::{argument_error, check_arity, check_slot, parse_config, KernelCall};
use ferroptim_core as core;
use ferroptim_core::lowp::{self, Quant8State, Quant8TensorRef, QuantMap, Rounding};
use ferroptim_core::optim::Optimizer;
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};
use std::ffi::CStr;

type Any<'py> = Bound<'py, PyAny>;

/// A checked, mutably borrowed array: its data and length (valid while `guard` lives).
struct Held<'py, T: Element> {
    _guard: PyReadwriteArrayDyn<'py, T>,
    data: *mut T,
    len: usize,
    shape: Vec<usize>,
}

fn hold<'py, T: Element>(obj: &Any<'py>, label: &str, dtype: &str) -> PyResult<Held<'py, T>> {
    let array = obj.cast::<PyArrayDyn<T>>().map_err(|_| {
        let got = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| type_name(obj));
        PyTypeError::new_err(format!(
            "{label} must be a numpy.ndarray of {dtype}, got {got}"
        ))
    })?;
    let shape = array.shape().to_vec();
    let mut guard = array.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "{label} cannot be updated in place ({e}); arrays must be writeable and distinct"
        ))
    })?;
    let slice = guard
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err(format!("{label} is not C-contiguous")))?;
    let (data, len) = (slice.as_mut_ptr(), slice.len());
    Ok(Held {
        _guard: guard,
        data,
        len,
        shape,
    })
}

/// One 8-bit state list as passed: its name, code arrays, absmax arrays and map.
struct StateArg<'a, 'py> {
    name: &'static str,
    codes: &'a Any<'py>,
    absmax: &'a Any<'py>,
    map: QuantMap,
}

/// One tensor's checked arrays.
struct Tensor<'py> {
    index: usize,
    param: Held<'py, f32>,
    grad: Held<'py, f32>,
    codes: Vec<(Held<'py, u8>, Held<'py, f32>, QuantMap)>,
}

/// Every tensor of one call, checked, with the steps array.
struct Call<'py> {
    tensors: Vec<Tensor<'py>>,
    steps: Held<'py, i64>,
}

fn gather<'py>(
    params: &Any<'py>,
    grads: &Any<'py>,
    states: &[StateArg<'_, 'py>],
    steps: &Any<'py>,
) -> PyResult<Call<'py>> {
    let params = items("params", params)?;
    let grads = items("grads", grads)?;
    let n = params.len();
    if grads.len() != n {
        return Err(PyValueError::new_err(format!(
            "got {} grads for {n} params; pass one gradient (or None) per parameter",
            grads.len()
        )));
    }
    let mut lists = Vec::new();
    for s in states {
        let codes = items(s.name, s.codes)?;
        let absmax = items(s.name, s.absmax)?;
        for list in [&codes, &absmax] {
            if list.len() != n {
                return Err(PyValueError::new_err(format!(
                    "{} has {} arrays for {n} params",
                    s.name,
                    list.len()
                )));
            }
        }
        lists.push((codes, absmax));
    }
    let steps = hold::<i64>(steps, "steps", "int64")?;
    if steps.shape != [n] {
        return Err(PyValueError::new_err(format!(
            "steps must have shape ({n},), got {}",
            shape_str(&steps.shape)
        )));
    }
    let mut tensors = Vec::new();
    for i in 0..n {
        if grads[i].is_none() {
            continue;
        }
        // Safety: checked to hold n int64 values; the guard is alive.
        let s = unsafe { *steps.data.add(i) };
        if !(0..i64::MAX).contains(&s) {
            return Err(PyValueError::new_err(format!(
                "steps[{i}] is {s}; step counts must be non-negative"
            )));
        }
        let param = hold::<f32>(&params[i], &format!("params[{i}]"), "float32")?;
        let grad = hold::<f32>(&grads[i], &format!("grads[{i}]"), "float32")?;
        let param_shape = param.shape.clone();
        let same_shape = |label: String, shape: &[usize]| {
            if shape == param_shape.as_slice() {
                Ok(())
            } else {
                Err(PyValueError::new_err(format!(
                    "{label} has shape {} but params[{i}] has shape {}",
                    shape_str(shape),
                    shape_str(&param_shape)
                )))
            }
        };
        same_shape(format!("grads[{i}]"), &grad.shape)?;
        let mut tensor = Tensor {
            index: i,
            param,
            grad,
            codes: Vec::new(),
        };
        for (s, (codes, absmax)) in states.iter().zip(&lists) {
            let label = format!("{}[{i}]", s.name);
            let codes = hold::<u8>(&codes[i], &format!("{label} codes"), "uint8")?;
            same_shape(format!("{label} codes"), &codes.shape)?;
            let blocks = tensor.param.len.div_ceil(lowp::BLOCK);
            let scales = hold::<f32>(&absmax[i], &format!("{label} absmax"), "float32")?;
            if scales.shape != [blocks] {
                return Err(PyValueError::new_err(format!(
                    "{label} absmax has shape {} but needs ({blocks},) for {} elements",
                    shape_str(&scales.shape),
                    tensor.param.len
                )));
            }
            tensor.codes.push((codes, scales, s.map));
        }
        tensors.push(tensor);
    }
    Ok(Call { tensors, steps })
}

impl Call<'_> {
    /// Run `step` without the GIL on the tensors built by `make`; on success count the steps.
    fn run_with<'t, X: Send>(
        &'t self,
        py: Python<'_>,
        make: impl Fn(&'t Tensor<'_>, u64) -> X,
        step: impl FnOnce(&mut [X]) -> Result<(), core::Error> + Send,
    ) -> PyResult<()> {
        let steps = SendPtr(self.steps.data);
        let indices: Vec<usize> = self.tensors.iter().map(|t| t.index).collect();
        let mut tensors: Vec<X> = self
            .tensors
            .iter()
            // Safety: steps was checked to hold one int64 per parameter.
            .map(|t| {
                let step = unsafe { *steps.get().add(t.index) } as u64 + 1;
                make(t, step)
            })
            .collect();
        py.detach(move || {
            step(&mut tensors)?;
            for i in indices {
                // Safety: as above; no other reference to the steps array is live.
                unsafe { *steps.get().add(i) += 1 };
            }
            Ok::<(), core::Error>(())
        })
        .map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

/// A raw pointer moved into the GIL-free closure (the array outlives it).
struct SendPtr<T>(*mut T);
// Safety: the pointee is only accessed by the closure while the caller waits for it.
unsafe impl<T> Send for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

impl<T: Element> Held<'_, T> {
    /// The array's data.
    ///
    /// Safety: the array is borrowed exclusively by the call, and the caller takes this slice
    /// once per call.
    unsafe fn slice<'t>(&self) -> &'t mut [T] {
        std::slice::from_raw_parts_mut(self.data, self.len)
    }
}

fn quant8_tensor<'t>(t: &'t Tensor<'_>, step: u64) -> Quant8TensorRef<'t> {
    // Safety: as `bf16_tensor`.
    unsafe {
        let (p, g) = (t.param.slice(), &*t.grad.slice());
        let mut r = Quant8TensorRef::new(p, g, step);
        for (codes, absmax, map) in &t.codes {
            r = r.with_state(Quant8State {
                codes: codes.slice(),
                absmax: absmax.slice(),
                map: *map,
            });
        }
        r
    }
}

/// The keywords of a `<kernel>_bf16` call beyond the float kernel's.
const ROUNDING_KEYWORDS: [&str; 3] = ["stochastic_rounding", "seed", "stream_offset"];

/// Keyword `name` of `kernel`'s call, required.
fn keyword<'py, T: FromPyObjectOwned<'py>>(
    kernel: &str,
    hypers: Option<&Bound<'py, PyDict>>,
    name: &str,
) -> PyResult<T> {
    let value = match hypers {
        Some(d) => d.get_item(name)?,
        None => None,
    }
    .ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{kernel}() missing required keyword argument: '{name}'"
        ))
    })?;
    value
        .extract::<T>()
        .map_err(|e| argument_error(value.py(), name, e.into()))
}

/// Add `<kernel>_bf16(params, grads, <the float kernel's lists>, steps, *, <its
/// hyperparameters>, stochastic_rounding, seed, stream_offset, grad_scale=1.0, clip_value=None)`:
/// optimizer `C`'s step with bfloat16 state (uint16 arrays shaped like the float32 parameters);
/// tensor `i`'s random stream is `stream_offset + i`.
pub(crate) fn add_bf16_kernel<C: Optimizer>(
    m: &Bound<'_, PyModule>,
    name: &'static CStr,
) -> PyResult<()> {
    let doc = c"The float kernel of the same name without `_bf16`, with bfloat16 state (uint16 \
arrays) and the keywords stochastic_rounding, seed and stream_offset (see ferroptim._native).";
    let function = PyCFunction::new_closure(m.py(), Some(name), Some(doc), move |args, hypers| {
        step_bf16::<C>(name.to_str().unwrap_or("kernel"), args, hypers)
    })?;
    m.add(name.to_string_lossy(), function)
}

fn step_bf16<C: Optimizer>(
    kernel: &str,
    args: &Bound<'_, PyTuple>,
    hypers: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    if args.len() < 2 {
        return Err(PyTypeError::new_err(format!(
            "{kernel}() missing required positional arguments: 'params' and 'grads'"
        )));
    }
    let stochastic: bool = keyword(kernel, hypers, "stochastic_rounding")?;
    let seed: u64 = keyword(kernel, hypers, "seed")?;
    let stream: u64 = keyword(kernel, hypers, "stream_offset")?;
    let rounding = if stochastic {
        Rounding::Stochastic { seed, stream }
    } else {
        Rounding::NearestEven
    };
    let call = KernelCall {
        kernel,
        params: &args.get_item(0)?,
        grads: &args.get_item(1)?,
        lists: &args.get_slice(2, args.len()),
        hypers,
    };
    let (cfg, batch) = call.gather::<C>(&ROUNDING_KEYWORDS, true)?;
    batch.run_bf16(args.py(), &cfg, rounding)
}

/// Optimizer `C`'s step with 8-bit blockwise state: for each of its state lists, a list of code
/// arrays and a list of absmax arrays (both None when the list's option is off), on map `maps[k]`.
fn step_8bit<C: Optimizer>(
    kernel: &str,
    maps: &[QuantMap],
    params: &Any<'_>,
    grads: &Any<'_>,
    lists: &Bound<'_, PyTuple>,
    hypers: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let py = lists.py();
    let mut names = vec!["params".to_string(), "grads".to_string()];
    for s in C::STATES {
        let one = s.name.trim_end_matches('s');
        names.extend([format!("{one}_codes"), format!("{one}_absmax")]);
    }
    names.push("steps".to_string());
    check_arity(kernel, &names, lists.len() + 2)?;
    let cfg: C = parse_config(py, kernel, hypers, &[])?;
    cfg.check_ranges().map_err(core_error)?;
    cfg.check_combination().map_err(core_error)?;
    let values: Vec<Any<'_>> = lists.iter().collect();
    let mut states = Vec::new();
    for (k, (list, &map)) in C::STATES.iter().zip(maps).enumerate() {
        let (codes, absmax) = (&values[2 * k], &values[2 * k + 1]);
        let used = cfg.uses_state(k);
        for given in [!codes.is_none(), !absmax.is_none()] {
            check_slot(list, given, used)?;
        }
        if used {
            states.push(StateArg {
                name: list.name,
                codes,
                absmax,
                map,
            });
        }
    }
    let call = gather(params, grads, &states, &values[values.len() - 1])?;
    call.run_with(py, quant8_tensor, |ts| lowp::step_8bit(&cfg, ts))
}

/// The 8-bit kernels: `(name, optimizer, the map of each state list)`.
macro_rules! kernels_8bit {
    ($($name:ident: $cfg:ident, $maps:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "(params, grads, <codes and absmax list of \
                each state>, steps, *, <hyperparameters>, grad_scale=1.0, clip_value=None)`.")]
            #[pyfunction]
            #[pyo3(signature = (params, grads, *lists, **hypers))]
            pub fn $name<'py>(
                params: &Any<'py>,
                grads: &Any<'py>,
                lists: &Bound<'py, PyTuple>,
                hypers: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<()> {
                step_8bit::<core::$cfg>(stringify!($name), &$maps, params, grads, lists, hypers)
            }
        )*
    };
}

kernels_8bit! {
    adam_step_8bit: AdamConfig, [QuantMap::Signed, QuantMap::Unsigned, QuantMap::Unsigned];
    lion_step_8bit: LionConfig, [QuantMap::Signed];
}

/// The dynamic quantization map (`signed=True`: first moments; False: second moments).
#[pyfunction]
pub fn dynamic_map(signed: bool) -> Vec<f32> {
    let kind = if signed {
        QuantMap::Signed
    } else {
        QuantMap::Unsigned
    };
    lowp::dynamic_map(kind).to_vec()
}

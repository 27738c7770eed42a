//! Optimizer steps on low-precision state: `<name>_step_bf16` (state as uint16 arrays holding
//! bfloat16 bit patterns, shaped like the parameter) and `<name>_step_8bit` (per state, a uint8
//! code array shaped like the parameter and a 1-d float32 absmax array of `ceil(n / 256)` blocks).
//! Parameters and gradients are float32. Lists are aligned by position; a `None` gradient skips
//! its tensor. Arrays are borrowed through rust-numpy's borrow checker, so an array passed twice,
//! read-only or non-contiguous is refused (ValueError/TypeError naming it) before anything runs.

use crate::arrays::{items, shape_str, type_name};
use ferroptim_core as core;
use ferroptim_core::lowp::{self, Bf16TensorRef, Quant8State, Quant8TensorRef, QuantMap, Rounding};
use ferroptim_core::GradClip;
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

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

/// How the state of one list is stored.
#[derive(Clone, Copy)]
enum Storage {
    Bf16,
    Quant8(QuantMap),
}

/// One state list as passed: its name, and the code (or bfloat16) arrays plus the absmax arrays.
struct StateArg<'a, 'py> {
    name: &'static str,
    values: &'a Any<'py>,
    absmax: Option<&'a Any<'py>>,
    storage: Storage,
}

/// One tensor's checked arrays.
struct Tensor<'py> {
    index: usize,
    param: Held<'py, f32>,
    grad: Held<'py, f32>,
    bf16: Vec<Held<'py, u16>>,
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
        let values = items(s.name, s.values)?;
        let absmax = match s.absmax {
            Some(a) => Some(items(s.name, a)?),
            None => None,
        };
        for list in std::iter::once(&values).chain(absmax.as_ref()) {
            if list.len() != n {
                return Err(PyValueError::new_err(format!(
                    "{} has {} arrays for {n} params",
                    s.name,
                    list.len()
                )));
            }
        }
        lists.push((values, absmax));
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
            bf16: Vec::new(),
            codes: Vec::new(),
        };
        for (s, (values, absmax)) in states.iter().zip(&lists) {
            let label = format!("{}[{i}]", s.name);
            match (s.storage, absmax) {
                (Storage::Bf16, _) => {
                    let held = hold::<u16>(&values[i], &label, "uint16 (bfloat16 bits)")?;
                    same_shape(label, &held.shape)?;
                    tensor.bf16.push(held);
                }
                (Storage::Quant8(map), Some(absmax)) => {
                    let codes = hold::<u8>(&values[i], &format!("{label} codes"), "uint8")?;
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
                    tensor.codes.push((codes, scales, map));
                }
                (Storage::Quant8(_), None) => unreachable!("8-bit state lists carry absmax"),
            }
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

fn bf16_tensor<'t>(t: &'t Tensor<'_>, step: u64, rounding: Rounding) -> Bf16TensorRef<'t> {
    // Safety: see `param_grad`; each state array is a distinct exclusive borrow.
    unsafe {
        let (p, g) = (t.param.slice(), &*t.grad.slice());
        let rounding = match rounding {
            Rounding::Stochastic { seed, stream } => Rounding::Stochastic {
                seed,
                stream: stream + t.index as u64,
            },
            r => r,
        };
        let mut r = Bf16TensorRef::new(p, g, step, rounding);
        for s in &t.bf16 {
            r = r.with_state(s.slice());
        }
        r
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

fn rounding(stochastic_rounding: bool, seed: u64, stream_offset: u64) -> Rounding {
    if stochastic_rounding {
        Rounding::Stochastic {
            seed,
            stream: stream_offset,
        }
    } else {
        Rounding::NearestEven
    }
}

#[allow(clippy::too_many_arguments)]
fn adam_config(
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<core::AdamConfig> {
    let cfg = core::AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        amsgrad,
        maximize,
        decoupled_weight_decay,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    cfg.validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(cfg)
}

fn lion_config(
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<core::LionConfig> {
    let cfg = core::LionConfig {
        lr,
        beta1,
        beta2,
        weight_decay,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    cfg.validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(cfg)
}

fn amsgrad_slot(list: Option<&Any<'_>>, amsgrad: bool) -> PyResult<()> {
    match (list.is_some(), amsgrad) {
        (false, true) => Err(PyValueError::new_err(
            "max_exp_avg_sqs: a list of arrays is required when amsgrad=True",
        )),
        (true, false) => Err(PyValueError::new_err(
            "max_exp_avg_sqs: must be None unless amsgrad=True",
        )),
        _ => Ok(()),
    }
}

fn bf16_arg<'a, 'py>(name: &'static str, values: &'a Any<'py>) -> StateArg<'a, 'py> {
    StateArg {
        name,
        values,
        absmax: None,
        storage: Storage::Bf16,
    }
}

fn quant8_arg<'a, 'py>(
    name: &'static str,
    codes: &'a Any<'py>,
    absmax: &'a Any<'py>,
    map: QuantMap,
) -> StateArg<'a, 'py> {
    StateArg {
        name,
        values: codes,
        absmax: Some(absmax),
        storage: Storage::Quant8(map),
    }
}

/// Adam / AdamW / AMSGrad with bfloat16 state (uint16 arrays). Tensor `i`'s random stream is
/// `stream_offset + i`.
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, stochastic_rounding, seed, stream_offset, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adam_step_bf16<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avgs: &Any<'py>,
    exp_avg_sqs: &Any<'py>,
    max_exp_avg_sqs: Option<&Any<'py>>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    stochastic_rounding: bool,
    seed: u64,
    stream_offset: u64,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = adam_config(
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        amsgrad,
        maximize,
        decoupled_weight_decay,
        grad_scale,
        clip_value,
    )?;
    amsgrad_slot(max_exp_avg_sqs, amsgrad)?;
    let mut states = vec![
        bf16_arg("exp_avgs", exp_avgs),
        bf16_arg("exp_avg_sqs", exp_avg_sqs),
    ];
    states.extend(max_exp_avg_sqs.map(|l| bf16_arg("max_exp_avg_sqs", l)));
    let call = gather(params, grads, &states, steps)?;
    let round = rounding(stochastic_rounding, seed, stream_offset);
    call.run_with(
        py,
        |t, step| bf16_tensor(t, step, round),
        |ts| lowp::adam_step_bf16(ts, &cfg),
    )
}

/// Lion with bfloat16 state (uint16 arrays).
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, steps, *, lr, beta1, beta2, weight_decay, maximize, stochastic_rounding, seed, stream_offset, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn lion_step_bf16<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avgs: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    maximize: bool,
    stochastic_rounding: bool,
    seed: u64,
    stream_offset: u64,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = lion_config(
        lr,
        beta1,
        beta2,
        weight_decay,
        maximize,
        grad_scale,
        clip_value,
    )?;
    let call = gather(params, grads, &[bf16_arg("exp_avgs", exp_avgs)], steps)?;
    let round = rounding(stochastic_rounding, seed, stream_offset);
    call.run_with(
        py,
        |t, step| bf16_tensor(t, step, round),
        |ts| lowp::lion_step_bf16(ts, &cfg),
    )
}

/// Adam / AdamW / AMSGrad with 8-bit blockwise state: `exp_avg` on the signed map, `exp_avg_sq`
/// and `max_exp_avg_sq` on the unsigned one.
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avg_codes, exp_avg_absmax, exp_avg_sq_codes, exp_avg_sq_absmax, max_exp_avg_sq_codes, max_exp_avg_sq_absmax, steps, *, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adam_step_8bit<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avg_codes: &Any<'py>,
    exp_avg_absmax: &Any<'py>,
    exp_avg_sq_codes: &Any<'py>,
    exp_avg_sq_absmax: &Any<'py>,
    max_exp_avg_sq_codes: Option<&Any<'py>>,
    max_exp_avg_sq_absmax: Option<&Any<'py>>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = adam_config(
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        amsgrad,
        maximize,
        decoupled_weight_decay,
        grad_scale,
        clip_value,
    )?;
    amsgrad_slot(max_exp_avg_sq_codes, amsgrad)?;
    amsgrad_slot(max_exp_avg_sq_absmax, amsgrad)?;
    let mut states = vec![
        quant8_arg("exp_avgs", exp_avg_codes, exp_avg_absmax, QuantMap::Signed),
        quant8_arg(
            "exp_avg_sqs",
            exp_avg_sq_codes,
            exp_avg_sq_absmax,
            QuantMap::Unsigned,
        ),
    ];
    if let (Some(c), Some(a)) = (max_exp_avg_sq_codes, max_exp_avg_sq_absmax) {
        states.push(quant8_arg("max_exp_avg_sqs", c, a, QuantMap::Unsigned));
    }
    let call = gather(params, grads, &states, steps)?;
    call.run_with(py, quant8_tensor, |ts| lowp::adam_step_8bit(ts, &cfg))
}

/// Lion with 8-bit blockwise state (`exp_avg` on the signed map).
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avg_codes, exp_avg_absmax, steps, *, lr, beta1, beta2, weight_decay, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn lion_step_8bit<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avg_codes: &Any<'py>,
    exp_avg_absmax: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = lion_config(
        lr,
        beta1,
        beta2,
        weight_decay,
        maximize,
        grad_scale,
        clip_value,
    )?;
    let states = [quant8_arg(
        "exp_avgs",
        exp_avg_codes,
        exp_avg_absmax,
        QuantMap::Signed,
    )];
    let call = gather(params, grads, &states, steps)?;
    call.run_with(py, quant8_tensor, |ts| lowp::lion_step_8bit(ts, &cfg))
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

//! Gradient clipping on lists of arrays (torch.nn.utils semantics), one native call per list.

use crate::arrays::ArrayList;
use crate::error::core_error;
use ferroptim_core::clip::{clip_coef, total_norm};
use ferroptim_core::NormType;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

type Any<'py> = Bound<'py, PyAny>;

fn norm_type(p: f64) -> PyResult<NormType> {
    NormType::from_p(p).map_err(|_| {
        PyValueError::new_err(format!("norm_type: must be positive (or inf), got {p}"))
    })
}

fn positive(name: &str, value: f64) -> PyResult<f64> {
    if value > 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "{name}: must be a positive finite number, got {value}"
        )))
    }
}

fn non_empty(list: ArrayList) -> PyResult<ArrayList> {
    if list.len() == 0 {
        return Err(PyValueError::new_err(
            "grads: the list of gradients is empty",
        ));
    }
    Ok(list)
}

/// The norm of all elements of `grads` together, each first clamped into
/// `[-clip_value, clip_value]` when given. Read only.
#[pyfunction]
#[pyo3(signature = (grads, norm_type=2.0, clip_value=None))]
pub fn global_norm(
    py: Python<'_>,
    grads: &Any<'_>,
    norm_type: f64,
    clip_value: Option<f64>,
) -> PyResult<f64> {
    let norm = self::norm_type(norm_type)?;
    if let Some(c) = clip_value {
        if !(c >= 0.0 && c.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "clip_value: must be a finite number >= 0, got {c}"
            )));
        }
    }
    let list = non_empty(ArrayList::gather(py, "grads", grads, false)?)?;
    Ok(py.detach(|| total_norm(&list.partials(norm, clip_value), norm)))
}

/// The norm of each array of `grads` separately. Read only.
#[pyfunction]
#[pyo3(signature = (grads, norm_type=2.0))]
pub fn tensor_norms(py: Python<'_>, grads: &Any<'_>, norm_type: f64) -> PyResult<Vec<f64>> {
    let norm = self::norm_type(norm_type)?;
    let list = non_empty(ArrayList::gather(py, "grads", grads, false)?)?;
    Ok(py.detach(|| {
        list.partials(norm, None)
            .into_iter()
            .map(|p| norm.finish(p))
            .collect()
    }))
}

/// torch's `clip_grad_norm_`: scale every array by `min(max_norm / (total + 1e-6), 1)` in place and
/// return the total norm. With `error_if_nonfinite`, a nan/inf total raises before anything changes.
#[pyfunction]
#[pyo3(signature = (grads, max_norm, norm_type=2.0, error_if_nonfinite=false))]
pub fn clip_grad_norm_(
    py: Python<'_>,
    grads: &Any<'_>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> PyResult<f64> {
    let max_norm = positive("max_norm", max_norm)?;
    let norm = self::norm_type(norm_type)?;
    let list = non_empty(ArrayList::gather(py, "grads", grads, true)?)?;
    let total = py.detach(|| total_norm(&list.partials(norm, None), norm));
    if error_if_nonfinite && !total.is_finite() {
        return Err(PyRuntimeError::new_err(format!(
            "The total norm of order {norm_type} for gradients is non-finite, so it cannot be \
             clipped. To disable this error and scale the gradients by the non-finite norm \
             anyway, set `error_if_nonfinite=False`"
        )));
    }
    let coef = clip_coef(max_norm, total);
    py.detach(|| list.scale(&vec![coef; list.len()]));
    Ok(total)
}

/// Per-tensor norm clipping (Keras' `clipnorm`): scale each array by
/// `min(max_norm / (its norm + 1e-6), 1)` in place; return each array's norm.
#[pyfunction]
#[pyo3(signature = (grads, max_norm, norm_type=2.0))]
pub fn clip_grad_norm_per_tensor_(
    py: Python<'_>,
    grads: &Any<'_>,
    max_norm: f64,
    norm_type: f64,
) -> PyResult<Vec<f64>> {
    let max_norm = positive("max_norm", max_norm)?;
    let norm = self::norm_type(norm_type)?;
    let list = non_empty(ArrayList::gather(py, "grads", grads, true)?)?;
    Ok(py.detach(|| {
        let norms: Vec<f64> = list
            .partials(norm, None)
            .into_iter()
            .map(|p| norm.finish(p))
            .collect();
        let coefs: Vec<f64> = norms.iter().map(|&n| clip_coef(max_norm, n)).collect();
        list.scale(&coefs);
        norms
    }))
}

/// torch's `clip_grad_value_`: clamp every element into `[-clip_value, clip_value]` in place.
#[pyfunction]
pub fn clip_grad_value_(py: Python<'_>, grads: &Any<'_>, clip_value: f64) -> PyResult<()> {
    if !(clip_value >= 0.0 && clip_value.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "clip_value: must be a finite number >= 0, got {clip_value}"
        )));
    }
    let list = non_empty(ArrayList::gather(py, "grads", grads, true)?)?;
    py.detach(|| list.clamp(clip_value)).map_err(core_error)
}

/// The limit of a reduction over `arrays`: read every element once, through the same chunks and
/// parallel pass as the norms, and fold the bits with XOR (no arithmetic). Returns the folded bits
/// as a float (meaningless; for benchmarks). Read only.
#[pyfunction]
pub fn roofline_read(py: Python<'_>, arrays: &Any<'_>) -> PyResult<f64> {
    let list = ArrayList::gather(py, "arrays", arrays, false)?;
    Ok(py.detach(|| list.read_pass()))
}

//! Batch normalization kernels for `(N, C)`, `(N, C, L)` and `(N, C, H, W)` arrays (channels on
//! axis 1), mirroring `ferroptim_core::batchnorm`:
//!
//! - `batch_norm_stats(x) -> (mean, var)`: per-channel mean and biased variance, float64 `(C,)`.
//! - `batch_norm_update_running(running_mean, running_var, mean, var, count, momentum)`: in place.
//! - `batch_norm_forward(x, out, mean, var, weight, bias, *, eps, training) -> invstd`: writes `out`
//!   and returns `1/sqrt(var + eps)` (float64 `(C,)`).
//! - `batch_norm_backward(dy, x, mean, invstd, weight, dx, *, training) -> (dweight, dbias)`:
//!   writes `dx` and returns float64 `(C,)` parameter gradients.
//!
//! Every argument is checked before anything is written: data arrays float32 or float64 in native
//! byte order, C-contiguous, aligned, 2 to 4 dimensions; `out`/`dx` the same dtype and shape as
//! `x` and writeable; per-channel arrays (float32 or float64) 1-d with `C` entries; no written
//! array sharing memory with any other argument; `eps >= 0`, `0 <= momentum <= 1`; in training
//! more than one value per channel. Errors are `TypeError` (not an array, wrong dtype) or
//! `ValueError` (everything else) naming the argument. Kernels run without the GIL.

use crate::arrays::{check_disjoint, dtype_name, shape_str, Checked, Dtype, Dtypes};
use crate::error::core_error;
use ferroptim_core::batchnorm::{self as bn, Layout, Normalization};
use ferroptim_core::Real;
use numpy::PyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type Any<'py> = Bound<'py, PyAny>;
type F64Array<'py> = Bound<'py, PyArray1<f64>>;

/// Evaluate `$body` with the type `$t` bound to the element type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, |$t:ident| $body:expr) => {
        match $dtype {
            Dtype::F32 => {
                type $t = f32;
                $body
            }
            Dtype::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}

/// The values of a checked per-channel array as f64 (they are small).
fn to_f64(a: &Checked) -> Vec<f64> {
    // Safety: `Dtypes::checked` verified an aligned, C-contiguous array of `len` elements of
    // `dtype`, which the caller's argument keeps alive.
    with_dtype!(a.dtype, |T| unsafe { a.raw.slice::<T>() }
        .iter()
        .map(|&v| v.to_f64())
        .collect())
}

/// Check one array: ndarray, float32/float64 in native byte order, C-contiguous, aligned, and
/// writeable if `written`.
fn check(obj: &Any<'_>, name: &'static str, written: bool) -> PyResult<Checked> {
    Dtypes::new(obj.py()).checked(obj, name, written, None)
}

/// A data array (`x`, `dy`): 2 to 4 dimensions, `(N, C, *spatial)`.
fn data_array(obj: &Any<'_>, name: &'static str) -> PyResult<(Checked, Layout)> {
    let a = check(obj, name, false)?;
    match Layout::from_shape(&a.shape) {
        Some(layout) if a.shape.len() <= 4 => Ok((a, layout)),
        _ => Err(PyValueError::new_err(format!(
            "{name} must have 2 to 4 dimensions (N, C), (N, C, L) or (N, C, H, W), got shape {}",
            shape_str(&a.shape)
        ))),
    }
}

/// An array that must have the dtype and shape of `like`.
fn same_as(obj: &Any<'_>, name: &'static str, written: bool, like: &Checked) -> PyResult<Checked> {
    Dtypes::new(obj.py()).checked(obj, name, written, Some(like))
}

/// A per-channel array: 1-d with `c` entries.
fn per_channel(obj: &Any<'_>, name: &'static str, written: bool, c: usize) -> PyResult<Checked> {
    let a = check(obj, name, written)?;
    if a.shape.len() != 1 || a.shape[0] != c {
        return Err(PyValueError::new_err(format!(
            "{name} has shape {} but the input has {c} channels; expected shape ({c},)",
            shape_str(&a.shape)
        )));
    }
    Ok(a)
}

fn check_training(layout: Layout, shape: &[usize]) -> PyResult<()> {
    layout.check_training().map_err(|_| {
        PyValueError::new_err(format!(
            "Expected more than 1 value per channel when training, got input size {}",
            shape_str(shape)
        ))
    })
}

/// Per-channel mean and biased variance of `x` (float64 arrays of shape `(C,)`).
#[pyfunction]
pub fn batch_norm_stats<'py>(
    py: Python<'py>,
    x: &Any<'py>,
) -> PyResult<(F64Array<'py>, F64Array<'py>)> {
    let (xa, layout) = data_array(x, "x")?;
    if layout.count() == 0 && layout.c > 0 {
        return Err(PyValueError::new_err(format!(
            "x has no values per channel (shape {})",
            shape_str(&xa.shape)
        )));
    }
    let (raw, dtype) = (xa.raw, xa.dtype);
    let (mean, var) = py
        .detach(move || {
            let (mut mean, mut var) = (vec![0.0; layout.c], vec![0.0; layout.c]);
            // Safety: `x` was checked to be an aligned, C-contiguous array of `len` elements of
            // `dtype`; the caller's reference keeps it alive.
            with_dtype!(dtype, |T| {
                let x = unsafe { raw.slice::<T>() };
                bn::batch_stats(x, layout, &mut mean, &mut var)
            })
            .map(|()| (mean, var))
        })
        .map_err(core_error)?;
    Ok((PyArray1::from_vec(py, mean), PyArray1::from_vec(py, var)))
}

/// Update running statistics in place:
/// `running_mean = (1-momentum)*running_mean + momentum*mean`,
/// `running_var = (1-momentum)*running_var + momentum*var*count/(count-1)`.
#[pyfunction]
#[pyo3(signature = (running_mean, running_var, mean, var, count, momentum))]
pub fn batch_norm_update_running(
    py: Python<'_>,
    running_mean: &Any<'_>,
    running_var: &Any<'_>,
    mean: &Any<'_>,
    var: &Any<'_>,
    count: i64,
    momentum: f64,
) -> PyResult<()> {
    let rm = check(running_mean, "running_mean", true)?;
    if rm.shape.len() != 1 {
        return Err(PyValueError::new_err(format!(
            "running_mean must be 1-d, got shape {}",
            shape_str(&rm.shape)
        )));
    }
    let c = rm.raw.len;
    let rv = per_channel(running_var, "running_var", true, c)?;
    if rv.dtype != rm.dtype {
        return Err(PyTypeError::new_err(format!(
            "running_var has dtype {} but running_mean has dtype {}",
            dtype_name(rv.dtype),
            dtype_name(rm.dtype)
        )));
    }
    let m = per_channel(mean, "mean", false, c)?;
    let v = per_channel(var, "var", false, c)?;
    check_disjoint(&[&rm, &rv, &m, &v])?;
    if count < 2 {
        return Err(PyValueError::new_err(format!(
            "count: the unbiased variance needs at least 2 values per channel, got {count}"
        )));
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(PyValueError::new_err(format!(
            "momentum: must be in [0, 1], got {momentum}"
        )));
    }
    let (m, v) = (to_f64(&m), to_f64(&v));
    let (rm, rv, dtype) = (rm.raw, rv.raw, rm.dtype);
    let count = count as usize;
    py.detach(move || {
        // Safety: both checked writeable, aligned, contiguous arrays of `c` elements of `dtype`
        // that share no memory; kept alive by the caller.
        with_dtype!(dtype, |T| {
            let (rm, rv) = unsafe { (rm.slice_mut::<T>(), rv.slice_mut::<T>()) };
            bn::update_running(rm, rv, &m, &v, count, momentum)
        })
    })
    .map_err(core_error)
}

/// Optional per-channel argument.
fn optional(obj: Option<&Any<'_>>, name: &'static str, c: usize) -> PyResult<Option<Checked>> {
    match obj {
        Some(o) if !o.is_none() => per_channel(o, name, false, c).map(Some),
        _ => Ok(None),
    }
}

/// `out = (x - mean) * (invstd*weight) + bias` with `invstd = 1/sqrt(var + eps)`, per channel,
/// computed in float64 and rounded once. Returns `invstd` (float64 `(C,)`).
#[pyfunction]
#[pyo3(signature = (x, out, mean, var, weight, bias, *, eps, training))]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<'py>(
    py: Python<'py>,
    x: &Any<'py>,
    out: &Any<'py>,
    mean: &Any<'py>,
    var: &Any<'py>,
    weight: Option<&Any<'py>>,
    bias: Option<&Any<'py>>,
    eps: f64,
    training: bool,
) -> PyResult<F64Array<'py>> {
    let (xa, layout) = data_array(x, "x")?;
    let oa = same_as(out, "out", true, &xa)?;
    let c = layout.c;
    let ma = per_channel(mean, "mean", false, c)?;
    let va = per_channel(var, "var", false, c)?;
    let wa = optional(weight, "weight", c)?;
    let ba = optional(bias, "bias", c)?;
    let mut all = vec![&xa, &oa, &ma, &va];
    all.extend(wa.iter().chain(ba.iter()));
    check_disjoint(&all)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "eps: must be a finite number >= 0, got {eps}"
        )));
    }
    if training {
        check_training(layout, &xa.shape)?;
    }
    let (m, v) = (to_f64(&ma), to_f64(&va));
    let w = wa.as_ref().map(to_f64);
    let b = ba.as_ref().map(to_f64);
    let (x, out, dtype) = (xa.raw, oa.raw, xa.dtype);
    let invstd = py
        .detach(move || -> Result<Vec<f64>, ferroptim_core::Error> {
            let mut invstd = vec![0.0; c];
            bn::inv_std(&v, eps, &mut invstd)?;
            let norm = Normalization {
                mean: &m,
                invstd: &invstd,
                weight: w.as_deref(),
                bias: b.as_deref(),
                training,
            };
            // Safety: `x` and `out` are checked aligned, contiguous arrays of `len` elements of
            // `dtype`, `out` writeable and disjoint from every other argument.
            with_dtype!(dtype, |T| {
                let (x, y) = unsafe { (x.slice::<T>(), out.slice_mut::<T>()) };
                bn::batch_norm_forward(x, y, layout, &norm)
            })?;
            Ok(invstd)
        })
        .map_err(core_error)?;
    Ok(PyArray1::from_vec(py, invstd))
}

/// Gradients of [`batch_norm_forward`]: writes `dx`, returns `(dweight, dbias)` (float64 `(C,)`).
/// Training: `dx = ((m*dy - dbias) - xhat*dweight) * (weight*invstd/m)`; eval:
/// `dx = dy * weight * invstd`.
#[pyfunction]
#[pyo3(signature = (dy, x, mean, invstd, weight, dx, *, training))]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<'py>(
    py: Python<'py>,
    dy: &Any<'py>,
    x: &Any<'py>,
    mean: &Any<'py>,
    invstd: &Any<'py>,
    weight: Option<&Any<'py>>,
    dx: &Any<'py>,
    training: bool,
) -> PyResult<(F64Array<'py>, F64Array<'py>)> {
    let (ga, layout) = data_array(dy, "dy")?;
    let xa = same_as(x, "x", false, &ga)?;
    let da = same_as(dx, "dx", true, &ga)?;
    let c = layout.c;
    let ma = per_channel(mean, "mean", false, c)?;
    let ia = per_channel(invstd, "invstd", false, c)?;
    let wa = optional(weight, "weight", c)?;
    let mut all = vec![&ga, &xa, &da, &ma, &ia];
    all.extend(wa.iter());
    check_disjoint(&all)?;
    if training {
        check_training(layout, &ga.shape)?;
    }
    let (m, is) = (to_f64(&ma), to_f64(&ia));
    let w = wa.as_ref().map(to_f64);
    let (g, x, dx, dtype) = (ga.raw, xa.raw, da.raw, ga.dtype);
    let (dweight, dbias) = py
        .detach(
            move || -> Result<(Vec<f64>, Vec<f64>), ferroptim_core::Error> {
                let (mut dweight, mut dbias) = (vec![0.0; c], vec![0.0; c]);
                let norm = Normalization {
                    mean: &m,
                    invstd: &is,
                    weight: w.as_deref(),
                    bias: None,
                    training,
                };
                // Safety: `dy`, `x` and `dx` are checked aligned, contiguous arrays of `len` elements
                // of `dtype`, `dx` writeable and disjoint from every other argument.
                with_dtype!(dtype, |T| {
                    let (g, x, dx) =
                        unsafe { (g.slice::<T>(), x.slice::<T>(), dx.slice_mut::<T>()) };
                    bn::batch_norm_backward(g, x, dx, layout, &norm, &mut dweight, &mut dbias)
                })?;
                Ok((dweight, dbias))
            },
        )
        .map_err(core_error)?;
    Ok((
        PyArray1::from_vec(py, dweight),
        PyArray1::from_vec(py, dbias),
    ))
}

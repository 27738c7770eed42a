//! `ferroptim._native`: the Python face of ferroptim-core. Private; use the `ferroptim` package.

mod arrays;
mod batchnorm;
mod clip;
mod error;
mod lowp;
mod optim;
mod prepared;

use ferroptim_core::simd::{self, SimdLevel};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The instruction set kernels run at (`avx512`, `avx2`, `sse2`, `neon` or `scalar`).
#[pyfunction]
fn simd_level() -> &'static str {
    simd::level().name()
}

/// Levels this machine supports, best first.
#[pyfunction]
fn supported_simd_levels() -> Vec<&'static str> {
    simd::supported_levels()
        .into_iter()
        .map(SimdLevel::name)
        .collect()
}

/// Force the instruction set for later calls (overrides `FERROPTIM_SIMD`).
#[pyfunction]
fn set_simd_level(level: &str) -> PyResult<()> {
    let parsed = SimdLevel::parse(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "level: unknown SIMD level {level:?}; expected one of avx512, avx2, sse2, neon, scalar"
        ))
    })?;
    if !simd::set_level(parsed) {
        return Err(PyValueError::new_err(format!(
            "level: {level} is not supported on this machine (supported: {})",
            supported_simd_levels().join(", ")
        )));
    }
    Ok(())
}

/// Number of threads kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    ferroptim_core::num_threads()
}

/// Set the number of threads kernels use (1 to 1024).
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    let max = ferroptim_core::MAX_THREADS;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| (1..=max).contains(&n))
        .ok_or_else(|| PyValueError::new_err(format!("n: must be 1 to {max}, got {n}")))?;
    ferroptim_core::set_num_threads(n).map_err(error::core_error)
}

/// Panic on purpose inside a native call, on the `"caller"`, `"helper"` or `"pool"` path, with
/// the GIL released as kernels run: for tests that a Rust panic arrives as
/// `pyo3_runtime.PanicException` and the process and the thread pool keep working.
#[cfg(feature = "test-hooks")]
#[pyfunction]
fn _panic_for_tests(py: Python<'_>, site: &str) -> PyResult<f64> {
    use ferroptim_core::panic_probe::{panic_on, PanicSite};
    let site = match site {
        "caller" => PanicSite::Caller,
        "helper" => PanicSite::Helper,
        "pool" => PanicSite::Pool,
        _ => {
            return Err(PyValueError::new_err(format!(
                "site: must be 'caller', 'helper' or 'pool', got {site:?}"
            )))
        }
    };
    Ok(py.detach(|| panic_on(site)))
}

/// Add each `#[pyfunction]` to module `m`.
macro_rules! add_functions {
    ($m:ident, $($f:path),+ $(,)?) => {
        $( $m.add_function(wrap_pyfunction!($f, $m)?)?; )+
    };
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    add_functions!(
        m,
        simd_level,
        supported_simd_levels,
        set_simd_level,
        get_num_threads,
        set_num_threads,
        batchnorm::batch_norm_stats,
        batchnorm::batch_norm_update_running,
        batchnorm::batch_norm_forward,
        batchnorm::batch_norm_backward,
        optim::roofline_step,
        prepared::prepare_step,
        lowp::adam_step_8bit,
        lowp::lion_step_8bit,
        lowp::dynamic_map,
        clip::global_norm,
        clip::tensor_norms,
        clip::clip_grad_norm_,
        clip::clip_grad_norm_per_tensor_,
        clip::clip_grad_value_,
        clip::roofline_read,
    );
    #[cfg(feature = "test-hooks")]
    add_functions!(m, _panic_for_tests);
    optim::register(m)?;
    m.add_class::<prepared::PreparedStep>()?;
    for (name, value) in [
        ("GRAIN_ELEMENTS", ferroptim_core::GRAIN_ELEMENTS),
        (
            "PARALLEL_MIN_ELEMENTS",
            ferroptim_core::PARALLEL_MIN_ELEMENTS,
        ),
        ("ASSIST_MIN_ELEMENTS", ferroptim_core::ASSIST_MIN_ELEMENTS),
        (
            "ASSIST_PIECE_ELEMENTS",
            ferroptim_core::ASSIST_PIECE_ELEMENTS,
        ),
    ] {
        m.add(name, value)?;
    }
    Ok(())
}

//! The one conversion from the core's [`Error`](ferroptim_core::Error) to a Python exception.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

/// Every core error is a bad argument or hyperparameter: `ValueError` with the core's message,
/// which names the argument.
pub fn core_error(e: ferroptim_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

//! One Python function per optimizer kernel, for every entry of
//! [`for_each_optimizer!`](ferroptim_core::for_each_optimizer):
//! `<name>_step(params, grads, <state lists>, [<scalar array>], steps, *, <hyperparameters>,
//! grad_scale=1.0, clip_value=None)`.
//!
//! Lists are aligned by position; a `None` gradient skips its tensor (its state and step are left
//! alone). A state list that an option turns on (`Optimizer::STATES`) must be given exactly when
//! the option is on, else `None`. `steps` is an int64 array of per-tensor step counts, incremented
//! in place for every tensor that was stepped. Hyperparameters are keyword-only, named as in
//! torch.optim, and parsed into the core's config struct from its declaration
//! (`Hyperparameters::HYPERS`).

use crate::arrays::{Batch, Bf16Kernel, CallArgs, StepKernel};
use crate::error::core_error;
use ferroptim_core as core;
use ferroptim_core::lowp::Bf16TensorRef;
use ferroptim_core::optim::{HyperKind, HyperValue, Optimizer, StateList};
use ferroptim_core::{Real, TensorRef};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

type Any<'py> = Bound<'py, PyAny>;

/// A core configuration as a [`StepKernel`] and a [`Bf16Kernel`].
pub(crate) struct Kernel<C>(pub(crate) C);

impl<C: Optimizer> StepKernel for Kernel<C> {
    fn validate(&self) -> Result<(), core::Error> {
        self.0.check_ranges()?;
        self.0.check_combination()
    }
    fn step<T: Real>(&self, t: &mut [TensorRef<'_, T>], s: &mut [f32]) -> Result<(), core::Error> {
        self.0.step(t, s)
    }
}

impl<C: Optimizer> Bf16Kernel for Kernel<C> {
    fn step_bf16(&self, t: &mut [Bf16TensorRef<'_>], s: &mut [f32]) -> Result<(), core::Error> {
        core::lowp::step_bf16(&self.0, t, s)
    }
}

/// `err` with the argument named, keeping its exception type (as pyo3 reports a bad argument).
pub(crate) fn argument_error(py: Python<'_>, name: &str, err: PyErr) -> PyErr {
    let message = format!("argument '{name}': {}", err.value(py));
    PyErr::from_type(err.get_type(py), message)
}

/// The config `C` from the keyword arguments: every declared hyperparameter, converted in
/// declaration order, then `grad_scale` and `clip_value`; unknown or missing names are refused
/// (names in `extra` are the caller's to parse). The dict is read in one pass, comparing its keys
/// as text (no Python string is built).
pub(crate) fn parse_config<C: Optimizer>(
    py: Python<'_>,
    kernel: &str,
    hypers: Option<&Bound<'_, PyDict>>,
    extra: &[&str],
) -> PyResult<C> {
    let n = C::HYPERS.len();
    // By position: the hyperparameters in declaration order, then grad_scale and clip_value.
    let mut given: Vec<Option<Any<'_>>> = vec![None; n + 2];
    let mut unexpected: Option<String> = None;
    for (key, value) in hypers.into_iter().flat_map(|d| d.iter()) {
        let key = key.cast_into::<PyString>()?;
        let name = key.to_str()?;
        let slot = match name {
            "grad_scale" => Some(n),
            "clip_value" => Some(n + 1),
            _ => C::HYPERS.iter().position(|&(h, _)| h == name),
        };
        match slot {
            Some(i) => given[i] = Some(value),
            None if extra.contains(&name) => {}
            None => {
                unexpected.get_or_insert_with(|| name.to_owned());
            }
        }
    }
    let mut given = given.into_iter();
    let mut cfg = C::default();
    for (&(name, kind), value) in C::HYPERS.iter().zip(given.by_ref()) {
        let value = value.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{kernel}() missing required keyword argument: '{name}'"
            ))
        })?;
        let value = match kind {
            HyperKind::Real => value.extract::<f64>().map(HyperValue::Real),
            HyperKind::Flag => value.extract::<bool>().map(HyperValue::Flag),
        }
        .map_err(|e| argument_error(py, name, e))?;
        cfg.set(name, value);
    }
    let clip = cfg.grad_clip_mut();
    if let Some(scale) = given.next().flatten() {
        clip.scale = scale
            .extract::<f64>()
            .map_err(|e| argument_error(py, "grad_scale", e))?;
    }
    if let Some(bound) = given.next().flatten() {
        clip.clip_value = bound
            .extract::<Option<f64>>()
            .map_err(|e| argument_error(py, "clip_value", e))?;
    }
    if let Some(key) = unexpected {
        return Err(PyTypeError::new_err(format!(
            "{kernel}() got an unexpected keyword argument '{key}'"
        )));
    }
    Ok(cfg)
}

/// A state list given (`given`) exactly when the options use it (`used`).
pub(crate) fn check_slot(list: &StateList, given: bool, used: bool) -> PyResult<()> {
    match (list.when, given, used) {
        (Some(option), false, true) => Err(PyValueError::new_err(format!(
            "{}: a list of arrays is required when {option}",
            list.name
        ))),
        (Some(option), true, false) => Err(PyValueError::new_err(format!(
            "{}: must be None unless {option}",
            list.name
        ))),
        _ => Ok(()),
    }
}

/// The positional arguments after `params` and `grads`: the state lists, the scalar array (if
/// the optimizer has one) and `steps`.
fn positional_names<C: Optimizer>() -> Vec<&'static str> {
    let mut names = vec!["params", "grads"];
    names.extend(C::STATES.iter().map(|s| s.name));
    names.extend(C::SCALARS);
    names.push("steps");
    names
}

/// `TypeError` unless a kernel taking the positional arguments `names` was given `given` of them.
pub(crate) fn check_arity<S: AsRef<str>>(kernel: &str, names: &[S], given: usize) -> PyResult<()> {
    if given == names.len() {
        return Ok(());
    }
    let listed: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    Err(PyTypeError::new_err(format!(
        "{kernel}() takes {} positional arguments ({}) but {given} were given",
        names.len(),
        listed.join(", "),
    )))
}

/// Parse, validate and check everything, then run the step without the GIL.
fn step<C: Optimizer>(
    py: Python<'_>,
    kernel: &str,
    params: &Any<'_>,
    grads: &Any<'_>,
    lists: &Bound<'_, PyTuple>,
    hypers: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let call = KernelCall {
        kernel,
        params,
        grads,
        lists,
        hypers,
    };
    let (cfg, batch) = call.gather::<C>(&[], false)?;
    batch.run(py, &cfg)
}

/// The arguments of one kernel call, as Python passed them.
pub(crate) struct KernelCall<'a, 'py> {
    pub kernel: &'a str,
    pub params: &'a Any<'py>,
    pub grads: &'a Any<'py>,
    /// The positional arguments after `params` and `grads`.
    pub lists: &'a Bound<'py, PyTuple>,
    pub hypers: Option<&'a Bound<'py, PyDict>>,
}

impl KernelCall<'_, '_> {
    /// The config and the checked arrays: hyperparameters parsed (`extra`: keywords the caller
    /// parses) and validated, then every state list given exactly when its option is on, then
    /// the arrays (state stored as bfloat16 if `bf16_state`).
    pub(crate) fn gather<C: Optimizer>(
        &self,
        extra: &[&str],
        bf16_state: bool,
    ) -> PyResult<(Kernel<C>, Batch)> {
        let (kernel, lists) = (self.kernel, self.lists);
        let py = lists.py();
        let cfg = checked_config::<C>(kernel, lists, self.hypers, extra)?;
        let layout = Layout::of::<C>(&cfg.0, lists)?;
        let states = layout.state_args();
        let args = CallArgs {
            params: self.params,
            grads: self.grads,
            states: &states,
            steps: Some(&layout.steps),
            scalars: layout.scalars.as_ref().map(|(name, obj)| (*name, obj)),
            bf16_state,
        };
        Ok((cfg, Batch::gather(py, args)?))
    }
}

/// The config of a call whose positional arguments after `params` and `grads` are `lists`:
/// their count checked, then the keywords parsed (`extra`: the caller's) and validated
/// (hyperparameter errors come before array errors, as in the reference).
pub(crate) fn checked_config<C: Optimizer>(
    kernel: &str,
    lists: &Bound<'_, PyTuple>,
    hypers: Option<&Bound<'_, PyDict>>,
    extra: &[&str],
) -> PyResult<Kernel<C>> {
    check_arity(kernel, &positional_names::<C>(), lists.len() + 2)?;
    let cfg = Kernel(parse_config::<C>(lists.py(), kernel, hypers, extra)?);
    cfg.validate().map_err(core_error)?;
    Ok(cfg)
}

/// The positional arguments after `params` and `grads` of a call (count already checked): the
/// state lists by name (None for one the options do not use, which must be given as None), the
/// scalar array if the optimizer has one, and `steps`.
pub(crate) struct Layout<'py> {
    pub states: Vec<(&'static str, Option<Any<'py>>)>,
    pub scalars: Option<(&'static str, Any<'py>)>,
    pub steps: Any<'py>,
}

impl<'py> Layout<'py> {
    /// Read `lists` for config `cfg`: every state list given exactly when its option is on.
    pub(crate) fn of<C: Optimizer>(cfg: &C, lists: &Bound<'py, PyTuple>) -> PyResult<Self> {
        let values: Vec<Any<'py>> = lists.iter().collect();
        let mut states = Vec::with_capacity(C::STATES.len());
        for (k, list) in C::STATES.iter().enumerate() {
            let value = &values[k];
            let used = cfg.uses_state(k);
            check_slot(list, !value.is_none(), used)?;
            states.push((list.name, used.then(|| value.clone())));
        }
        let scalars = C::SCALARS.map(|name| (name, values[C::STATES.len()].clone()));
        let steps = values[values.len() - 1].clone();
        Ok(Layout {
            states,
            scalars,
            steps,
        })
    }

    /// The state lists as [`CallArgs`] takes them.
    pub(crate) fn state_args(&self) -> Vec<(&'static str, Option<&Any<'py>>)> {
        self.states.iter().map(|(n, v)| (*n, v.as_ref())).collect()
    }
}

/// One `#[pyfunction]` per optimizer, and [`register`] adding them all plus `KERNEL_SPECS`.
macro_rules! kernels {
    ($($name:ident: $cfg:ident,)*) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` kernel (see the module documentation).")]
            #[pyfunction]
            #[pyo3(signature = (params, grads, *lists, **hypers))]
            fn $name<'py>(
                py: Python<'py>,
                params: &Any<'py>,
                grads: &Any<'py>,
                lists: &Bound<'py, PyTuple>,
                hypers: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<()> {
                step::<core::$cfg>(py, stringify!($name), params, grads, lists, hypers)
            }
        )*

        /// The configured kernel named `kernel` (a float kernel's name) for `lists` and `hypers`
        /// as its generic call takes them, checked as that call checks them (None: no such
        /// kernel).
        pub(crate) fn prepared_kernel<'py>(
            kernel: &str,
            lists: &Bound<'py, PyTuple>,
            hypers: Option<&Bound<'py, PyDict>>,
        ) -> PyResult<Option<(&'static str, Box<dyn crate::prepared::PreparedKernel>, Layout<'py>)>> {
            match kernel {
                $(
                    stringify!($name) => {
                        let cfg = checked_config::<core::$cfg>(stringify!($name), lists, hypers, &[])?;
                        let layout = Layout::of::<core::$cfg>(&cfg.0, lists)?;
                        Ok(Some((stringify!($name), Box::new(cfg), layout)))
                    }
                )*
                _ => Ok(None),
            }
        }

        /// Add every optimizer kernel to the module, and `KERNEL_SPECS`: for each kernel name,
        /// `(hyperparameters as (name, "real" | "flag"), state lists as (name, option or None),
        /// scalar array name or None)`, which the tests compare with the Python registry.
        pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let specs = PyDict::new(m.py());
            $(
                m.add_function(wrap_pyfunction!($name, m)?)?;
                specs.set_item(stringify!($name), describe::<core::$cfg>(m.py())?)?;
                crate::lowp::add_bf16_kernel::<core::$cfg>(
                    m,
                    const { const_cstr(concat!(stringify!($name), "_bf16\0")) },
                )?;
            )*
            m.add("KERNEL_SPECS", specs)
        }
    };
}

ferroptim_core::for_each_optimizer!(kernels);

/// A C string from a literal ending in a NUL byte (checked at compile time).
const fn const_cstr(s: &'static str) -> &'static std::ffi::CStr {
    match std::ffi::CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("not a NUL-terminated string"),
    }
}

fn describe<C: Optimizer>(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    let hypers = PyList::empty(py);
    for &(name, kind) in C::HYPERS {
        let kind = match kind {
            HyperKind::Real => "real",
            HyperKind::Flag => "flag",
        };
        hypers.append((name, kind))?;
    }
    let states = PyList::empty(py);
    for s in C::STATES {
        states.append((s.name, s.when))?;
    }
    PyTuple::new(
        py,
        [
            hypers.into_any(),
            states.into_any(),
            C::SCALARS.into_pyobject(py)?.into_any(),
        ],
    )
}

/// The roofline kernel: moves the bytes of a step with `len(states)` state lists, no arithmetic.
struct Roofline(usize);

impl StepKernel for Roofline {
    fn validate(&self) -> Result<(), core::Error> {
        Ok(())
    }
    fn step<T: Real>(&self, t: &mut [TensorRef<'_, T>], _s: &mut [f32]) -> Result<(), core::Error> {
        core::roofline::roofline_step(t, self.0)
    }
}

/// Move the bytes of an optimizer step with the given state lists (0 to 3), without arithmetic.
#[pyfunction]
#[pyo3(signature = (params, grads, *states))]
pub fn roofline_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    states: Vec<Any<'py>>,
) -> PyResult<()> {
    const NAMES: [&str; 3] = ["states[0]", "states[1]", "states[2]"];
    if states.len() > NAMES.len() {
        return Err(PyValueError::new_err("at most 3 state lists"));
    }
    let lists: Vec<(&'static str, Option<&Any<'py>>)> = states
        .iter()
        .zip(NAMES)
        .map(|(s, n)| (n, Some(s)))
        .collect();
    let args = CallArgs {
        params,
        grads,
        states: &lists,
        steps: None,
        scalars: None,
        bf16_state: false,
    };
    Batch::gather(py, args)?.run(py, &Roofline(states.len()))
}

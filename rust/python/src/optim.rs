//! One Python function per optimizer kernel: `<name>_step(params, grads, <state lists>, steps, *, ...)`.
//!
//! Lists are aligned by position; a `None` gradient skips its tensor (its state and step are left
//! alone). `steps` is an int64 array of per-tensor step counts, incremented in place for every
//! tensor that was stepped. Hyperparameters are keyword-only and named as in torch.optim.

use crate::arrays::{Batch, CallArgs, StepKernel};
use ferroptim_core as core;
use ferroptim_core::{GradClip, Real, TensorRef};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Any<'py> = Bound<'py, PyAny>;

fn config_error(e: core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// An optional state list, which must be given exactly when `option` is on (so a list can never
/// land in another list's slot).
fn slot<'a, 'py>(
    name: &'static str,
    list: Option<&'a Any<'py>>,
    needed: bool,
    option: &str,
) -> PyResult<(&'static str, Option<&'a Any<'py>>)> {
    match (list.is_some(), needed) {
        (false, true) => Err(PyValueError::new_err(format!(
            "{name}: a list of arrays is required when {option}"
        ))),
        (true, false) => Err(PyValueError::new_err(format!(
            "{name}: must be None unless {option}"
        ))),
        _ => Ok((name, list)),
    }
}

macro_rules! step_kernel {
    ($cfg:ty, |$s:ident, $t:ident, $sc:ident| $body:expr) => {
        impl StepKernel for Kernel<$cfg> {
            fn validate(&self) -> Result<(), core::Error> {
                self.0.validate()
            }
            fn step<T: Real>(
                &self,
                $t: &mut [TensorRef<'_, T>],
                $sc: &mut [f32],
            ) -> Result<(), core::Error> {
                let $s = &self.0;
                $body
            }
        }
    };
}

/// A core configuration as a [`StepKernel`].
struct Kernel<C>(C);

step_kernel!(core::SgdConfig, |c, t, _s| core::sgd_step(t, c));
step_kernel!(core::AdagradConfig, |c, t, _s| core::adagrad_step(t, c));
step_kernel!(core::AdadeltaConfig, |c, t, _s| core::adadelta_step(t, c));
step_kernel!(core::RmspropConfig, |c, t, _s| core::rmsprop_step(t, c));
step_kernel!(core::AdamConfig, |c, t, _s| core::adam_step(t, c));
step_kernel!(core::AdamaxConfig, |c, t, _s| core::adamax_step(t, c));
step_kernel!(core::NadamConfig, |c, t, s| core::nadam_step(t, s, c));
step_kernel!(core::RadamConfig, |c, t, _s| core::radam_step(t, c));
step_kernel!(core::LionConfig, |c, t, _s| core::lion_step(t, c));

/// Validate `cfg`, check the arrays, and run the step without the GIL.
fn run<'py, C>(
    py: Python<'py>,
    cfg: C,
    params: &Any<'py>,
    grads: &Any<'py>,
    states: &[(&'static str, Option<&Any<'py>>)],
    steps: &Any<'py>,
) -> PyResult<()>
where
    Kernel<C>: StepKernel,
{
    run_with_scalars(py, cfg, params, grads, states, steps, None)
}

/// [`run`] for optimizers that also keep one float32 scalar per tensor.
fn run_with_scalars<'py, C>(
    py: Python<'py>,
    cfg: C,
    params: &Any<'py>,
    grads: &Any<'py>,
    states: &[(&'static str, Option<&Any<'py>>)],
    steps: &Any<'py>,
    scalars: Option<(&'static str, &Any<'py>)>,
) -> PyResult<()>
where
    Kernel<C>: StepKernel,
{
    let kernel = Kernel(cfg);
    kernel.validate().map_err(config_error)?;
    let args = CallArgs {
        params,
        grads,
        states,
        steps: Some(steps),
        scalars,
    };
    Batch::gather(py, args)?.run(py, &kernel)
}

/// SGD step. State: `momentum_buffers` (pass None when momentum is 0).
#[pyfunction]
#[pyo3(signature = (params, grads, momentum_buffers, steps, *, lr, momentum, dampening, weight_decay, nesterov, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn sgd_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    momentum_buffers: Option<&Any<'py>>,
    steps: &Any<'py>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::SgdConfig {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    // Hyperparameter errors come first, as in the reference.
    cfg.validate().map_err(config_error)?;
    let states = [slot(
        "momentum_buffers",
        momentum_buffers,
        momentum != 0.0,
        "momentum != 0",
    )?];
    run(py, cfg, params, grads, &states, steps)
}

/// Adagrad step. State: `state_sums`.
#[pyfunction]
#[pyo3(signature = (params, grads, state_sums, steps, *, lr, lr_decay, weight_decay, eps, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adagrad_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    state_sums: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    eps: f64,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::AdagradConfig {
        lr,
        lr_decay,
        weight_decay,
        eps,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    let states = [("state_sums", Some(state_sums))];
    run(py, cfg, params, grads, &states, steps)
}

/// Adadelta step. State: `square_avgs`, `acc_deltas`.
#[pyfunction]
#[pyo3(signature = (params, grads, square_avgs, acc_deltas, steps, *, lr, rho, eps, weight_decay, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adadelta_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    square_avgs: &Any<'py>,
    acc_deltas: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::AdadeltaConfig {
        lr,
        rho,
        eps,
        weight_decay,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    let states = [
        ("square_avgs", Some(square_avgs)),
        ("acc_deltas", Some(acc_deltas)),
    ];
    run(py, cfg, params, grads, &states, steps)
}

/// RMSprop step. State: `square_avgs`, `grad_avgs` (centered, else None), `momentum_buffers`
/// (momentum > 0, else None).
#[pyfunction]
#[pyo3(signature = (params, grads, square_avgs, grad_avgs, momentum_buffers, steps, *, lr, alpha, eps, weight_decay, momentum, centered, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn rmsprop_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    square_avgs: &Any<'py>,
    grad_avgs: Option<&Any<'py>>,
    momentum_buffers: Option<&Any<'py>>,
    steps: &Any<'py>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::RmspropConfig {
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    // Hyperparameter errors come first, as in the reference.
    cfg.validate().map_err(config_error)?;
    let states = [
        ("square_avgs", Some(square_avgs)),
        slot("grad_avgs", grad_avgs, centered, "centered=True")?,
        slot(
            "momentum_buffers",
            momentum_buffers,
            momentum > 0.0,
            "momentum > 0",
        )?,
    ];
    run(py, cfg, params, grads, &states, steps)
}

/// Adam / AdamW / AMSGrad step. State: `exp_avgs`, `exp_avg_sqs`, `max_exp_avg_sqs` (amsgrad, else
/// None).
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adam_step<'py>(
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
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
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
    // Hyperparameter errors come first, as in the reference.
    cfg.validate().map_err(config_error)?;
    let states = [
        ("exp_avgs", Some(exp_avgs)),
        ("exp_avg_sqs", Some(exp_avg_sqs)),
        slot("max_exp_avg_sqs", max_exp_avg_sqs, amsgrad, "amsgrad=True")?,
    ];
    run(py, cfg, params, grads, &states, steps)
}

/// Adamax step. State: `exp_avgs`, `exp_infs`.
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_infs, steps, *, lr, beta1, beta2, eps, weight_decay, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn adamax_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avgs: &Any<'py>,
    exp_infs: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::AdamaxConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        maximize,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    let states = [("exp_avgs", Some(exp_avgs)), ("exp_infs", Some(exp_infs))];
    run(py, cfg, params, grads, &states, steps)
}

/// NAdam step. State: `exp_avgs`, `exp_avg_sqs`, and `mu_products` (float32 array, one per param).
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, *, lr, beta1, beta2, eps, weight_decay, momentum_decay, maximize, decoupled_weight_decay, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn nadam_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avgs: &Any<'py>,
    exp_avg_sqs: &Any<'py>,
    mu_products: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::NadamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        momentum_decay,
        maximize,
        decoupled_weight_decay,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    let states = [
        ("exp_avgs", Some(exp_avgs)),
        ("exp_avg_sqs", Some(exp_avg_sqs)),
    ];
    let scalars = Some(("mu_products", mu_products));
    run_with_scalars(py, cfg, params, grads, &states, steps, scalars)
}

/// RAdam step. State: `exp_avgs`, `exp_avg_sqs`.
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay, maximize, decoupled_weight_decay, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn radam_step<'py>(
    py: Python<'py>,
    params: &Any<'py>,
    grads: &Any<'py>,
    exp_avgs: &Any<'py>,
    exp_avg_sqs: &Any<'py>,
    steps: &Any<'py>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
    let cfg = core::RadamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        maximize,
        decoupled_weight_decay,
        grad_clip: GradClip {
            scale: grad_scale,
            clip_value,
        },
    };
    let states = [
        ("exp_avgs", Some(exp_avgs)),
        ("exp_avg_sqs", Some(exp_avg_sqs)),
    ];
    run(py, cfg, params, grads, &states, steps)
}

/// Lion step. State: `exp_avgs`.
#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, steps, *, lr, beta1, beta2, weight_decay, maximize, grad_scale=1.0, clip_value=None))]
#[allow(clippy::too_many_arguments)]
pub fn lion_step<'py>(
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
    grad_scale: f64,
    clip_value: Option<f64>,
) -> PyResult<()> {
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
    let states = [("exp_avgs", Some(exp_avgs))];
    run(py, cfg, params, grads, &states, steps)
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
    };
    Batch::gather(py, args)?.run(py, &Roofline(states.len()))
}

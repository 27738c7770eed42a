//! One module per optimizer family. Each declares its hyperparameters once with
//! [`optimizer_config!`](crate::optimizer_config) (a `*Config` struct with torch's defaults, its
//! range checks, and the keyword names the Python binding parses), implements [`Optimizer`] (its
//! state lists and how to run a step), and writes its element update as one short
//! `Update` function (the crate-private `fused` module runs it over the arrays).
//!
//! [`for_each_optimizer!`](crate::for_each_optimizer) lists every optimizer once; the binding
//! registers one Python kernel per entry from it.

pub mod adabelief;
pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod lion;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod sgd;

pub use adabelief::{adabelief_step, AdabeliefConfig};
pub use adadelta::{adadelta_step, AdadeltaConfig};
pub use adagrad::{adagrad_step, AdagradConfig};
pub use adam::{adam_step, AdamConfig};
pub use adamax::{adamax_step, AdamaxConfig};
pub use lion::{lion_step, LionConfig};
pub use nadam::{nadam_step, NadamConfig};
pub use radam::{radam_step, RadamConfig};
pub use rmsprop::{rmsprop_step, RmspropConfig};
pub use sgd::{sgd_step, SgdConfig};

use crate::clip::GradClip;
use crate::error::Error;
use crate::fused::Target;
use crate::real::Real;
use crate::tensor::TensorRef;

/// Every optimizer: `$callback!(kernel_name: ConfigType, ...)`. The Python binding builds its
/// `ferroptim._native.<kernel_name>` functions from this list.
#[macro_export]
macro_rules! for_each_optimizer {
    ($callback:ident) => {
        $callback! {
            sgd_step: SgdConfig,
            adagrad_step: AdagradConfig,
            adadelta_step: AdadeltaConfig,
            rmsprop_step: RmspropConfig,
            adam_step: AdamConfig,
            adamax_step: AdamaxConfig,
            nadam_step: NadamConfig,
            radam_step: RadamConfig,
            lion_step: LionConfig,
            adabelief_step: AdabeliefConfig,
        }
    };
}

/// `pub fn $kernel(tensors, cfg)`: the public one-call step of an optimizer on float state,
/// [`Optimizer::step`] without a per-tensor scalar array. The doc comment given with it says
/// what the caller must prepare. Internal to the optimizer modules (exported only so that they
/// can name it by path).
#[doc(hidden)]
#[macro_export]
macro_rules! step_function {
    ($(#[$meta:meta])* $kernel:ident: $config:ident) => {
        $(#[$meta])*
        pub fn $kernel<T: $crate::Real>(
            tensors: &mut [$crate::TensorRef<'_, T>],
            cfg: &$config,
        ) -> Result<(), $crate::Error> {
            $crate::optim::Optimizer::step(cfg, tensors, &mut [])
        }
    };
}

/// A hyperparameter's type: a real number (`f64`) or a flag (`bool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyperKind {
    Real,
    Flag,
}

/// A hyperparameter's value, as the binding hands it over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HyperValue {
    Real(f64),
    Flag(bool),
}

/// The Rust types a hyperparameter field can have.
pub trait HyperType: Copy {
    const KIND: HyperKind;
    /// Store `value` if it has this type.
    fn assign(&mut self, value: HyperValue) -> bool;
}

/// `impl HyperType` for a field type stored from the `HyperValue` variant of the same name.
macro_rules! hyper_type {
    ($ty:ty, $variant:ident) => {
        impl HyperType for $ty {
            const KIND: HyperKind = HyperKind::$variant;
            fn assign(&mut self, value: HyperValue) -> bool {
                match value {
                    HyperValue::$variant(v) => {
                        *self = v;
                        true
                    }
                    _ => false,
                }
            }
        }
    };
}

hyper_type!(f64, Real);
hyper_type!(bool, Flag);

/// One state list of a kernel, in kernel order: its argument name and the option that turns it
/// on (`None`: always used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateList {
    pub name: &'static str,
    pub when: Option<&'static str>,
}

impl StateList {
    /// A list every call passes.
    pub const fn always(name: &'static str) -> Self {
        StateList { name, when: None }
    }
    /// A list passed only when `option` holds (`None` otherwise).
    pub const fn when(name: &'static str, option: &'static str) -> Self {
        StateList {
            name,
            when: Some(option),
        }
    }
}

/// Hyperparameters declared with [`optimizer_config!`](crate::optimizer_config): keyword names
/// and types in checking order, and setters by name.
pub trait Hyperparameters: Default + Clone + Send + Sync {
    /// `(name, kind)` of every keyword argument, in the order they are converted and checked.
    const HYPERS: &'static [(&'static str, HyperKind)];
    /// Set hyperparameter `name`; false if there is none of that name and type.
    fn set(&mut self, name: &str, value: HyperValue) -> bool;
    /// The in-step gradient clipping (not a keyword of the `HYPERS` list).
    fn grad_clip_mut(&mut self) -> &mut GradClip;
    /// Check every range declared in the config (clipping first).
    fn check_ranges(&self) -> Result<(), Error>;
}

/// An optimizer as the binding and the tests see it.
pub trait Optimizer: Hyperparameters {
    /// State lists, in kernel order.
    const STATES: &'static [StateList];
    /// Name of the per-tensor float32 scalar array (NAdam's `mu_products`), if any.
    const SCALARS: Option<&'static str> = None;
    /// Whether these options use state list `k` (always true for lists without a condition).
    fn uses_state(&self, k: usize) -> bool {
        let _ = k;
        true
    }
    /// Options that are valid alone but not together (checked after the ranges).
    fn check_combination(&self) -> Result<(), Error> {
        Ok(())
    }
    /// One step on every tensor of `target` (float state, or bfloat16 state widened and narrowed
    /// around the same element update); `scalars` is the per-tensor scalar array (empty without
    /// one).
    fn step_on<T: Real>(&self, target: impl Target<T>, scalars: &mut [f32]) -> Result<(), Error>;
    /// One step on every tensor; `scalars` is the per-tensor scalar array (empty without one).
    fn step<T: Real>(
        &self,
        tensors: &mut [TensorRef<'_, T>],
        scalars: &mut [f32],
    ) -> Result<(), Error> {
        self.step_on(tensors, scalars)
    }
    /// State arrays per tensor with these options.
    fn state_count(&self) -> usize {
        (0..Self::STATES.len())
            .filter(|&k| self.uses_state(k))
            .count()
    }
}

/// Declare an optimizer's hyperparameters once: the `pub` config struct (plus a `grad_clip`
/// field), `Default` with torch's defaults, `validate` (the declared ranges, then
/// [`Optimizer::check_combination`]) and the [`Hyperparameters`] the binding parses.
///
/// Each field is `name: f64 = default => range` with `range` one of `non_negative` (finite,
/// `>= 0`), `unit` (`0 <= x < 1`), `closed_unit` (`0 <= x <= 1`), `finite`; or
/// `name: bool = default => flag`.
#[macro_export]
macro_rules! optimizer_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr => $rule:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Gradient clipping inside the step (none by default).
            pub grad_clip: $crate::GradClip,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $( $field: $default, )*
                    grad_clip: $crate::GradClip::NONE,
                }
            }
        }

        impl $name {
            /// Check every hyperparameter's range, then the combinations.
            pub fn validate(&self) -> Result<(), $crate::Error> {
                $crate::optim::Hyperparameters::check_ranges(self)?;
                $crate::optim::Optimizer::check_combination(self)
            }

            /// [`validate`](Self::validate), then the common gradient steps of this config
            /// (maximize, clipping, weight decay into the gradient or, when `decoupled`, onto
            /// the parameter).
            pub(crate) fn checked_prep(
                &self,
                decoupled: bool,
            ) -> Result<$crate::fused::GradPrep, $crate::Error> {
                self.validate()?;
                let decay = $crate::fused::Decay::new(self.weight_decay, decoupled, self.lr);
                Ok($crate::fused::GradPrep::new(self.maximize, decay, &self.grad_clip))
            }
        }

        impl $crate::optim::Hyperparameters for $name {
            const HYPERS: &'static [(&'static str, $crate::optim::HyperKind)] = &[
                $( (stringify!($field), <$ty as $crate::optim::HyperType>::KIND), )*
            ];
            fn set(&mut self, name: &str, value: $crate::optim::HyperValue) -> bool {
                match name {
                    $( stringify!($field) =>
                        $crate::optim::HyperType::assign(&mut self.$field, value), )*
                    _ => false,
                }
            }
            fn grad_clip_mut(&mut self) -> &mut $crate::GradClip {
                &mut self.grad_clip
            }
            fn check_ranges(&self) -> Result<(), $crate::Error> {
                self.grad_clip.validate()?;
                $( $crate::optimizer_config!(@check self, $field, $rule); )*
                Ok(())
            }
        }
    };
    (@check $s:ident, $field:ident, non_negative) => {
        $crate::optim::check_range(stringify!($field), $s.$field, 0.0, f64::INFINITY, false,
            concat!(stringify!($field), " >= 0"))?
    };
    (@check $s:ident, $field:ident, unit) => {
        $crate::optim::check_range(stringify!($field), $s.$field, 0.0, 1.0, true,
            concat!("0 <= ", stringify!($field), " < 1"))?
    };
    (@check $s:ident, $field:ident, closed_unit) => {
        $crate::optim::check_range(stringify!($field), $s.$field, 0.0, 1.0, false,
            concat!("0 <= ", stringify!($field), " <= 1"))?
    };
    (@check $s:ident, $field:ident, finite) => {
        $crate::optim::check_range(stringify!($field), $s.$field, f64::NEG_INFINITY,
            f64::INFINITY, false, "a finite number")?
    };
    (@check $s:ident, $field:ident, flag) => {};
}

/// Check that `value` is finite and in `[lo, hi]` (`[lo, hi)` when `hi_open`), naming the
/// argument and the condition (`expected`) on failure.
#[doc(hidden)]
pub fn check_range(
    name: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    hi_open: bool,
    expected: &'static str,
) -> Result<(), Error> {
    let below_hi = if hi_open { value < hi } else { value <= hi };
    if value.is_finite() && value >= lo && below_hi {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            expected,
        })
    }
}

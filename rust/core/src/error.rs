//! The typed error every public kernel returns. Nothing is written when a kernel returns an error:
//! all checks run before the first element is touched.

use std::fmt;

/// Why a kernel call was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// A hyperparameter is outside its valid range (`name` is the argument, e.g. `"lr"`).
    InvalidHyperparameter {
        /// The argument's name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What would have been valid.
        expected: &'static str,
    },
    /// Two options that cannot be combined (e.g. nesterov without momentum).
    InvalidCombination(&'static str),
    /// An array's length differs from its parameter's.
    LengthMismatch {
        /// Which argument (e.g. `"grads"`, `"exp_avgs"`).
        arg: &'static str,
        /// Position in the list.
        index: usize,
        /// Length of the offending array.
        len: usize,
        /// Length of the parameter.
        expected: usize,
    },
    /// A tensor carries the wrong number of state arrays for the chosen options.
    StateCount {
        /// Position in the list.
        index: usize,
        /// State arrays given.
        got: usize,
        /// State arrays the options need.
        expected: usize,
    },
    /// A step count of zero was passed (steps count from 1 after the increment).
    ZeroStep {
        /// Position in the list.
        index: usize,
    },
    /// A per-channel array (weight, bias, running statistics, ...) has the wrong length.
    ChannelCount {
        /// Which argument (e.g. `"weight"`).
        arg: &'static str,
        /// Its length.
        got: usize,
        /// The number of channels of the input.
        expected: usize,
    },
    /// An array's element count differs from the layout `n * c * s` it is used with.
    ElementCount {
        /// Which argument (e.g. `"x"`, `"dy"`).
        arg: &'static str,
        /// Its length.
        got: usize,
        /// `n * c * s`.
        expected: usize,
    },
    /// Training-mode batch normalization needs more than one value per channel (`n * s > 1`).
    TooFewValues {
        /// Values per channel that were given (`n * s`).
        per_channel: usize,
        /// Channels.
        channels: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidHyperparameter {
                name,
                value,
                expected,
            } => write!(f, "invalid {name}: {value} (expected {expected})"),
            Error::InvalidCombination(why) => write!(f, "{why}"),
            Error::LengthMismatch {
                arg,
                index,
                len,
                expected,
            } => write!(
                f,
                "{arg}[{index}] has {len} elements but params[{index}] has {expected}"
            ),
            Error::StateCount {
                index,
                got,
                expected,
            } => write!(
                f,
                "tensor {index} has {got} state arrays but these options need {expected}"
            ),
            Error::ZeroStep { index } => write!(f, "step of tensor {index} must be at least 1"),
            Error::ChannelCount { arg, got, expected } => {
                write!(f, "{arg} has {got} channels but the input has {expected}")
            }
            Error::ElementCount { arg, got, expected } => write!(
                f,
                "{arg} has {got} elements but the layout needs {expected}"
            ),
            Error::TooFewValues {
                per_channel,
                channels,
            } => write!(
                f,
                "Expected more than 1 value per channel when training, got {per_channel} value(s) \
                 per channel for {channels} channels"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Check that `value` is finite and `>= lo`, naming the argument and the condition (`expected`)
/// on failure.
pub(crate) fn check_min(
    name: &'static str,
    value: f64,
    lo: f64,
    expected: &'static str,
) -> Result<(), Error> {
    crate::optim::check_range(name, value, lo, f64::INFINITY, false, expected)
}

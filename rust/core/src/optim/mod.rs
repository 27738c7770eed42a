//! One module per optimizer family. Each exposes a `*Config` (torch defaults via `Default`) and a
//! `*_step` function that updates a list of [`TensorRef`](crate::TensorRef)s in one fused pass.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod lion;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod sgd;

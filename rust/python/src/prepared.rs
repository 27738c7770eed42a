//! A kernel call prepared once per parameter group and repeated at every step, re-checking only
//! what can have changed since the last step (the fixed cost of a small step, issue 15).
//!
//! `prepare_step(kernel, params, lists, hypers, watch)` takes what the generic kernel call
//! `<kernel>(params, grads, *lists, **hypers)` takes, minus the gradients: the hyperparameters are
//! parsed and validated once; `params`, the state lists, the scalar array and `steps` are the
//! group's own (the optimizer's, all written by the step). `watch` pairs a group key with the
//! very object the hyperparameters were derived from. A call `prepared.step(group, grads,
//! grad_scale, clip_value, stream_offset)`:
//!
//! 1. with a `group` (a dict), returns False and does nothing unless `group["params"]` holds
//!    exactly the prepared parameters, every watched `group[key]` is the very object watched, and
//!    there is one gradient per parameter in a list or tuple: the optimizer then validates the
//!    changed group and prepares a new call (`group=None` skips this, for a caller that checked);
//! 2. checks `grad_scale` and `clip_value` as the kernel does;
//! 3. checks the written arrays as the generic call does ([`Batch::gather`]): in full the first
//!    time, afterwards by comparing everything those checks read (the object, its data address,
//!    dtype object, flags and shape, see [`Look`]) with what they read then. Equal fields give
//!    equal results, so an array reallocated, resized, retyped, made non-contiguous or read-only
//!    behind the optimizer's back is checked in full again and refused with the usual message;
//! 4. checks the gradients at every call: the dtype object and shape of their parameter,
//!    C-contiguous, aligned, owning their memory or viewing an array that does, and sharing no
//!    byte with a written array (a binary search in the written arrays' sorted spans). Anything
//!    else (another dtype object, a view of a memory map, an overlap, a non-array) goes through
//!    the full check, which accepts it or raises what the generic call raises;
//! 5. runs the kernel without the GIL, as the generic call does.
//!
//! Nothing is written before every check passed. Two threads calling one prepared step at once
//! are safe: the second finds the remembered checks busy and checks in full.

use crate::arrays::{Batch, CallArgs, Entry, RawArray};
use crate::error::core_error;
use crate::optim::{prepared_kernel, Kernel};
use ferroptim_core::lowp::Rounding;
use ferroptim_core::optim::Optimizer;
use ferroptim_core::GradClip;
use numpy::npyffi;
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::sync::{Mutex, MutexGuard, TryLockError};

type Any<'py> = Bound<'py, PyAny>;

/// What the checks of one array read: the object, its data address, dtype object, flags and
/// shape. Two looks at arrays with equal fields pass or fail the same checks.
#[derive(Clone, PartialEq, Eq)]
struct Look {
    obj: usize,
    data: usize,
    descr: usize,
    flags: std::ffi::c_int,
    shape: Vec<isize>,
}

/// The fields of `obj`'s array without building the shape (None if it is not an ndarray).
fn fields<'a>(obj: &'a Any<'_>) -> Option<(usize, usize, std::ffi::c_int, &'a [isize])> {
    let array = obj.cast::<PyUntypedArray>().ok()?;
    // Safety: `array` is a live ndarray; these are the fields NumPy's accessor macros read, and
    // `dimensions` holds `nd` entries.
    unsafe {
        let raw = &(*array.as_array_ptr()).fields;
        let shape: &[isize] = if raw.nd == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(raw.dimensions, raw.nd as usize)
        };
        Some((raw.data as usize, raw.descr as usize, raw.flags, shape))
    }
}

impl Look {
    fn of(obj: &Any<'_>) -> Option<Look> {
        let (data, descr, flags, shape) = fields(obj)?;
        Some(Look {
            obj: obj.as_ptr() as usize,
            data,
            descr,
            flags,
            shape: shape.to_vec(),
        })
    }

    /// Whether `obj` is the very array seen, unchanged.
    fn matches(&self, obj: &Any<'_>) -> bool {
        obj.as_ptr() as usize == self.obj
            && fields(obj).is_some_and(|(data, descr, flags, shape)| {
                data == self.data
                    && descr == self.descr
                    && flags == self.flags
                    && shape == self.shape.as_slice()
            })
    }
}

/// What one step adds to the prepared configuration: its clipping (checked) and, for bfloat16
/// state, how updated state is rounded.
pub(crate) struct StepOptions {
    clip: GradClip,
    rounding: Option<Rounding>,
}

/// A type-erased optimizer configuration, checked, runnable with each step's options.
pub(crate) trait PreparedKernel: Send + Sync {
    /// Run `batch` with `options`.
    fn run(&self, py: Python<'_>, batch: &Batch, options: StepOptions) -> PyResult<()>;
}

impl<C: Optimizer> PreparedKernel for Kernel<C> {
    fn run(&self, py: Python<'_>, batch: &Batch, options: StepOptions) -> PyResult<()> {
        let mut cfg = self.0.clone();
        *cfg.grad_clip_mut() = options.clip;
        let kernel = Kernel(cfg);
        match options.rounding {
            None => batch.run(py, &kernel),
            Some(rounding) => batch.run_bf16(py, &kernel, rounding),
        }
    }
}

/// What the last full check found, to be repeated by comparison.
struct Seen {
    /// Per parameter: the looks of its parameter and state arrays when they were checked (None:
    /// not checked, its gradient was None).
    tensors: Vec<Option<Vec<Look>>>,
    /// The looks of `steps` and of the scalar array, if any.
    counters: Vec<Look>,
    /// Per parameter: its checked entry (gradient aside), if checked.
    entries: Vec<Option<Entry>>,
    steps: Option<*mut i64>,
    scalars: Option<*mut f32>,
    /// Every checked written array's bytes `(start, end)`, sorted by start (disjoint: checked).
    written: Vec<(usize, usize)>,
    /// The written arrays, kept alive with their looks (no other array can take their place).
    _keep: Vec<Py<PyAny>>,
}

// Safety: the raw pointers point into the arrays `_keep` holds; they are read under the mutex,
// with the GIL, and handed only to the call that holds the mutex.
unsafe impl Send for Seen {}

/// A kernel call prepared for one parameter group (see the module documentation).
#[pyclass(frozen, module = "ferroptim._native")]
pub struct PreparedStep {
    kernel: Box<dyn PreparedKernel>,
    /// For bfloat16 state (uint16 arrays): `stochastic_rounding` and `seed`.
    bf16: Option<(bool, u64)>,
    params: Py<PyAny>,
    /// The state lists the options use, by name.
    states: Vec<(&'static str, Py<PyAny>)>,
    scalars: Option<(&'static str, Py<PyAny>)>,
    steps: Py<PyAny>,
    /// Group keys and the very objects the hyperparameters were read from.
    watch: Vec<(Py<PyString>, Py<PyAny>)>,
    seen: Mutex<Option<Seen>>,
}

/// Looks of every written array of one call: per parameter, its parameter's and state arrays'
/// (None where one is not an array), then `steps` and the scalar array.
type Looks = (Vec<Vec<Option<Look>>>, Vec<Option<Look>>);

impl PreparedStep {
    fn counters<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        let mut out = vec![self.steps.bind(py).clone()];
        out.extend(self.scalars.as_ref().map(|(_, s)| s.bind(py).clone()));
        out
    }

    /// The looks of every written array (None for an item that is missing or not an array).
    fn looks(&self, py: Python<'_>) -> Option<Looks> {
        let params = Items::of(self.params.bind(py))?;
        let states: Vec<Items<'_, '_>> = self
            .states
            .iter()
            .map(|(_, list)| Items::of(list.bind(py)))
            .collect::<Option<_>>()?;
        let tensors = (0..params.len())
            .map(|i| {
                std::iter::once(&params)
                    .chain(&states)
                    .map(|list| list.get(i).and_then(|a| Look::of(&a)))
                    .collect()
            })
            .collect();
        let counters = self.counters(py).iter().map(Look::of).collect();
        Some((tensors, counters))
    }

    /// Check every array in full, as the generic call does, and what was found, if it can be
    /// repeated by comparison (the written arrays looked the same before and after the checks).
    fn check_in_full(&self, py: Python<'_>, grads: &Any<'_>) -> PyResult<(Batch, Option<Seen>)> {
        let before = self.looks(py);
        let lists: Vec<(&'static str, Bound<'_, PyAny>)> = self
            .states
            .iter()
            .map(|(name, list)| (*name, list.bind(py).clone()))
            .collect();
        let states: Vec<(&'static str, Option<&Any<'_>>)> = lists
            .iter()
            .map(|(name, list)| (*name, Some(list)))
            .collect();
        let counters = self.counters(py);
        let args = CallArgs {
            params: self.params.bind(py),
            grads,
            states: &states,
            steps: Some(&counters[0]),
            scalars: self.scalars.as_ref().map(|(name, _)| (*name, &counters[1])),
            bf16_state: self.bf16.is_some(),
        };
        let batch = Batch::gather(py, args)?;
        let after = self.looks(py);
        let seen = match (before, after) {
            (Some(before), Some(after)) if before == after => self.seen(py, &batch, after),
            _ => None,
        };
        Ok((batch, seen))
    }

    /// What `batch`'s checks found, from the looks taken around them.
    fn seen(&self, py: Python<'_>, batch: &Batch, (tensors, counters): Looks) -> Option<Seen> {
        let n = tensors.len();
        let mut entries: Vec<Option<Entry>> = vec![None; n];
        let mut looks: Vec<Option<Vec<Look>>> = vec![None; n];
        let mut written = Vec::new();
        for e in batch.entries() {
            let tensor: Vec<Look> = tensors
                .get(e.index)?
                .iter()
                .cloned()
                .collect::<Option<_>>()?;
            written.extend(
                std::iter::once(&e.param)
                    .chain(&e.state)
                    .map(RawArray::span),
            );
            looks[e.index] = Some(tensor);
            entries[e.index] = Some(e.clone());
        }
        let (steps, scalars) = batch.counters();
        let counter_spans = [
            steps.map(|p| (p as usize, p as usize + n * 8)),
            scalars.map(|p| (p as usize, p as usize + n * 4)),
        ];
        written.extend(counter_spans.into_iter().flatten());
        written.retain(|(start, end)| end > start);
        written.sort_unstable();
        let mut keep: Vec<Py<PyAny>> = Vec::new();
        let params = Items::of(self.params.bind(py))?;
        for i in 0..n {
            keep.extend(params.get(i).map(Bound::unbind));
            for (_, list) in &self.states {
                keep.extend(Items::of(list.bind(py))?.get(i).map(Bound::unbind));
            }
        }
        keep.extend(self.counters(py).into_iter().map(Bound::unbind));
        Some(Seen {
            tensors: looks,
            counters: counters.into_iter().collect::<Option<_>>()?,
            entries,
            steps,
            scalars,
            written,
            _keep: keep,
        })
    }

    /// The batch of this call by comparison with `seen`, if everything matches (see the module
    /// documentation); None: check in full.
    fn compared(&self, py: Python<'_>, seen: &Seen, grads: &Any<'_>) -> Option<PyResult<Batch>> {
        let (params, grads) = (Items::of(self.params.bind(py))?, Items::of(grads)?);
        let n = params.len();
        if grads.len() != n || seen.tensors.len() != n {
            return None;
        }
        let states: Vec<Items<'_, '_>> = self
            .states
            .iter()
            .map(|(_, list)| Items::of(list.bind(py)))
            .collect::<Option<_>>()?;
        let counters = self.counters(py);
        if counters.len() != seen.counters.len()
            || !counters
                .iter()
                .zip(&seen.counters)
                .all(|(a, look)| look.matches(a))
        {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        let mut keep = Vec::with_capacity(n);
        for i in 0..n {
            let grad = grads.get(i)?;
            if grad.is_none() {
                continue;
            }
            let (Some(looks), Some(entry)) = (&seen.tensors[i], &seen.entries[i]) else {
                return None; // not checked last time
            };
            let same = std::iter::once(&params)
                .chain(&states)
                .zip(looks)
                .all(|(list, look)| list.get(i).is_some_and(|a| look.matches(&a)));
            if !same {
                return None;
            }
            let raw = plain_grad(&grad, entry, &looks[0], &seen.written)?;
            entries.push(entry.with_grad(raw));
            keep.push(grad.unbind());
        }
        Some(Batch::new(entries, keep, seen.steps, seen.scalars))
    }
}

/// The remembered checks, unless another call is using them (then None: check in full). A
/// mutex poisoned by a panic mid-call is taken over with nothing remembered.
fn try_seen(seen: &Mutex<Option<Seen>>) -> Option<MutexGuard<'_, Option<Seen>>> {
    match seen.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => {
            let mut guard = poisoned.into_inner();
            *guard = None;
            Some(guard)
        }
        Err(TryLockError::WouldBlock) => None,
    }
}

#[pymethods]
impl PreparedStep {
    /// One step (see the module documentation): False, with nothing done, when `group` (a
    /// dict, or None to skip this) no longer holds the prepared parameters and watched values or
    /// `grads` is not a list or tuple of one gradient per parameter; else True after the step.
    /// Raises what the generic kernel call raises, with nothing modified.
    #[pyo3(signature = (group, grads, grad_scale, clip_value, stream_offset))]
    fn step(
        &self,
        py: Python<'_>,
        group: &Any<'_>,
        grads: &Any<'_>,
        grad_scale: f64,
        clip_value: Option<f64>,
        stream_offset: u64,
    ) -> PyResult<bool> {
        if !group.is_none() {
            let Ok(group) = group.cast::<PyDict>() else {
                return Ok(false);
            };
            let params = self.params.bind(py);
            if !group_holds(group, params, &self.watch)? {
                return Ok(false);
            }
            match (Items::of(grads), Items::of(params)) {
                (Some(g), Some(p)) if g.len() == p.len() => {}
                _ => return Ok(false),
            }
        }
        let clip = GradClip {
            scale: grad_scale,
            clip_value,
        };
        clip.validate().map_err(core_error)?;
        let rounding = self.bf16.map(|(stochastic, seed)| match stochastic {
            true => Rounding::Stochastic {
                seed,
                stream: stream_offset,
            },
            false => Rounding::NearestEven,
        });
        // Held through the run: the remembered pointers are valid while `Seen` keeps its arrays.
        let mut guard = try_seen(&self.seen);
        let compared = guard
            .as_deref()
            .and_then(Option::as_ref)
            .and_then(|seen| self.compared(py, seen, grads));
        let batch = match compared {
            Some(batch) => batch?,
            None => {
                let (batch, seen) = self.check_in_full(py, grads)?;
                if let Some(guard) = guard.as_mut() {
                    **guard = seen;
                }
                batch
            }
        };
        self.kernel
            .run(py, &batch, StepOptions { clip, rounding })?;
        drop(guard);
        Ok(true)
    }
}

/// Prepare the call `<kernel>(params, grads, *lists, **hypers)` for any gradients (see the
/// module documentation): `kernel` is a float kernel's name, `bf16` gives `stochastic_rounding`
/// and `seed` for its bfloat16-state variant, and `watch` pairs group keys with the objects the
/// hyperparameters were read from. `previous`, a call prepared for the same group before its
/// options changed (a scheduler's new `lr`), hands over what its checks found when it worked on
/// the very same lists and state format. Raises what the generic call raises for its
/// hyperparameters and state lists.
#[pyfunction]
#[pyo3(signature = (kernel, params, lists, hypers, watch, bf16=None, previous=None))]
pub fn prepare_step(
    kernel: &str,
    params: &Any<'_>,
    lists: &Bound<'_, PyTuple>,
    hypers: &Bound<'_, PyDict>,
    watch: Vec<(Bound<'_, PyString>, Any<'_>)>,
    bf16: Option<(bool, u64)>,
    previous: Option<&Bound<'_, PreparedStep>>,
) -> PyResult<PreparedStep> {
    let Some((_, kernel, layout)) = prepared_kernel(kernel, lists, Some(hypers))? else {
        return Err(PyValueError::new_err(format!(
            "kernel: no optimizer kernel named {kernel:?}"
        )));
    };
    if Items::of(params).is_none() {
        return Err(PyValueError::new_err(
            "params must be a list or tuple of arrays",
        ));
    }
    let prepared = PreparedStep {
        kernel,
        bf16,
        params: params.clone().unbind(),
        states: layout
            .states
            .into_iter()
            .filter_map(|(name, list)| list.map(|l| (name, l.unbind())))
            .collect(),
        scalars: layout.scalars.map(|(name, s)| (name, s.unbind())),
        steps: layout.steps.unbind(),
        watch: watch
            .into_iter()
            .map(|(k, v)| (k.unbind(), v.unbind()))
            .collect(),
        seen: Mutex::new(None),
    };
    if let Some(previous) = previous {
        prepared.take_over(previous.get());
    }
    Ok(prepared)
}

impl PreparedStep {
    /// Take what `other`'s checks found, if it checks the very same arrays the same way (the
    /// same parameter list, state lists, counters and state format; the hyperparameters do not
    /// enter the array checks).
    fn take_over(&self, other: &PreparedStep) {
        let same = |a: &Py<PyAny>, b: &Py<PyAny>| a.as_ptr() == b.as_ptr();
        let same_lists = same(&self.params, &other.params)
            && same(&self.steps, &other.steps)
            && self.bf16.is_some() == other.bf16.is_some()
            && self.states.len() == other.states.len()
            && (self.states.iter().zip(&other.states)).all(|(a, b)| a.0 == b.0 && same(&a.1, &b.1))
            && match (&self.scalars, &other.scalars) {
                (Some(a), Some(b)) => same(&a.1, &b.1),
                (None, None) => true,
                _ => false,
            };
        if !same_lists {
            return;
        }
        if let (Some(mut mine), Some(mut theirs)) = (try_seen(&self.seen), try_seen(&other.seen)) {
            *mine = theirs.take();
        }
    }
}

/// `group["params"]` holds exactly `params`'s arrays, and every watched key the watched object.
fn group_holds(
    group: &Bound<'_, PyDict>,
    params: &Any<'_>,
    watch: &[(Py<PyString>, Py<PyAny>)],
) -> PyResult<bool> {
    let py = group.py();
    let Some(given) = group.get_item(pyo3::intern!(py, "params"))? else {
        return Ok(false);
    };
    if !same_items(&given, params) {
        return Ok(false);
    }
    for (key, value) in watch {
        match group.get_item(key.bind(py))? {
            Some(now) if now.as_ptr() == value.as_ptr() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// A list or tuple argument, read item by item without copying.
enum Items<'a, 'py> {
    List(&'a Bound<'py, PyList>),
    Tuple(&'a Bound<'py, PyTuple>),
}

impl<'a, 'py> Items<'a, 'py> {
    fn of(obj: &'a Any<'py>) -> Option<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            return Some(Items::List(list));
        }
        obj.cast::<PyTuple>().ok().map(Items::Tuple)
    }
    fn len(&self) -> usize {
        match self {
            Items::List(l) => l.len(),
            Items::Tuple(t) => t.len(),
        }
    }
    /// Item `i` (None past the end, which a list changed meanwhile may reach).
    fn get(&self, i: usize) -> Option<Any<'py>> {
        match self {
            Items::List(l) => l.get_item(i).ok(),
            Items::Tuple(t) => t.get_item(i).ok(),
        }
    }
}

/// Whether two lists or tuples hold the very same objects in the same order.
fn same_items(a: &Any<'_>, b: &Any<'_>) -> bool {
    let (Some(a), Some(b)) = (Items::of(a), Items::of(b)) else {
        return false;
    };
    a.len() == b.len()
        && (0..a.len()).all(|i| match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => x.is(&y),
            _ => false,
        })
}

/// The checked data of gradient `grad` for parameter entry `entry` (seen as `param`), if it
/// passes the generic checks by the cheap route: an ndarray with the parameter's very dtype
/// object and shape, C-contiguous, aligned, owning its memory or viewing an array that does (no
/// memory map), sharing no byte with a written array. None: check it in full.
fn plain_grad(
    grad: &Any<'_>,
    entry: &Entry,
    param: &Look,
    written: &[(usize, usize)],
) -> Option<RawArray> {
    let (data, descr, flags, shape) = fields(grad)?;
    let needed = npyffi::NPY_ARRAY_C_CONTIGUOUS | npyffi::NPY_ARRAY_ALIGNED;
    if descr != param.descr || shape != param.shape.as_slice() || flags & needed != needed {
        return None;
    }
    if !owned_memory(grad) {
        return None;
    }
    let len = entry.param.len;
    let bytes = len * entry.dtype.size();
    if len > 0 {
        // The last written span starting before this one ends; spans are sorted and disjoint.
        let k = written.partition_point(|&(start, _)| start < data + bytes);
        if k > 0 && written[k - 1].1 > data {
            return None;
        }
    }
    Some(RawArray::new(data as *mut u8, len, bytes))
}

/// Whether `obj`'s chain of base arrays ends in an array owning its memory (not in a memory
/// map or another buffer, whose file bytes the full check compares).
fn owned_memory(obj: &Any<'_>) -> bool {
    let mut current = obj.as_ptr();
    loop {
        // Safety: `current` is a live object (the chain of bases is owned by `obj`).
        let any = unsafe { Bound::from_borrowed_ptr(obj.py(), current) };
        let Ok(array) = any.cast::<PyUntypedArray>() else {
            return false;
        };
        // Safety: a live ndarray's base field.
        let base = unsafe { (*array.as_array_ptr()).fields.base };
        if base.is_null() {
            return true;
        }
        current = base;
    }
}

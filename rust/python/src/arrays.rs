//! Turning Python lists of NumPy arrays into checked slices for the core kernels.
//!
//! Every check runs before any kernel starts, so a refused call changes nothing. Each message names
//! the argument and the list index: `grads[3] has shape (4, 5) but params[3] has shape (5, 4)`.
//! Arrays must be NumPy arrays of float32 or float64 in native byte order, C-contiguous and aligned;
//! written arrays must be writeable; no written array may share memory with any other array.
//!
//! A checked call holds a strong reference to every array it points into until it returns: the
//! kernels run without the GIL, and another thread may meanwhile remove an array from the list it
//! came in (`grads.clear()`), which would otherwise free the memory being read or written.

use crate::error::core_error;
use ferroptim_core::clip::tensor_partials;
use ferroptim_core::lowp::{Bf16TensorRef, Rounding};
use ferroptim_core::{NormType, Real, TensorRef};
use numpy::npyffi;
use numpy::prelude::*;
use numpy::{PyArrayDescr, PyUntypedArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySequence, PyTuple};

/// Call `$body(positions, slices)` once per dtype present among `$items` (pairs of `Dtype` and
/// `RawArray`), with the positions of that dtype's arrays and their data as `&[T]`.
macro_rules! for_each_dtype {
    ($items:expr, |$pos:ident, $slices:ident| $body:block) => {{
        let items: Vec<(Dtype, RawArray)> = $items.collect();
        for_each_dtype!(@one items, Dtype::F32, f32, |$pos, $slices| $body);
        for_each_dtype!(@one items, Dtype::F64, f64, |$pos, $slices| $body);
    }};
    (@one $items:ident, $dtype:expr, $t:ty, |$pos:ident, $slices:ident| $body:block) => {{
        let ($pos, $slices): (Vec<usize>, Vec<&[$t]>) = $items
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| *d == $dtype)
            // Safety: checked data of `len` elements of this dtype, alive for the call.
            .map(|(i, (_, a))| (i, unsafe { a.slice::<$t>() }))
            .unzip();
        if !$pos.is_empty() $body
    }};
}

/// The element type of an array argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// One checked array: where its data is and how many elements it has.
#[derive(Clone, Copy)]
pub struct RawArray {
    pub(crate) data: *mut u8,
    pub(crate) len: usize,
    bytes: usize,
}

// Safety: a `RawArray` is an address and a length; reading or writing through it takes the
// `unsafe` accessors below, whose callers guarantee the array is alive and not aliased. Only the
// address crosses into the threads that run the kernels without the GIL.
unsafe impl Send for RawArray {}
unsafe impl Sync for RawArray {}

impl RawArray {
    /// `len` elements of `bytes` bytes in all at `data` (checked by the caller).
    pub(crate) fn new(data: *mut u8, len: usize, bytes: usize) -> Self {
        RawArray { data, len, bytes }
    }

    /// The memory `(start, end)` it occupies.
    pub(crate) fn span(&self) -> (usize, usize) {
        (self.data as usize, self.data as usize + self.bytes)
    }

    /// The data as a slice.
    ///
    /// Safety: the array was checked to hold `len` aligned elements of type `T` and outlives the
    /// returned slice; nothing writes it meanwhile.
    pub(crate) unsafe fn slice<'a, T>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(self.data as *const T, self.len)
    }

    /// The data as a mutable slice.
    ///
    /// Safety: as [`RawArray::slice`], the array is writeable, and no other reference to it is live.
    pub(crate) unsafe fn slice_mut<'a, T>(&self) -> &'a mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        std::slice::from_raw_parts_mut(self.data as *mut T, self.len)
    }
}

/// A memory range some argument occupies, for the overlap check.
struct Span {
    start: usize,
    end: usize,
    written: bool,
    label: Label,
}

impl Span {
    /// The bytes of `raw` (`None` when empty: an empty array overlaps nothing).
    fn of(raw: RawArray, written: bool, label: Label) -> Option<Span> {
        (raw.bytes > 0).then(|| Span {
            start: raw.data as usize,
            end: raw.data as usize + raw.bytes,
            written,
            label,
        })
    }
}

/// One tensor of the call: its parameter, gradient and state, all checked.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) index: usize,
    pub(crate) dtype: Dtype,
    pub(crate) param: RawArray,
    grad: RawArray,
    pub(crate) state: Vec<RawArray>,
}

impl Entry {
    /// The same tensor with another (checked) gradient.
    pub(crate) fn with_grad(&self, grad: RawArray) -> Entry {
        Entry {
            grad,
            ..self.clone()
        }
    }
}

/// Every tensor of one optimizer call, checked and ready to run.
pub struct Batch {
    entries: Vec<Entry>,
    /// The arrays `entries` point into, kept alive until the batch is dropped (with the GIL, after
    /// the kernels ran).
    _keep: Vec<Py<PyAny>>,
    /// Per-tensor step counts (int64), incremented in place after a successful step.
    steps: Option<*mut i64>,
    /// Per-tensor float32 scalars some optimizers keep (NAdam's mu_product).
    scalars: Option<*mut f32>,
}

/// The Python type name of `obj`, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

/// A shape as Python prints a tuple: `(3,)`, `(4, 5)`.
pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A list or tuple argument as a sequence of items.
pub fn items<'py>(arg: &'static str, obj: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = obj.cast::<PyList>() {
        return Ok(list.iter().collect());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return Ok(tuple.iter().collect());
    }
    if obj.cast::<PySequence>().is_ok() && obj.cast::<PyUntypedArray>().is_err() {
        return obj
            .try_iter()?
            .collect::<PyResult<Vec<_>>>()
            .map_err(|e| PyTypeError::new_err(format!("{arg}: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "{arg} must be a list of numpy arrays, got {}",
        type_name(obj)
    )))
}

/// How an argument is named in error messages: `x`, or `grads[3]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Name(&'static str),
    Item(&'static str, usize),
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Name(name) => write!(f, "{name}"),
            Label::Item(name, index) => write!(f, "{name}[{index}]"),
        }
    }
}

/// The float dtypes, looked up once per call, and the checks every array argument gets.
pub(crate) struct Dtypes<'py> {
    f32: Bound<'py, PyArrayDescr>,
    f64: Bound<'py, PyArrayDescr>,
}

impl<'py> Dtypes<'py> {
    pub(crate) fn new(py: Python<'py>) -> Self {
        Dtypes {
            f32: numpy::dtype::<f32>(py),
            f64: numpy::dtype::<f64>(py),
        }
    }

    /// Check one array: an ndarray of float32 or float64 in native byte order, with the dtype and
    /// shape of `like` (whose owner is named in the message) when given, C-contiguous, aligned, and
    /// writeable if `written`.
    pub(crate) fn check<'a>(
        &self,
        obj: &'a Bound<'py, PyAny>,
        label: Label,
        written: bool,
        like: Option<(Dtype, &[usize], Label)>,
    ) -> PyResult<(&'a Bound<'py, PyUntypedArray>, Dtype, RawArray)> {
        let array = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{label} must be a numpy.ndarray, got {}",
                type_name(obj)
            ))
        })?;
        let descr = array.dtype();
        // Built-in dtypes are singletons, so pointer equality settles the common case.
        let dtype = if descr.is(&self.f32) || descr.is_equiv_to(&self.f32) {
            Dtype::F32
        } else if descr.is(&self.f64) || descr.is_equiv_to(&self.f64) {
            Dtype::F64
        } else {
            return Err(PyTypeError::new_err(format!(
                "{label} has dtype {descr}; expected float32 or float64 in native byte order"
            )));
        };
        if let Some((want, shape, owner)) = like {
            if dtype != want {
                return Err(PyTypeError::new_err(format!(
                    "{label} has dtype {descr} but {owner} has dtype {}",
                    dtype_name(want)
                )));
            }
            if array.shape() != shape {
                return Err(PyValueError::new_err(format!(
                    "{label} has shape {} but {owner} has shape {}",
                    shape_str(array.shape()),
                    shape_str(shape)
                )));
            }
        }
        Ok((
            array,
            dtype,
            raw_array(array, label, written, dtype.size())?,
        ))
    }
}

/// The data of an array whose dtype was checked (`item` bytes per element), once it is checked to
/// be C-contiguous, aligned and, if `written`, writeable.
fn raw_array(
    array: &Bound<'_, PyUntypedArray>,
    label: Label,
    written: bool,
    item: usize,
) -> PyResult<RawArray> {
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{label} is not C-contiguous; pass a contiguous array (np.ascontiguousarray \
             makes a copy, which would not be updated in place)"
        )));
    }
    let len: usize = array.shape().iter().product();
    let (flags, data) = flags_and_data(array);
    if len > 0 && flags & npyffi::NPY_ARRAY_ALIGNED == 0 {
        return Err(PyValueError::new_err(format!(
            "{label} is not aligned for its dtype"
        )));
    }
    if written && flags & npyffi::NPY_ARRAY_WRITEABLE == 0 {
        return Err(PyValueError::new_err(format!(
            "{label} is read-only; it must be writeable to be updated in place"
        )));
    }
    Ok(RawArray {
        data,
        len,
        bytes: len * item,
    })
}

struct Checker<'py> {
    dtypes: Dtypes<'py>,
    spans: Vec<Span>,
    /// The file bytes of arrays that map a file (`np.memmap`), keyed by (device, inode): two
    /// mappings of one file are at different addresses, so `spans` cannot see them overlap.
    file_spans: Vec<((u64, u64), Span)>,
    /// A strong reference to every checked array (see the module documentation).
    keep: Vec<Py<PyAny>>,
}

/// `(device, inode, start, end)` of the file bytes `obj` maps when its chain of base arrays ends
/// in something other than an array (a memory map, a buffer); `None` for arrays owning their
/// memory or viewing one that does (the common case, decided without calling Python).
fn mapped_file(obj: &Bound<'_, PyAny>) -> PyResult<Option<(u64, u64, usize, usize)>> {
    let py = obj.py();
    let mut current = obj.clone();
    loop {
        let Ok(array) = current.cast::<PyUntypedArray>() else {
            break; // a non-array base: ask Python what it maps
        };
        // Safety: `array` is a live ndarray; reading its base is what PyArray_BASE does.
        let base = unsafe { (*array.as_array_ptr()).fields.base };
        if base.is_null() {
            return Ok(None);
        }
        // Safety: `base` is a live object owned by `array`.
        current = unsafe { Bound::from_borrowed_ptr(py, base) };
    }
    py.import("ferroptim._file_spans")?
        .getattr("file_span")?
        .call1((obj,))?
        .extract()
}

/// The first pair `(earlier, later)` of spans, sorted by start, where one is written and they
/// overlap (one sweep: O(n) after the sort).
fn first_clash<'a>(spans: impl Iterator<Item = &'a Span>) -> Option<(&'a Span, &'a Span)> {
    // Among the spans seen so far, the one reaching furthest (and the furthest written one).
    let mut furthest: Option<&Span> = None;
    let mut furthest_written: Option<&Span> = None;
    for cur in spans {
        let clash = [furthest, furthest_written]
            .into_iter()
            .flatten()
            .find(|other| other.end > cur.start && (other.written || cur.written));
        if let Some(other) = clash {
            return Some((other, cur));
        }
        if furthest.is_none_or(|f| f.end < cur.end) {
            furthest = Some(cur);
        }
        if cur.written && furthest_written.is_none_or(|f| f.end < cur.end) {
            furthest_written = Some(cur);
        }
    }
    None
}

impl<'py> Checker<'py> {
    fn new(py: Python<'py>) -> Self {
        Checker {
            dtypes: Dtypes::new(py),
            spans: Vec::new(),
            file_spans: Vec::new(),
            keep: Vec::new(),
        }
    }

    /// Check one array and record its memory. `like` gives the dtype and shape it must match.
    fn array(
        &mut self,
        obj: &Bound<'py, PyAny>,
        arg: &'static str,
        index: usize,
        written: bool,
        like: Option<(Dtype, &[usize])>,
    ) -> PyResult<(RawArray, Dtype)> {
        let label = Label::Item(arg, index);
        let like = like.map(|(dtype, shape)| (dtype, shape, Label::Item("params", index)));
        let (_, dtype, raw) = self.dtypes.check(obj, label, written, like)?;
        self.track(obj, raw, written, arg, index)?;
        Ok((raw, dtype))
    }

    /// Check one bfloat16 state array (uint16 bit patterns, shaped like its float32 parameter)
    /// and record its memory.
    fn bf16_array(
        &mut self,
        obj: &Bound<'py, PyAny>,
        arg: &'static str,
        index: usize,
        shape: &[usize],
    ) -> PyResult<RawArray> {
        let label = Label::Item(arg, index);
        let array = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{label} must be a numpy.ndarray, got {}",
                type_name(obj)
            ))
        })?;
        if !array.dtype().is_equiv_to(&numpy::dtype::<u16>(obj.py())) {
            return Err(PyTypeError::new_err(format!(
                "{label} has dtype {}; bfloat16 state is uint16 (bit patterns)",
                array.dtype()
            )));
        }
        if array.shape() != shape {
            return Err(PyValueError::new_err(format!(
                "{label} has shape {} but params[{index}] has shape {}",
                shape_str(array.shape()),
                shape_str(shape)
            )));
        }
        let raw = raw_array(array, label, true, 2)?;
        self.track(obj, raw, true, arg, index)?;
        Ok(raw)
    }

    /// Record a checked array's memory (and mapped file bytes), and keep it alive.
    fn track(
        &mut self,
        obj: &Bound<'py, PyAny>,
        raw: RawArray,
        written: bool,
        arg: &'static str,
        index: usize,
    ) -> PyResult<()> {
        let label = Label::Item(arg, index);
        self.spans.extend(Span::of(raw, written, label));
        if raw.bytes > 0 {
            if let Some((device, inode, start, end)) = mapped_file(obj)? {
                let span = Span {
                    start,
                    end,
                    written,
                    label,
                };
                self.file_spans.push(((device, inode), span));
            }
        }
        self.keep.push(obj.clone().unbind());
        Ok(())
    }

    /// Refuse any overlap between a written array and any other array, in memory or in the
    /// bytes of a mapped file.
    fn check_overlaps(&mut self) -> PyResult<()> {
        self.spans.sort_unstable_by_key(|s| s.start);
        if let Some((a, b)) = first_clash(self.spans.iter()) {
            return Err(PyValueError::new_err(format!(
                "{} shares memory with {}; every updated array must be distinct",
                b.label, a.label
            )));
        }
        self.file_spans
            .sort_unstable_by_key(|(file, s)| (*file, s.start));
        for file in self.file_spans.chunk_by(|x, y| x.0 == y.0) {
            if let Some((a, b)) = first_clash(file.iter().map(|(_, s)| s)) {
                return Err(PyValueError::new_err(format!(
                    "{} maps the same file bytes as {} (two np.memmap of one file); every \
                     updated array must be distinct",
                    b.label, a.label
                )));
            }
        }
        Ok(())
    }

    /// A 1-d, writeable, contiguous array of `n` scalars of element type `E` (steps, mu_products).
    fn scalars<E: numpy::Element>(
        &mut self,
        obj: &Bound<'py, PyAny>,
        arg: &'static str,
        n: usize,
    ) -> PyResult<*mut E> {
        let py = obj.py();
        let array = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{arg} must be a numpy.ndarray, got {}",
                type_name(obj)
            ))
        })?;
        let want = numpy::dtype::<E>(py);
        if !array.dtype().is_equiv_to(&want) {
            return Err(PyTypeError::new_err(format!(
                "{arg} has dtype {}; expected {want}",
                array.dtype()
            )));
        }
        if array.ndim() != 1 || array.len() != n {
            return Err(PyValueError::new_err(format!(
                "{arg} must have shape ({n},), got {}",
                shape_str(array.shape())
            )));
        }
        let (flags, data) = flags_and_data(array);
        let needed = npyffi::NPY_ARRAY_C_CONTIGUOUS
            | npyffi::NPY_ARRAY_ALIGNED
            | npyffi::NPY_ARRAY_WRITEABLE;
        if n > 0 && flags & needed != needed {
            return Err(PyValueError::new_err(format!(
                "{arg} must be a writeable, aligned, C-contiguous array"
            )));
        }
        let raw = RawArray {
            data,
            len: n,
            bytes: n * std::mem::size_of::<E>(),
        };
        self.spans.extend(Span::of(raw, true, Label::Item(arg, 0)));
        self.keep.push(obj.clone().unbind());
        Ok(data as *mut E)
    }
}

/// NumPy's flag bits and data pointer of an array.
fn flags_and_data(array: &Bound<'_, PyUntypedArray>) -> (std::ffi::c_int, *mut u8) {
    // Safety: `array` is a live ndarray; reading these two fields is what NumPy's own accessor
    // macros (PyArray_FLAGS, PyArray_DATA) do.
    unsafe {
        let raw = array.as_array_ptr();
        ((*raw).fields.flags, (*raw).fields.data as *mut u8)
    }
}

/// NumPy's name of a dtype: `float32`, `float64`.
pub(crate) fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => f32::NAME,
        Dtype::F64 => f64::NAME,
    }
}

/// An array argument checked on its own (not part of a list), as the batch-norm kernels take
/// them: where its data is, its dtype and shape, and whether the call writes it.
pub(crate) struct Checked {
    pub(crate) label: Label,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) raw: RawArray,
    pub(crate) written: bool,
}

impl<'py> Dtypes<'py> {
    /// [`Dtypes::check`] for one named argument; `like` is the argument whose dtype and shape it
    /// must have.
    pub(crate) fn checked(
        &self,
        obj: &Bound<'py, PyAny>,
        name: &'static str,
        written: bool,
        like: Option<&Checked>,
    ) -> PyResult<Checked> {
        let like = like.map(|l| (l.dtype, l.shape.as_slice(), l.label));
        let label = Label::Name(name);
        let (array, dtype, raw) = self.check(obj, label, written, like)?;
        Ok(Checked {
            label,
            dtype,
            shape: array.shape().to_vec(),
            raw,
            written,
        })
    }
}

/// Refuse any written array among `arrays` that shares memory with another one (the same
/// sort-and-sweep as the list arguments'). The message names the written array first.
pub(crate) fn check_disjoint(arrays: &[&Checked]) -> PyResult<()> {
    let mut spans: Vec<Span> = arrays
        .iter()
        .filter_map(|a| Span::of(a.raw, a.written, a.label))
        .collect();
    spans.sort_by_key(|s| s.start); // stable: equal starts stay in argument order
    let position = |s: &Span| arrays.iter().position(|a| a.label == s.label);
    match first_clash(spans.iter()) {
        Some((a, b)) => {
            // the written one; of two written ones, the later argument
            let b_first = b.written && (!a.written || position(b) > position(a));
            let (written, other) = if b_first { (b, a) } else { (a, b) };
            Err(PyValueError::new_err(format!(
                "{} shares memory with {}; an output must not overlap any input",
                written.label, other.label
            )))
        }
        None => Ok(()),
    }
}

/// The arguments of one optimizer call, as Python passed them.
pub struct CallArgs<'a, 'py> {
    pub params: &'a Bound<'py, PyAny>,
    pub grads: &'a Bound<'py, PyAny>,
    /// State lists in the optimizer's documented order (`None` entries are skipped).
    pub states: &'a [(&'static str, Option<&'a Bound<'py, PyAny>>)],
    pub steps: Option<&'a Bound<'py, PyAny>>,
    pub scalars: Option<(&'static str, &'a Bound<'py, PyAny>)>,
    /// State stored as bfloat16 (uint16 arrays) for float32 parameters, instead of the
    /// parameter's dtype.
    pub bf16_state: bool,
}

impl Batch {
    /// A batch of tensors checked elsewhere (`keep`: the arrays they point into that nothing
    /// else keeps alive for the call).
    pub(crate) fn new(
        entries: Vec<Entry>,
        keep: Vec<Py<PyAny>>,
        steps: Option<*mut i64>,
        scalars: Option<*mut f32>,
    ) -> PyResult<Batch> {
        let batch = Batch {
            entries,
            _keep: keep,
            steps,
            scalars,
        };
        batch.check_steps()?;
        Ok(batch)
    }

    /// The checked tensors (those with a gradient), in order.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The step counts and the per-tensor scalars, if the call has them.
    pub(crate) fn counters(&self) -> (Option<*mut i64>, Option<*mut f32>) {
        (self.steps, self.scalars)
    }

    /// Check every array of the call. Tensors whose gradient is `None` are left out.
    pub fn gather(py: Python<'_>, args: CallArgs<'_, '_>) -> PyResult<Batch> {
        let params = items("params", args.params)?;
        let grads = items("grads", args.grads)?;
        let n = params.len();
        if grads.len() != n {
            return Err(PyValueError::new_err(format!(
                "got {} grads for {n} params; pass one gradient (or None) per parameter",
                grads.len()
            )));
        }
        let mut state_lists = Vec::new();
        for &(arg, list) in args.states {
            if let Some(list) = list {
                let list = items(arg, list)?;
                if list.len() != n {
                    return Err(PyValueError::new_err(format!(
                        "{arg} has {} arrays for {n} params",
                        list.len()
                    )));
                }
                state_lists.push((arg, list));
            }
        }
        let mut checker = Checker::new(py);
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            if grads[i].is_none() {
                continue;
            }
            let (param, dtype) = checker.array(&params[i], "params", i, true, None)?;
            if args.bf16_state && dtype != Dtype::F32 {
                return Err(PyTypeError::new_err(format!(
                    "params[{i}] has dtype {}; bfloat16 state needs float32 parameters",
                    dtype_name(dtype)
                )));
            }
            let param_array = params[i].cast::<PyUntypedArray>()?;
            let like = Some((dtype, param_array.shape()));
            let (grad, _) = checker.array(&grads[i], "grads", i, false, like)?;
            let mut state = Vec::with_capacity(state_lists.len());
            for (arg, list) in &state_lists {
                state.push(if args.bf16_state {
                    checker.bf16_array(&list[i], arg, i, param_array.shape())?
                } else {
                    checker.array(&list[i], arg, i, true, like)?.0
                });
            }
            entries.push(Entry {
                index: i,
                dtype,
                param,
                grad,
                state,
            });
        }
        let steps = match args.steps {
            Some(obj) => Some(checker.scalars::<i64>(obj, "steps", n)?),
            None => None,
        };
        let scalars = match args.scalars {
            Some((arg, obj)) => Some(checker.scalars::<f32>(obj, arg, n)?),
            None => None,
        };
        checker.check_overlaps()?;
        Batch::new(entries, checker.keep, steps, scalars)
    }

    fn check_steps(&self) -> PyResult<()> {
        if let Some(steps) = self.steps {
            for e in &self.entries {
                // Safety: `steps` was checked to hold one int64 per parameter.
                let s = unsafe { *steps.add(e.index) };
                if !(0..i64::MAX).contains(&s) {
                    return Err(PyValueError::new_err(format!(
                        "steps[{}] is {s}; step counts must be non-negative",
                        e.index
                    )));
                }
            }
        }
        Ok(())
    }

    /// The step `t` tensor `index` runs with: its count plus one (1 without a steps array).
    fn next_step(&self, index: usize) -> u64 {
        match self.steps {
            // Safety: checked length and range in `gather`.
            Some(steps) => unsafe { *steps.add(index) as u64 + 1 },
            None => 1,
        }
    }

    /// Run `kernel` on the float32 tensors and then the float64 ones, without the GIL. On success,
    /// every stepped tensor's count is incremented.
    pub fn run<K: StepKernel>(&self, py: Python<'_>, kernel: &K) -> PyResult<()> {
        self.run_all(py, |batch| {
            batch.run_dtype(Dtype::F32, tensor_ref::<f32>, |t, s| kernel.step(t, s))?;
            batch.run_dtype(Dtype::F64, tensor_ref::<f64>, |t, s| kernel.step(t, s))
        })
    }

    /// Run `kernel` on tensors with bfloat16 state (gathered with `bf16_state`), without the
    /// GIL; tensor `i`'s random stream is `rounding`'s stream plus `i`.
    pub fn run_bf16<K: Bf16Kernel>(
        &self,
        py: Python<'_>,
        kernel: &K,
        rounding: Rounding,
    ) -> PyResult<()> {
        let make = |e: &Entry, step: u64| {
            let rounding = match rounding {
                Rounding::Stochastic { seed, stream } => Rounding::Stochastic {
                    seed,
                    stream: stream.wrapping_add(e.index as u64),
                },
                nearest => nearest,
            };
            // Safety: as in `tensor_ref`, with uint16 state arrays.
            unsafe {
                let (p, g) = (e.param.slice_mut::<f32>(), e.grad.slice::<f32>());
                let t = Bf16TensorRef::new(p, g, step, rounding);
                e.state.iter().fold(t, |t, s| t.with_state(s.slice_mut()))
            }
        };
        self.run_all(py, |batch| {
            batch.run_dtype(Dtype::F32, make, |t, s| kernel.step_bf16(t, s))
        })
    }

    /// `run` without the GIL, then, on success, count a step for every stepped tensor.
    fn run_all(
        &self,
        py: Python<'_>,
        run: impl FnOnce(&Self) -> Result<(), ferroptim_core::Error> + Send,
    ) -> PyResult<()> {
        let result = py.detach(|| -> Result<(), ferroptim_core::Error> {
            run(self)?;
            if let Some(steps) = self.steps {
                for e in &self.entries {
                    // Safety: checked in `gather`; no other reference to this memory is live.
                    unsafe { *steps.add(e.index) += 1 };
                }
            }
            Ok(())
        });
        result.map_err(core_error)
    }

    /// Step the tensors of `dtype`, built by `make(entry, step)`, with `step(tensors, scalars)`;
    /// the per-tensor scalars are read before and written back after a successful step.
    fn run_dtype<'b, X>(
        &'b self,
        dtype: Dtype,
        make: impl Fn(&'b Entry, u64) -> X,
        step: impl FnOnce(&mut [X], &mut [f32]) -> Result<(), ferroptim_core::Error>,
    ) -> Result<(), ferroptim_core::Error> {
        let chosen: Vec<&Entry> = self.entries.iter().filter(|e| e.dtype == dtype).collect();
        if chosen.is_empty() {
            return Ok(());
        }
        let mut tensors: Vec<X> = chosen
            .iter()
            .map(|e| make(e, self.next_step(e.index)))
            .collect();
        let mut scalars: Vec<f32> = match self.scalars {
            // Safety: checked to hold one float32 per parameter.
            Some(ptr) => chosen
                .iter()
                .map(|e| unsafe { *ptr.add(e.index) })
                .collect(),
            None => Vec::new(),
        };
        step(&mut tensors, &mut scalars)?;
        if let Some(ptr) = self.scalars {
            for (e, v) in chosen.iter().zip(&scalars) {
                // Safety: as above.
                unsafe { *ptr.add(e.index) = *v };
            }
        }
        Ok(())
    }
}

/// The arrays of `e` (of element type `T`) as a core tensor at `step`.
fn tensor_ref<T: Real>(e: &Entry, step: u64) -> TensorRef<'_, T> {
    // Safety: `gather` checked that each array holds `len` aligned, contiguous elements of type
    // T, that written arrays are writeable, and that no written array overlaps any other; the
    // Python objects stay alive for this call, and each entry is made into one tensor per call.
    unsafe {
        let t = TensorRef::new(e.param.slice_mut(), e.grad.slice(), step);
        e.state.iter().fold(t, |t, s| t.with_state(s.slice_mut()))
    }
}

// Safety: a `Batch` is only used inside the call that built it, while the arrays it points into are
// kept alive by the caller's arguments; the kernels' writes go to disjoint, checked memory.
unsafe impl Send for Batch {}
unsafe impl Sync for Batch {}

/// An optimizer's core step function, callable for either dtype.
pub trait StepKernel: Sync + Send {
    /// Check the hyperparameters.
    fn validate(&self) -> Result<(), ferroptim_core::Error>;
    /// Update `tensors`; `scalars` holds per-tensor float32 scalar state where the optimizer has one.
    fn step<T: Real>(
        &self,
        tensors: &mut [TensorRef<'_, T>],
        scalars: &mut [f32],
    ) -> Result<(), ferroptim_core::Error>;
}

/// An optimizer's core step on bfloat16 state.
pub trait Bf16Kernel: Sync + Send {
    /// Update `tensors`; `scalars` as for [`StepKernel::step`].
    fn step_bf16(
        &self,
        tensors: &mut [Bf16TensorRef<'_>],
        scalars: &mut [f32],
    ) -> Result<(), ferroptim_core::Error>;
}

/// A checked list of arrays on their own (gradients to clip or measure), in order.
pub struct ArrayList {
    items: Vec<(Dtype, RawArray)>,
    /// The arrays `items` point into, kept alive as long as the list (see the module docs).
    _keep: Vec<Py<PyAny>>,
}

// Safety: as for `Batch`.
unsafe impl Send for ArrayList {}
unsafe impl Sync for ArrayList {}

impl ArrayList {
    /// Check every array of `obj` (a list; `None` entries are skipped): float32/float64,
    /// C-contiguous, aligned, writeable if `written`, and, if `written`, sharing memory with no
    /// other array of the list. Error messages give positions in the original list.
    pub fn gather(
        py: Python<'_>,
        arg: &'static str,
        obj: &Bound<'_, PyAny>,
        written: bool,
    ) -> PyResult<Self> {
        let list = items(arg, obj)?;
        let mut checker = Checker::new(py);
        let mut out = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            if a.is_none() {
                continue; // as torch skips parameters without a gradient
            }
            let (raw, dtype) = checker.array(a, arg, i, written, None)?;
            out.push((dtype, raw));
        }
        if written {
            checker.check_overlaps()?;
        }
        Ok(ArrayList {
            items: out,
            _keep: checker.keep,
        })
    }

    /// Number of arrays.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Per-array norm partials (see `ferroptim_core::clip::tensor_partials`) of the values
    /// clamped to `clamp` if given, in order.
    pub fn partials(&self, norm: NormType, clamp: Option<f64>) -> Vec<f64> {
        let mut out = vec![0.0; self.items.len()];
        for_each_dtype!(self.items.iter().copied(), |pos, arrays| {
            for (&p, v) in pos.iter().zip(tensor_partials(&arrays, norm, clamp)) {
                out[p] = v;
            }
        });
        out
    }

    /// Read every element once ([`ferroptim_core::roofline::read_pass`]); the XOR of the bits.
    pub fn read_pass(&self) -> f64 {
        let mut out = 0.0f64;
        for_each_dtype!(self.items.iter().copied(), |_pos, arrays| {
            out = f64::from_bits(
                out.to_bits() ^ ferroptim_core::roofline::read_pass(&arrays).to_bits(),
            );
        });
        out
    }

    /// Multiply array `i` by `factors[i]`.
    pub fn scale(&self, factors: &[f64]) {
        self.split_mut(
            |f32s, idx| ferroptim_core::clip::scale_each(f32s, &pick(factors, idx)),
            |f64s, idx| ferroptim_core::clip::scale_each(f64s, &pick(factors, idx)),
        );
    }

    /// Clamp every element into `[-clip_value, clip_value]`.
    pub fn clamp(&self, clip_value: f64) -> Result<(), ferroptim_core::Error> {
        use ferroptim_core::clip::clamp_all;
        // `clamp_all` checks the bound before it writes anything, and both dtypes get the same
        // bound: a refused one leaves every array untouched.
        let (mut f32_result, mut f64_result) = (Ok(()), Ok(()));
        self.split_mut(
            |a, _| f32_result = clamp_all(a, clip_value),
            |a, _| f64_result = clamp_all(a, clip_value),
        );
        f32_result.and(f64_result)
    }

    /// Hand the float32 and the float64 arrays (with their positions) to `f32s` and `f64s`.
    fn split_mut(
        &self,
        mut f32s: impl FnMut(Vec<&mut [f32]>, &[usize]),
        mut f64s: impl FnMut(Vec<&mut [f64]>, &[usize]),
    ) {
        let pos = |d: Dtype| -> Vec<usize> {
            (0..self.items.len())
                .filter(|&i| self.items[i].0 == d)
                .collect()
        };
        let (p32, p64) = (pos(Dtype::F32), pos(Dtype::F64));
        // Safety: `gather` checked each array (writeable, no overlaps when written) and the caller
        // holds the list for the call.
        f32s(
            p32.iter()
                .map(|&i| unsafe { self.items[i].1.slice_mut::<f32>() })
                .collect(),
            &p32,
        );
        f64s(
            p64.iter()
                .map(|&i| unsafe { self.items[i].1.slice_mut::<f64>() })
                .collect(),
            &p64,
        );
    }
}

fn pick(values: &[f64], positions: &[usize]) -> Vec<f64> {
    positions.iter().map(|&i| values[i]).collect()
}

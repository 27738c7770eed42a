//! The worker threads kernels use, and how a step's work is spread over them.
//!
//! Work below [`ASSIST_MIN_ELEMENTS`] stays on the calling thread. Mid-sized work is shared with one
//! helper thread (`assist.rs`), whose hand-off is cheaper than waking the pool. Larger work is split,
//! tensor by tensor and then into halves, down to [`GRAIN_ELEMENTS`] (a piece whose arrays fit in
//! L2), and the pieces run on a rayon pool of [`num_threads`] threads. With one thread everything
//! runs on the caller. The pool and the helper are rebuilt after `fork()`, whose child inherits no
//! threads: nothing the child needs is behind a lock its parent's threads may have held at the
//! moment of the fork (the child makes its own pool state, found lock-free by process id).

use rayon::ThreadPool;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// From this many elements in one call, the work is spread over the rayon pool.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;
/// From this many elements (and below [`PARALLEL_MIN_ELEMENTS`]), the calling thread shares the
/// work with one helper thread in pieces of [`ASSIST_PIECE_ELEMENTS`] (see `assist.rs`).
pub const ASSIST_MIN_ELEMENTS: usize = 1 << 14;
/// Piece size for work shared with the helper thread.
pub const ASSIST_PIECE_ELEMENTS: usize = 1 << 12;
/// Largest piece of one tensor handed to one thread.
pub const GRAIN_ELEMENTS: usize = 1 << 15;
/// Split points are multiples of this many elements (whole cache lines, whole vectors).
const SPLIT_ALIGN: usize = 64;
/// The most threads a pool may have: each is an OS thread, and far more than the machine has cores
/// only adds scheduling cost (a huge count would take minutes to spawn).
pub const MAX_THREADS: usize = 1024;

/// The pool of one process. A `fork()` child never touches its parent's `Slot`: the parent's
/// threads may hold its lock at the moment of the fork, and they do not exist in the child, so
/// the lock would never be released. The child makes its own `Slot` instead (see [`slot`]).
struct Slot {
    /// The process this slot belongs to.
    pid: u32,
    /// The thread count, readable without the lock (a child starts with its parent's count).
    threads: AtomicUsize,
    /// The pool (None: one thread), built at first use; `set_num_threads` replaces it.
    pool: Mutex<Option<Option<Arc<ThreadPool>>>>,
}

/// This process's `Slot`, leaked: a process has one, plus one inherited per `fork()` ancestor.
static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

fn default_threads() -> usize {
    std::env::var("FERROPTIM_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| (1..=MAX_THREADS).contains(&n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(threads: usize) -> Option<Arc<ThreadPool>> {
    if threads <= 1 {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ferroptim-{i}"))
        .build()
        .ok()
        .map(Arc::new)
}

/// The calling process's slot: created at first use, and again (lock-free) in a forked child,
/// which leaks its parent's slot and pool rather than touch them (their locks may be held by
/// threads that exist only in the parent).
fn slot() -> &'static Slot {
    let pid = std::process::id();
    loop {
        let current = SLOT.load(Ordering::Acquire);
        // Safety: slots are never freed.
        let inherited = unsafe { current.as_ref() };
        if let Some(s) = inherited.filter(|s| s.pid == pid) {
            return s;
        }
        let threads = inherited.map_or_else(default_threads, |s| s.threads.load(Ordering::Relaxed));
        let fresh = Box::into_raw(Box::new(Slot {
            pid,
            threads: AtomicUsize::new(threads),
            pool: Mutex::new(None),
        }));
        match SLOT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // Safety: `fresh` is valid and now published for the life of the process.
            Ok(_) => return unsafe { &*fresh },
            // Another thread of this process won: use its slot. Safety: `fresh` was never shared.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Option<Arc<ThreadPool>>>> {
    // A panic while holding this lock leaves plain data behind; keep using it.
    slot.pool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pool to run on (None: run on the calling thread), built at first use in each process.
fn current_pool() -> Option<Arc<ThreadPool>> {
    let slot = slot();
    lock(slot)
        .get_or_insert_with(|| build(slot.threads.load(Ordering::Relaxed)))
        .clone()
}

/// Number of threads kernels use (`FERROPTIM_NUM_THREADS`, else the machine's core count).
pub fn num_threads() -> usize {
    slot().threads.load(Ordering::Relaxed)
}

/// Set the number of threads kernels use, 1 to [`MAX_THREADS`]. Takes effect at the next call.
pub fn set_num_threads(threads: usize) -> Result<(), crate::Error> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(crate::Error::InvalidHyperparameter {
            name: "num_threads",
            value: threads as f64,
            expected: "1 <= num_threads <= 1024",
        });
    }
    let slot = slot();
    let mut pool = lock(slot);
    if slot.threads.load(Ordering::Relaxed) != threads {
        *pool = None; // rebuilt at the next use
        slot.threads.store(threads, Ordering::Relaxed);
    }
    Ok(())
}

/// Something that can be cut into two contiguous pieces.
pub(crate) trait Splittable: Sized + Send {
    fn len(&self) -> usize;
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// Run `f` on every item, cutting items into pieces of at most [`GRAIN_ELEMENTS`] and spreading
/// them over the pool when the total is large enough. `f` must not care how items are cut.
pub(crate) fn for_each_piece<W, F>(items: Vec<W>, f: F)
where
    W: Splittable,
    F: Fn(W) + Sync,
{
    let total: usize = items.iter().map(Splittable::len).sum();
    if total >= PARALLEL_MIN_ELEMENTS {
        if let Some(pool) = current_pool() {
            return pool.install(|| {
                use rayon::prelude::*;
                items.into_par_iter().for_each(|w| split_run(w, &f));
            });
        }
    } else if total >= ASSIST_MIN_ELEMENTS && num_threads() > 1 {
        let pieces: Vec<Mutex<Option<W>>> = cut(items, ASSIST_PIECE_ELEMENTS)
            .into_iter()
            .map(|w| Mutex::new(Some(w)))
            .collect();
        return crate::assist::run_shared(pieces.len(), &|i| {
            let piece = pieces[i].lock().ok().and_then(|mut slot| slot.take());
            if let Some(piece) = piece {
                f(piece);
            }
        });
    }
    items.into_iter().for_each(f)
}

/// `f(i)` for every `i < n`, in order, where item `i` covers about `elements / n` elements; spread
/// over the helper thread or the pool exactly as [`for_each_piece`] would spread `elements`
/// elements. The result does not depend on how the work was spread.
pub(crate) fn map_indexed<R, F>(n: usize, elements: usize, f: F) -> Vec<R>
where
    R: Copy + Send + Sync,
    F: Fn(usize) -> R + Sync,
{
    use std::sync::OnceLock;
    if elements >= PARALLEL_MIN_ELEMENTS {
        if let Some(pool) = current_pool() {
            use rayon::prelude::*;
            return pool.install(|| (0..n).into_par_iter().map(&f).collect());
        }
    } else if elements >= ASSIST_MIN_ELEMENTS && num_threads() > 1 {
        // Every piece runs exactly once, so every slot is set exactly once.
        let out: Vec<OnceLock<R>> = (0..n).map(|_| OnceLock::new()).collect();
        crate::assist::run_shared(n, &|i| {
            let _ = out[i].set(f(i));
        });
        return out
            .into_iter()
            .map(|x| {
                x.into_inner()
                    .unwrap_or_else(|| unreachable!("piece not run"))
            })
            .collect();
    }
    (0..n).map(f).collect()
}

/// Cut every item into consecutive pieces of at most `size` elements.
fn cut<W: Splittable>(items: Vec<W>, size: usize) -> Vec<W> {
    let mut pieces = Vec::new();
    for mut item in items {
        while item.len() > size {
            let (head, rest) = item.split_at(size);
            pieces.push(head);
            item = rest;
        }
        pieces.push(item);
    }
    pieces
}

fn split_run<W: Splittable, F: Fn(W) + Sync>(w: W, f: &F) {
    let len = w.len();
    if len <= GRAIN_ELEMENTS {
        return f(w);
    }
    let mid = (len / 2).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
    let (a, b) = w.split_at(mid);
    rayon::join(|| split_run(a, f), || split_run(b, f));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Range(usize, usize);
    impl Splittable for Range {
        fn len(&self) -> usize {
            self.1 - self.0
        }
        fn split_at(self, mid: usize) -> (Self, Self) {
            (Range(self.0, self.0 + mid), Range(self.0 + mid, self.1))
        }
    }

    #[test]
    fn pieces_cover_everything_once() {
        let sizes = [0, 1, 63, GRAIN_ELEMENTS + 1, 5 * GRAIN_ELEMENTS + 17];
        check_cover(&sizes);
        // Mid-sized: goes through the helper thread.
        check_cover(&[1, ASSIST_PIECE_ELEMENTS + 3, ASSIST_MIN_ELEMENTS]);
    }

    fn check_cover(sizes: &[usize]) {
        let mut start = 0;
        let items: Vec<Range> = sizes
            .iter()
            .map(|&n| {
                start += n;
                Range(start - n, start)
            })
            .collect();
        // Other tests change the thread count concurrently, and with one thread nothing is cut:
        // check coverage through the public path, and the cutting on its own.
        let covered = AtomicUsize::new(0);
        for_each_piece(items, |r| {
            covered.fetch_add(r.len(), Ordering::Relaxed);
        });
        assert_eq!(covered.into_inner(), sizes.iter().sum::<usize>());
        let total: usize = sizes.iter().sum();
        let (covered, max_piece) = (AtomicUsize::new(0), AtomicUsize::new(0));
        split_run(Range(0, total), &|r: Range| {
            covered.fetch_add(r.len(), Ordering::Relaxed);
            max_piece.fetch_max(r.len(), Ordering::Relaxed);
        });
        assert_eq!(covered.into_inner(), total);
        assert!(max_piece.into_inner() <= GRAIN_ELEMENTS);
        let pieces = cut(vec![Range(0, total)], ASSIST_PIECE_ELEMENTS);
        assert_eq!(pieces.iter().map(Splittable::len).sum::<usize>(), total);
        assert!(pieces.iter().all(|p| p.len() <= ASSIST_PIECE_ELEMENTS));
    }

    #[test]
    fn zero_threads_rejected() {
        assert!(set_num_threads(0).is_err());
        assert!(num_threads() >= 1);
    }
}

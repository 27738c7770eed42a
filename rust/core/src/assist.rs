//! A helper thread for work too small for the rayon pool but large enough to share.
//!
//! Waking a sleeping pool thread costs more than half of a 50,000-element step, so mid-sized work
//! goes through a lighter hand-off: the caller publishes a job of numbered pieces, starts on them at
//! once, and the helper claims pieces through the same atomic counter. The caller takes every piece
//! the helper has not claimed, so a helper that is asleep or busy never makes a call slower than
//! running it alone. After a job the helper spins for [`SPIN`] before parking, so back-to-back steps
//! find it awake.
//!
//! The caller takes pieces from the front and the helper from the back, so when both are busy the
//! split point, and with it the data each core touches, stays the same from one step to the next,
//! and each core finds its part of the arrays in its own cache.
//!
//! Protocol. `claim` packs the job's epoch (high 32 bits) with the front and back piece indices
//! (16 bits each); a piece is taken by a compare-and-swap that also checks the epoch, so a stale
//! claim for a finished job always fails. The caller returns only when `done` counts every piece, so
//! no piece of a job runs after its caller returns, and the job (which lives on the caller's stack)
//! is never read afterwards.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the helper keeps looking for work after a job before it parks.
pub const SPIN: Duration = Duration::from_micros(100);

const EPOCH_SHIFT: u32 = 32;
const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Most pieces one job can have.
const MAX_PIECES: usize = INDEX_MASK as usize;

/// A published job: `run(i)` for every piece `i` below `pieces`.
struct Job<'a> {
    run: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    /// `epoch << 32 | front << 16 | back`: pieces `front..back` are unclaimed.
    claim: AtomicU64,
    /// The epoch of the last published job.
    epoch: AtomicU64,
    /// Pieces finished in the current epoch.
    done: AtomicU64,
    /// The current `Job`, type-erased.
    job: AtomicPtr<()>,
    /// Set while the helper is (about to be) parked.
    sleeping: AtomicBool,
    /// The payload of the first piece that panicked on the helper in the current job (null: none),
    /// handed to the caller, which re-raises it; an atomic slot, so no lock is ever held by the
    /// helper (a lock held at a `fork()` would stay held in the child).
    panic_payload: AtomicPtr<Payload>,
}

/// A panic's payload, boxed once more so that a thin pointer can hold it.
type Payload = Box<dyn Any + Send + 'static>;

static SHARED: Shared = Shared {
    claim: AtomicU64::new(0),
    epoch: AtomicU64::new(0),
    done: AtomicU64::new(0),
    job: AtomicPtr::new(std::ptr::null_mut()),
    sleeping: AtomicBool::new(false),
    panic_payload: AtomicPtr::new(std::ptr::null_mut()),
};

/// One caller at a time; others run alone rather than wait. Holds the id of the process whose
/// thread is the caller (0: free), so that a `fork()` child whose parent had a caller at the
/// moment of the fork sees a caller of another process, which cannot exist here, and takes over.
static CALLER: AtomicU32 = AtomicU32::new(0);
/// The helper thread and the process it was started in (a thread does not survive `fork()`);
/// written only by the caller, each record leaked (one per process).
static HELPER: AtomicPtr<(Thread, u32)> = AtomicPtr::new(std::ptr::null_mut());

/// The right to publish jobs, released on drop.
struct CallerGuard;

impl CallerGuard {
    /// Become the caller, unless another thread of this process is.
    fn try_acquire() -> Option<CallerGuard> {
        let pid = std::process::id();
        let mut holder = CALLER.load(Ordering::Acquire);
        loop {
            if holder == pid {
                return None; // busy: a thread of this process is the caller
            }
            // Free (0), or held by a thread of a parent process (a fork copied the flag): take it.
            match CALLER.compare_exchange(holder, pid, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(CallerGuard),
                Err(now) => holder = now,
            }
        }
    }
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        CALLER.store(0, Ordering::Release);
    }
}

fn epoch_of(word: u64) -> u64 {
    word >> EPOCH_SHIFT
}

fn pack(epoch: u64, front: u64, back: u64) -> u64 {
    epoch << EPOCH_SHIFT | front << INDEX_BITS | back
}

/// Which end of the unclaimed range to take from.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

/// Take the next unclaimed piece of job `epoch` from `end`, if any is left.
fn claim(epoch: u64, end: End) -> Option<usize> {
    let shared = &SHARED;
    let mut current = shared.claim.load(Ordering::Acquire);
    loop {
        let front = (current >> INDEX_BITS) & INDEX_MASK;
        let back = current & INDEX_MASK;
        if epoch_of(current) != epoch || front >= back {
            return None;
        }
        let (next, piece) = match end {
            End::Front => (pack(epoch, front + 1, back), front),
            End::Back => (pack(epoch, front, back - 1), back - 1),
        };
        match shared
            .claim
            .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(piece as usize),
            Err(now) => current = now,
        }
    }
}

/// This process's helper thread, started at first use (only the caller gets here).
fn helper_thread() -> Option<Thread> {
    let pid = std::process::id();
    // Safety: records are never freed.
    if let Some((thread, owner)) = unsafe { HELPER.load(Ordering::Acquire).as_ref() } {
        if *owner == pid {
            return Some(thread.clone());
        }
    }
    let handle = std::thread::Builder::new()
        .name("ferroptim-assist".into())
        .spawn(helper_main)
        .ok()?;
    let thread = handle.thread().clone();
    // The parent's record (if any) is leaked: it names a thread that does not exist here.
    HELPER.store(
        Box::into_raw(Box::new((thread.clone(), pid))),
        Ordering::Release,
    );
    Some(thread)
}

fn helper_main() {
    let shared = &SHARED;
    let mut seen = epoch_of(shared.claim.load(Ordering::Acquire));
    loop {
        seen = wait_for_job(seen);
        while let Some(i) = claim(seen, End::Back) {
            // Safety: holding piece `i` of epoch `seen` keeps that job's caller waiting, so the
            // `Job` it published (before the epoch, with release ordering) is alive.
            let job = unsafe { &*(shared.job.load(Ordering::Acquire) as *const Job<'_>) };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (job.run)(i))) {
                keep_first_panic(payload);
            }
            shared.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Spin, then park, until a job newer than `seen` is published; return its epoch.
fn wait_for_job(seen: u64) -> u64 {
    let shared = &SHARED;
    let mut start = Instant::now();
    loop {
        for _ in 0..64 {
            let epoch = epoch_of(shared.claim.load(Ordering::Acquire));
            if epoch != seen {
                return epoch;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > SPIN {
            shared.sleeping.store(true, Ordering::SeqCst);
            if epoch_of(shared.claim.load(Ordering::SeqCst)) == seen {
                std::thread::park();
            }
            shared.sleeping.store(false, Ordering::SeqCst);
            start = Instant::now();
        }
    }
}

/// Run `run(i)` for every `i < pieces`, sharing the pieces with the helper thread when it is free.
/// A panic in any piece is re-raised here after every piece has finished.
pub(crate) fn run_shared(pieces: usize, run: &(dyn Fn(usize) + Sync)) {
    let alone = || (0..pieces).for_each(run);
    if !(2..=MAX_PIECES).contains(&pieces) {
        return alone();
    }
    let Some(_caller) = CallerGuard::try_acquire() else {
        return alone();
    };
    let Some(helper) = helper_thread() else {
        return alone();
    };
    let shared = &SHARED;
    let job = Job { run };
    // Epochs wrap after 2^32 jobs; only a claim stalled across all of them could be confused.
    let epoch = (shared.epoch.load(Ordering::Relaxed) + 1) & 0xFFFF_FFFF;
    shared.epoch.store(epoch, Ordering::Relaxed);
    let n = pieces as u64;
    shared.done.store(0, Ordering::Relaxed);
    shared
        .job
        .store(&job as *const Job<'_> as *mut (), Ordering::Relaxed);
    shared.claim.store(pack(epoch, 0, n), Ordering::SeqCst);
    if shared.sleeping.load(Ordering::SeqCst) {
        helper.unpark();
    }
    let mut caller_panic = None;
    while let Some(i) = claim(epoch, End::Front) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(i))) {
            caller_panic.get_or_insert(payload);
        }
        shared.done.fetch_add(1, Ordering::Release);
    }
    // The helper may still be finishing a piece that reads this job: wait for it.
    while shared.done.load(Ordering::Acquire) < n {
        std::hint::spin_loop();
    }
    let helper_panic = take_helper_panic();
    if let Some(payload) = caller_panic.or(helper_panic) {
        std::panic::resume_unwind(payload);
    }
}

/// Store the payload of a panic on the helper, unless an earlier piece's is already stored.
fn keep_first_panic(payload: Payload) {
    let boxed = Box::into_raw(Box::new(payload));
    let slot = &SHARED.panic_payload;
    if slot
        .compare_exchange(
            std::ptr::null_mut(),
            boxed,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // Safety: `boxed` came from `Box::into_raw` above and was not published.
        drop(unsafe { Box::from_raw(boxed) });
    }
}

/// The payload of a panic on the helper during the job that just finished, if any (and clear it).
fn take_helper_panic() -> Option<Payload> {
    let raw = SHARED
        .panic_payload
        .swap(std::ptr::null_mut(), Ordering::AcqRel);
    // Safety: a non-null pointer in the slot came from `Box::into_raw` in `keep_first_panic` and
    // is owned by whoever swaps it out, here.
    (!raw.is_null()).then(|| *unsafe { Box::from_raw(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_piece_runs_exactly_once() {
        for pieces in [0, 1, 2, 3, 16, 1000] {
            for _ in 0..50 {
                let counts: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
                run_shared(pieces, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn concurrent_callers_are_all_served() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let total = AtomicUsize::new(0);
                        run_shared(8, &|i| {
                            total.fetch_add(i + 1, Ordering::Relaxed);
                        });
                        assert_eq!(total.into_inner(), 36);
                    }
                });
            }
        });
    }

    #[test]
    fn panics_surface_in_the_caller_after_all_pieces() {
        let finished = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_shared(16, &|i| {
                if i == 3 {
                    panic!("piece 3");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(result.is_err());
        // Shared with the helper, every other piece still runs (15); run alone (another test may
        // hold the caller lock), the panic stops the loop at piece 3.
        let finished = finished.into_inner();
        assert!(finished == 15 || finished == 3, "{finished}");
        // Still usable afterwards.
        let total = AtomicUsize::new(0);
        run_shared(4, &|_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(total.into_inner(), 4);
    }

    #[test]
    fn a_panic_on_the_helper_reaches_the_caller_with_its_own_message() {
        // The caller's first piece waits until the helper has taken the last one (the helper
        // claims from the back), so the panicking piece runs on the helper whenever the job is
        // shared; run alone (another test holds the caller lock), the caller panics itself. A
        // first job starts the helper thread (which skips the job published before it started).
        run_shared(4, &|_| {});
        std::thread::sleep(Duration::from_millis(20));
        let helper_took_last = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_shared(4, &|i| {
                if i == 0 {
                    let start = Instant::now();
                    while !helper_took_last.load(Ordering::Acquire)
                        && start.elapsed() < Duration::from_secs(2)
                    {
                        std::hint::spin_loop();
                    }
                }
                if i == 3 {
                    helper_took_last.store(true, Ordering::Release);
                    panic!("deliberate panic in piece 3");
                }
            })
        }));
        let payload = result.expect_err("the panic was lost");
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        assert_eq!(message, Some("deliberate panic in piece 3"));
        assert!(SHARED.panic_payload.load(Ordering::Acquire).is_null());
    }
}

//! A deliberate panic on each path a kernel's work can take (the calling thread, the helper
//! thread, the rayon pool), so tests can check that a panic reaches the caller, and through the
//! Python binding becomes an exception, instead of aborting the process or poisoning the pool.
//! Not part of the kernels' API.

use crate::pool::{map_indexed, ASSIST_MIN_ELEMENTS, PARALLEL_MIN_ELEMENTS};

/// Where [`panic_on`] panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicSite {
    /// In the calling thread, as a kernel on small work would.
    Caller,
    /// In a piece shared with the helper thread (mid-sized work; needs 2+ threads).
    Helper,
    /// In a piece run by the rayon pool (large work; needs 2+ threads).
    Pool,
}

/// Run pieces of work the way a kernel of this size would, and panic in the last piece. With
/// one thread every path runs on the caller, which panics all the same. Never returns normally.
#[doc(hidden)]
pub fn panic_on(site: PanicSite) -> f64 {
    let (pieces, elements) = match site {
        PanicSite::Caller => (1, 1),
        PanicSite::Helper => (8, ASSIST_MIN_ELEMENTS),
        PanicSite::Pool => (64, PARALLEL_MIN_ELEMENTS),
    };
    let partials = map_indexed(pieces, elements, |i| {
        if i + 1 == pieces {
            panic!("ferroptim: deliberate panic on the {site:?} path (panic_probe)");
        }
        i as f64
    });
    partials.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_panics_into_the_caller_and_the_pool_keeps_working() {
        for site in [PanicSite::Caller, PanicSite::Helper, PanicSite::Pool] {
            let caught = std::panic::catch_unwind(|| panic_on(site));
            assert!(caught.is_err(), "{site:?} did not panic");
        }
        let sum: f64 = map_indexed(64, PARALLEL_MIN_ELEMENTS, |i| i as f64)
            .iter()
            .sum();
        assert_eq!(sum, (0..64).sum::<usize>() as f64);
    }
}

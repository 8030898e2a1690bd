//! The temp files this process is writing, so that a program stopped by a signal can
//! remove them on its way out. A write removes its own temp file when it fails; a process
//! that is killed leaves it for `recover` (or `cleanup`) to find. Between the two, a
//! program that catches SIGINT or SIGTERM calls [`remove_in_flight`] before it exits, and
//! nothing it was writing is left behind.
//!
//! Every temp name is registered where it is made ([`crate::temp_path_in`]) and forgotten
//! once the file is renamed into place or removed. Removing a registered name is always
//! safe: before its rename it is only the unpublished new version (the write then fails
//! and its target is untouched), after it the name is gone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The registered names, or `None` once [`remove_in_flight`] ran.
static IN_FLIGHT: Mutex<Option<BTreeSet<PathBuf>>> = Mutex::new(Some(BTreeSet::new()));

fn with<T>(f: impl FnOnce(&mut Option<BTreeSet<PathBuf>>) -> T) -> T {
    // A panic while holding the lock cannot leave the set half-updated: keep using it.
    let mut guard = IN_FLIGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard)
}

/// Records `path` as a temp file about to be written. After [`remove_in_flight`] the
/// process is exiting: the calling thread then waits for the exit instead of creating a
/// file nobody would remove.
pub(crate) fn register(path: &Path) {
    let open = with(|set| set.as_mut().map(|s| s.insert(path.to_path_buf())).is_some());
    if !open {
        loop {
            std::thread::park();
        }
    }
}

/// `path` was renamed into place or removed.
pub(crate) fn forget(path: &Path) {
    with(|set| {
        if let Some(s) = set.as_mut() {
            s.remove(path);
        }
    });
}

/// For a process about to exit (on SIGINT or SIGTERM): removes every temp file a write of
/// this process has open, and makes any write that would create another wait for the
/// exit instead. Returns the files removed (names that no longer exist are skipped).
pub fn remove_in_flight() -> Vec<PathBuf> {
    let names = with(Option::take).unwrap_or_default();
    let mut removed: Vec<PathBuf> = names.into_iter().filter(|p| std::fs::remove_file(p).is_ok()).collect();
    removed.sort();
    removed
}

/// How many temp names are registered (for tests).
#[doc(hidden)]
pub fn in_flight_count() -> usize {
    with(|set| set.as_ref().map_or(0, BTreeSet::len))
}

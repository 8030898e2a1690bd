//! `process::runtime`, the runtime the binary runs its commands on.

// The binary's own module, compiled into this test: process-wide policy is the binary's.
#[path = "../src/process.rs"]
#[allow(dead_code)]
mod process;

/// The command runtime's blocking pool is bounded: 64 blocking calls that each hold their
/// thread for a while run on at most `blocking_threads(cores)` distinct threads (tokio's
/// default would start one per call here).
#[test]
fn the_command_runtime_bounds_its_blocking_pool() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let cap = process::blocking_threads(cores);
    assert_eq!(process::blocking_threads(2), 16);
    assert_eq!(process::blocking_threads(64), 512);
    let runtime = process::runtime().expect("runtime");
    let seen = Arc::new(Mutex::new(HashSet::new()));
    runtime.block_on(async {
        let calls: Vec<_> = (0..cap * 4)
            .map(|_| {
                let seen = Arc::clone(&seen);
                tokio::task::spawn_blocking(move || {
                    seen.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(std::time::Duration::from_millis(20));
                })
            })
            .collect();
        for call in calls {
            call.await.expect("blocking call");
        }
    });
    let threads = seen.lock().unwrap().len();
    assert!(threads <= cap, "{threads} blocking threads, cap {cap}");
    assert!(threads >= cap.min(4), "the pool ran only {threads} threads at once");
}

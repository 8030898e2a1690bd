//! Process-wide settings for programs that run bulk imports, chosen by the program (the
//! `barvault` binary calls [`tune_allocator`] first thing and runs its command on
//! [`runtime`]), never applied by the library behind its caller's back.

/// Allocations glibc may serve from its heap rather than from a fresh `mmap` (its maximum).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory glibc keeps at the top of its heap before returning it to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 128 << 20;

/// Keeps memory freed by one series' decode and encode for the next one.
///
/// With glibc's defaults, a buffer above 128 KiB comes from its own `mmap` and goes back to
/// the kernel when freed, so every series of a nightly update (column buffers, read buffers,
/// Parquet pages of a few hundred KiB) faulted in fresh zeroed pages: page faults were ~40%
/// of decoding a 5,000-row Parquet file. Raising the mmap and trim thresholds lets freed
/// buffers be reused instead. Peak memory is unchanged in kind (what is live at the peak is
/// live either way); memory freed below 128 MiB is kept until the process exits.
/// (docs/BENCHMARKS.md has the side-by-side figures.) A no-op where the C library is not glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)] // mallopt has no safe wrapper; it only sets two of glibc's knobs
    // SAFETY: mallopt takes two integers, touches no memory of ours and is thread-safe;
    // its result (0 on an unknown parameter) needs no handling: the default then stays.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Blocking-pool threads of [`runtime`] on a machine with `cores` cores: 8 per core, at
/// least 16 (tokio's default is 512).
pub fn blocking_threads(cores: usize) -> usize {
    cores.saturating_mul(8).max(16)
}

/// The runtime a program runs its commands on: async tasks on the calling thread, file I/O
/// on a blocking pool of at most [`blocking_threads`] threads.
///
/// A multi-file import runs up to 32 series at once, each with two or three blocking calls
/// in flight, and with tokio's default of 512 the pool grew to about 230 threads in a
/// nightly update of 300 series: each a 2 MiB stack to map and fault in, each wakeup a
/// context switch among many threads on two cores. The work is CPU-bound apart from fsync
/// waits, which 16 threads keep overlapped (docs/BENCHMARKS.md has the figures). Bounding
/// the pool only bounds parallelism: an import groups its files by series, so no blocking
/// call waits for another one of the same process (a lock held by another process is
/// waited for with its timeout).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    tokio::runtime::Builder::new_current_thread().max_blocking_threads(blocking_threads(cores)).enable_all().build()
}

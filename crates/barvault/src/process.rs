//! Process-wide settings for programs that run bulk imports, chosen by the program (the
//! `barvault` binary calls [`tune_allocator`] first thing), never applied by the library
//! behind its caller's back.

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
/// Measured side by side in docs/BENCHMARKS.md. A no-op where the C library is not glibc.
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

//! `process::tune_allocator` (of the binary) in a process of its own (the statistics it is checked
//! by are process-wide, so no other test may allocate meanwhile).

// The binary's own module, compiled into this test: process-wide policy is the binary's.
#[path = "../src/process.rs"]
#[allow(dead_code)]
mod process;

/// A 4 MiB buffer, which glibc's defaults would `mmap` (and unmap when freed), comes from
/// the heap once tuned: the count of mmapped chunks does not move.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn tuned_large_buffers_come_from_the_heap() {
    #[allow(unsafe_code)]
    fn mmapped_chunks() -> usize {
        // SAFETY: mallinfo2 only reads glibc's statistics into the returned struct.
        unsafe { libc::mallinfo2() }.hblks
    }
    let probe = || {
        let before = mmapped_chunks();
        let buffer = vec![7u8; 4 << 20];
        let during = mmapped_chunks();
        assert_eq!(buffer.iter().map(|&b| u64::from(b)).sum::<u64>(), 7 * (4 << 20));
        during - before
    };
    assert_eq!(probe(), 1, "glibc's default: a 4 MiB buffer is mmapped");
    process::tune_allocator();
    std::thread::spawn(process::tune_allocator).join().expect("a second call is harmless");
    assert_eq!(probe(), 0, "a 4 MiB buffer was mmapped despite the tuning");
}

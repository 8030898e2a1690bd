//! The allocator of barvault's Python extension: a load's column buffers come from memory
//! the previous load freed, instead of fresh pages from the kernel.
//!
//! A load of 1M bars decodes into about 50 MB of column buffers that are handed to pandas
//! and freed when the frame goes. Under glibc every buffer above its mmap threshold is a
//! fresh `mmap`, and every 4 KiB page of it is a page fault and a page clear in the
//! kernel: about a quarter of a load's CPU (docs/BENCHMARKS.md, issue 16). pyarrow does
//! not pay it, because its own memory pool keeps freed memory. An extension module cannot
//! change the interpreter's malloc (nor should a library set process-wide malloc policy,
//! see the `barvault` binary's `tune_allocator`), but it can choose the allocator of its own
//! Rust allocations: that is this crate, installed with `#[global_allocator]` by
//! `barvault-py` only.
//!
//! [`Retaining`] serves small requests from the system allocator unchanged. A request of
//! at least [`LARGE`] bytes gets a mapping of its own; when freed, the mapping is kept in a
//! small cache (at most [`CACHE_BYTES`] bytes, [`CACHE_SLOTS`] mappings) and handed to the
//! next large request it fits, so a loop of loads touches the same, already resident pages.
//! What is cached is memory the process had already resident at its last peak, so peak
//! memory does not grow by more than the cache's bound, and in practice not at all: a freed
//! block is reused by the next request of its size. Growing a large block is `mremap`,
//! which moves pages instead of copying bytes.

#![allow(unsafe_code)] // an allocator is unsafe by definition; every block says why it is sound

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Requests of at least this many bytes get a mapping of their own and are cached when
/// freed (Parquet pages of a load are ~1 MiB, its columns 8 MB each).
pub const LARGE: usize = 256 << 10;

/// The most freed memory the cache keeps.
pub const CACHE_BYTES: usize = 96 << 20;

/// The most freed mappings the cache keeps.
pub const CACHE_SLOTS: usize = 32;

/// The page in front of every large block, holding the mapping's length. One page keeps the
/// block page-aligned, so any alignment up to a page is served.
const HEADER: usize = 4096;

/// Mappings are sized in these steps, so that blocks of nearly equal requests are
/// interchangeable in the cache.
const STEP: usize = 64 << 10;

/// A request is served from a cached mapping at most this many times its size.
const FIT: usize = 4;

/// The global allocator of the Python extension (see the crate docs).
#[derive(Debug, Default)]
pub struct Retaining;

/// Freed mappings: `(base, len)`, most recently freed last.
struct Cache {
    slots: [(usize, usize); CACHE_SLOTS],
    used: usize,
    bytes: usize,
}

/// The cache behind a spin lock of its own rather than a `Mutex`: a `fork` while another
/// thread holds it must not leave the child's allocator locked for ever, so the lock is
/// taken before every `fork` and released on both sides after it (`pthread_atfork`, as
/// glibc does for its malloc). It is held for a few dozen instructions at a time.
struct Shared {
    locked: AtomicBool,
    cache: UnsafeCell<Cache>,
}

// SAFETY: `cache` is only reached through `Held`, which exists while `locked` is owned.
unsafe impl Sync for Shared {}

static SHARED: Shared = Shared {
    locked: AtomicBool::new(false),
    cache: UnsafeCell::new(Cache { slots: [(0, 0); CACHE_SLOTS], used: 0, bytes: 0 }),
};

static FORK_HANDLERS: Once = Once::new();

/// The cache, held until dropped.
struct Held;

impl Deref for Held {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        // SAFETY: a `Held` exists only while this thread owns the lock.
        unsafe { &*SHARED.cache.get() }
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Cache {
        // SAFETY: as for `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *SHARED.cache.get() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        SHARED.locked.store(false, Ordering::Release);
    }
}

fn acquire() {
    let mut spins = 0u32;
    while SHARED.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

extern "C" fn before_fork() {
    acquire();
}

extern "C" fn after_fork() {
    SHARED.locked.store(false, Ordering::Release);
}

fn lock() -> Held {
    FORK_HANDLERS.call_once(|| {
        // SAFETY: the handlers are plain functions that live as long as the process; a
        // failure to register (ENOMEM) only loses the fork protection.
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
        }
    });
    acquire();
    Held
}

/// The mapping length for a block of `size` bytes: header included, in [`STEP`]s.
fn mapping_len(size: usize) -> Option<usize> {
    size.checked_add(HEADER)?.checked_next_multiple_of(STEP)
}

impl Cache {
    /// The best-fitting cached mapping for `len` bytes, taken out of the cache.
    fn take(&mut self, len: usize) -> Option<(usize, usize)> {
        let limit = len.saturating_mul(FIT);
        let mut best: Option<usize> = None;
        for (i, &(_, l)) in self.slots[..self.used].iter().enumerate() {
            if l >= len && l <= limit && best.is_none_or(|b| l < self.slots[b].1) {
                best = Some(i);
            }
        }
        let i = best?;
        let slot = self.slots[i];
        self.slots.copy_within(i + 1..self.used, i);
        self.used -= 1;
        self.bytes -= slot.1;
        Some(slot)
    }

    /// Keeps a freed mapping, pushing out the oldest ones it needs room for; what is pushed
    /// out (or the mapping itself, when it is larger than the cache) is returned to unmap.
    fn keep(&mut self, base: usize, len: usize, evicted: &mut Evicted) {
        if len > CACHE_BYTES {
            evicted.push((base, len));
            return;
        }
        while self.used == CACHE_SLOTS || self.bytes + len > CACHE_BYTES {
            let oldest = self.slots[0];
            self.slots.copy_within(1..self.used, 0);
            self.used -= 1;
            self.bytes -= oldest.1;
            evicted.push(oldest);
        }
        self.slots[self.used] = (base, len);
        self.used += 1;
        self.bytes += len;
    }
}

/// Mappings pushed out of the cache, to unmap once its lock is released (a fixed array: a
/// `dealloc` allocates nothing).
struct Evicted {
    slots: [(usize, usize); CACHE_SLOTS + 1],
    used: usize,
}

impl Evicted {
    fn push(&mut self, slot: (usize, usize)) {
        // At most every cached mapping and the freed one: CACHE_SLOTS + 1.
        if let Some(s) = self.slots.get_mut(self.used) {
            *s = slot;
            self.used += 1;
        }
    }
}

/// A fresh anonymous mapping of `len` bytes (zeroed by the kernel).
fn map(len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
    // no existing memory; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Unmaps a mapping this allocator made.
fn unmap(base: usize, len: usize) {
    // SAFETY: `base`/`len` describe a whole mapping made by `map` (or moved by `mremap`)
    // that nothing uses any more. A failure (impossible for a valid mapping) leaks it.
    unsafe {
        libc::munmap(base as *mut libc::c_void, len);
    }
}

/// The block of the mapping at `base`, its length stored in the header.
///
/// # Safety
/// `base` is a mapping of `len >= HEADER` writable bytes.
unsafe fn block_of(base: usize, len: usize) -> *mut u8 {
    // SAFETY: the header page belongs to the mapping (caller) and is page-aligned.
    unsafe {
        (base as *mut usize).write(len);
        (base as *mut u8).add(HEADER)
    }
}

/// The mapping `(base, len)` of a large block.
///
/// # Safety
/// `block` was returned by [`Retaining`] for a large layout and not freed.
unsafe fn mapping_of(block: *mut u8) -> (usize, usize) {
    // SAFETY: a large block is preceded by its mapping's header page (caller).
    unsafe {
        let base = block.sub(HEADER);
        (base as usize, (base as *const usize).read())
    }
}

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= HEADER
}

impl Retaining {
    /// A large block of `size` bytes; `zeroed`: its bytes are 0.
    fn alloc_large(size: usize, zeroed: bool) -> *mut u8 {
        let Some(len) = mapping_len(size) else { return ptr::null_mut() };
        let cached = lock().take(len);
        let (base, len, fresh) = match cached {
            Some((base, len)) => (base, len, false),
            None => match map(len) {
                Some(base) => (base, len, true),
                None => return ptr::null_mut(),
            },
        };
        // SAFETY: `base` is a mapping of `len` bytes, which holds the header and `size`.
        let block = unsafe { block_of(base, len) };
        if zeroed && !fresh {
            // SAFETY: the block has at least `size` writable bytes.
            unsafe { ptr::write_bytes(block, 0, size) };
        }
        block
    }

    fn free_large(block: *mut u8) {
        // SAFETY: GlobalAlloc's contract: `block` is a live large block of this allocator.
        let (base, len) = unsafe { mapping_of(block) };
        let mut evicted = Evicted { slots: [(0, 0); CACHE_SLOTS + 1], used: 0 };
        lock().keep(base, len, &mut evicted);
        for &(base, len) in &evicted.slots[..evicted.used] {
            unmap(base, len);
        }
    }
}

// SAFETY: small layouts are the system allocator's, unchanged. Large blocks are page-aligned
// blocks of at least their layout's size inside a mapping of their own, each handed out
// once until freed (the cache is behind a mutex), and freed only through `dealloc` or
// `realloc` with the layout they were allocated with, as GlobalAlloc requires.
unsafe impl GlobalAlloc for Retaining {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return Self::alloc_large(layout.size(), false);
        }
        // SAFETY: forwarded under the same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return Self::alloc_large(layout.size(), true);
        }
        // SAFETY: forwarded under the same contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(&layout) {
            return Self::free_large(block);
        }
        // SAFETY: forwarded under the same contract.
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the layout of the new size is valid (GlobalAlloc's contract on new_size).
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new)) {
            (false, false) => {
                // SAFETY: forwarded under the same contract.
                unsafe { System.realloc(block, layout, new_size) }
            }
            (true, true) => {
                // SAFETY: `block` is a live large block (contract).
                let (base, len) = unsafe { mapping_of(block) };
                if new_size.saturating_add(HEADER) <= len {
                    return block;
                }
                let Some(new_len) = mapping_len(new_size) else { return ptr::null_mut() };
                // SAFETY: `base`/`len` is a whole mapping of ours; on success the old range
                // is no longer valid and the pages live at the returned address.
                let moved = unsafe { libc::mremap(base as *mut libc::c_void, len, new_len, libc::MREMAP_MAYMOVE) };
                if moved == libc::MAP_FAILED {
                    return ptr::null_mut();
                }
                // SAFETY: the moved mapping holds the header and `new_size` bytes.
                unsafe { block_of(moved as usize, new_len) }
            }
            _ => {
                // Between the two kinds: a new block, the bytes copied, the old one freed.
                // SAFETY: `new` is a valid non-zero layout (new_size > 0 by contract).
                let moved = unsafe { self.alloc(new) };
                if let Some(moved) = NonNull::new(moved) {
                    // SAFETY: both blocks hold at least the smaller size; they are distinct.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved.as_ptr(), layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

/// How many freed mappings and bytes the cache holds (for tests and diagnostics).
pub fn cached() -> (usize, usize) {
    let cache = lock();
    (cache.used, cache.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache is one per process: tests that look at it run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// Empties the cache (unmapping what it holds).
    fn drain() {
        let mut cache = lock();
        for &(base, len) in &cache.slots[..cache.used] {
            unmap(base, len);
        }
        cache.used = 0;
        cache.bytes = 0;
    }

    #[test]
    fn a_freed_large_block_is_reused_and_zeroed_when_asked() {
        let _s = serial();
        drain();
        let a = Retaining;
        let l = layout(8 << 20, 64);
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % 4096, 0, "large blocks are page-aligned");
            ptr::write_bytes(p, 0xab, l.size());
            a.dealloc(p, l);
            assert_eq!(cached().0, 1);
            let q = a.alloc_zeroed(l);
            assert_eq!(q, p, "the freed mapping is handed out again");
            assert_eq!(cached(), (0, 0));
            let bytes = std::slice::from_raw_parts(q, l.size());
            assert!(bytes.iter().all(|&b| b == 0), "a reused block asked zeroed is zeroed");
            a.dealloc(q, l);
        }
        drain();
    }

    #[test]
    fn small_blocks_and_over_aligned_ones_are_the_system_allocators() {
        let _s = serial();
        drain();
        let a = Retaining;
        for l in [layout(1000, 8), layout(LARGE - 1, 16), layout(1 << 20, 8192)] {
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
                ptr::write_bytes(p, 1, l.size());
                a.dealloc(p, l);
            }
        }
        assert_eq!(cached(), (0, 0), "nothing small or over-aligned is cached");
    }

    #[test]
    fn a_request_takes_the_smallest_cached_mapping_it_fits_and_not_one_far_larger() {
        let _s = serial();
        drain();
        let a = Retaining;
        let (big, mid) = (layout(32 << 20, 8), layout(2 << 20, 8));
        unsafe {
            let b = a.alloc(big);
            let m = a.alloc(mid);
            a.dealloc(b, big);
            a.dealloc(m, mid);
            assert_eq!(cached().0, 2);
            // 1.5 MiB fits the 2 MiB block best; 300 KiB fits neither within FIT times.
            let small = layout(300 << 10, 8);
            let s = a.alloc(small);
            assert!(s != b && s != m, "a block more than {FIT} times the request is not used");
            let x = a.alloc(layout(1536 << 10, 8));
            assert_eq!(x, m);
            a.dealloc(s, small);
            a.dealloc(x, layout(1536 << 10, 8));
        }
        drain();
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_pushing_out_the_oldest() {
        let _s = serial();
        drain();
        let a = Retaining;
        let l = layout(20 << 20, 8);
        let blocks: Vec<*mut u8> = (0..8).map(|_| unsafe { a.alloc(l) }).collect();
        for &p in &blocks {
            unsafe { a.dealloc(p, l) };
            let (n, bytes) = cached();
            assert!(bytes <= CACHE_BYTES && n <= CACHE_SLOTS, "{n} mappings, {bytes} bytes");
        }
        let (n, bytes) = cached();
        assert_eq!(n, CACHE_BYTES / mapping_len(l.size()).unwrap());
        assert!(bytes > CACHE_BYTES - mapping_len(l.size()).unwrap());
        // The newest are kept: the last block freed is the first handed out again.
        let again = unsafe { a.alloc(l) };
        assert!(blocks[8 - n..].contains(&again));
        unsafe { a.dealloc(again, l) };
        // A block larger than the whole cache is unmapped, not cached.
        let huge = layout(CACHE_BYTES + 1, 8);
        unsafe {
            let p = a.alloc(huge);
            a.dealloc(p, huge);
        }
        assert_eq!(cached().0, n);
        drain();
    }

    #[test]
    fn growing_and_shrinking_keep_the_bytes_across_both_kinds() {
        let _s = serial();
        drain();
        let a = Retaining;
        unsafe {
            // small -> large -> larger -> small, checking a pattern at each step
            let mut l = layout(1000, 8);
            let mut p = a.alloc(l);
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            for size in [LARGE + 1, 40 << 20, LARGE * 2, 900] {
                p = a.realloc(p, l, size);
                assert!(!p.is_null());
                let keep = l.size().min(size).min(1000);
                for i in 0..keep {
                    assert_eq!(*p.add(i), (i % 251) as u8, "byte {i} after realloc to {size}");
                }
                // The new tail is writable.
                ptr::write_bytes(p.add(keep), 7, size - keep);
                for i in 0..keep {
                    *p.add(i) = (i % 251) as u8;
                }
                l = layout(size, 8);
            }
            a.dealloc(p, l);
        }
        drain();
    }

    #[test]
    fn threads_allocating_and_freeing_at_once_never_share_a_block() {
        let _s = serial();
        drain();
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let a = Retaining;
                    let l = layout((1 << 20) + usize::from(t) * 4096, 8);
                    for _ in 0..200 {
                        unsafe {
                            let p = a.alloc(l);
                            ptr::write_bytes(p, t, l.size());
                            std::thread::yield_now();
                            let bytes = std::slice::from_raw_parts(p, l.size());
                            assert!(bytes.iter().all(|&b| b == t), "another thread wrote into this block");
                            a.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(cached().1 <= CACHE_BYTES);
        drain();
    }

    #[test]
    fn a_fork_while_other_threads_allocate_leaves_the_child_an_unlocked_cache() {
        let _s = serial();
        drain();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let (a, l) = (Retaining, layout(1 << 20, 8));
                    while !stop.load(Ordering::Relaxed) {
                        unsafe { a.dealloc(a.alloc(l), l) };
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            // SAFETY: the child calls only the allocator (mmap/munmap and atomics), alarm and
            // _exit; the parent waits for it.
            unsafe {
                let pid = libc::fork();
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    libc::alarm(5); // a cache left locked would hang here: SIGALRM ends the child
                    let (a, l) = (Retaining, layout(2 << 20, 8));
                    let p = a.alloc(l);
                    a.dealloc(p, l);
                    libc::_exit(if p.is_null() { 2 } else { 0 });
                }
                let mut status = 0;
                assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        drain();
    }
}

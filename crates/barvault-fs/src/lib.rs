//! The durable file adapter of barvault, shared by every file format.
//!
//! The store's promise — no crash, bad file or concurrent run loses data — is kept
//! here once instead of in each codec: data files are only ever replaced by
//! [`write_atomic`] (temp file, fsync, rename, directory fsync, hard-linked backup; the
//! one update in place, of a metadata record's slot, is the metadata crate's and goes
//! through the same seam),
//! writers of a series exclude each other across processes with [`FileLocks`], and
//! every path comes from a validated series key through [`Layout`]. All filesystem
//! calls go through the [`Fs`] seam so that [`FaultyFs`] can fail any one of them in
//! tests and prove the promise step by step, rather than trusting it.

// `StorageError` is the ports' shared error type (144 bytes); boxing it is the ports'
// decision, not one adapter's.

mod append;
mod atomic;
mod blocks;
mod digest;
mod fs;
mod housekeeping;
mod inflight;
mod keep;
mod layout;
mod lock;
mod nofollow;
mod proof;
mod read;
mod store;
mod write;

pub use atomic::{
    Staged, WriteOutcome, create_dir_durable, md5_hex, remove_durable, stage_atomic, write_atomic,
    write_atomic_unrecorded,
};
pub use digest::{audit_bytes, fingerprint_bytes};
pub use fs::{CallHook, Fault, FaultyFs, Fs, FsFile, FsInPlace, FsOp, FsSpace, RealFs};
pub use housekeeping::FsHousekeeping;
pub use inflight::{in_flight_count, remove_in_flight};
pub use layout::{
    DataFile, Layout, LockFile, Scan, TempFile, backup_path_of, is_valid_ext, parse_temp_name, spare_path_in,
    temp_path_in,
};
pub use lock::{FileLockGuard, FileLocks};
pub use nofollow::{is_symlink_refused, linked_dir_below, open_read_no_follow, symlink_refused};
pub use read::into_bars as decoded_into_bars;
pub use store::{DEFAULT_LOCK_TIMEOUT, FileStore, FileStoreBuilder};

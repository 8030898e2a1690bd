//! The ports of barvault: what the application needs from storage, stated as small
//! object-safe traits so that adapters (files, object storage, memory, a faulty wrapper)
//! can be swapped without the application noticing.
//!
//! One trait per concern: [`BarStore`] keeps versions of series (read with a [`Version`]
//! token, written against it), [`MetadataStore`] keeps per-file records, [`SeriesLocks`]
//! serializes writers of one series, [`Housekeeping`] surveys what else a store's
//! namespace holds, and [`BarCodec`] turns bars into bytes. Every failure is one
//! [`StorageError`], whose variants carry the series, path, line and source needed to act
//! on it. The `conformance` feature exposes the behavioural contract as plain async
//! functions every adapter's tests call, and [`unreliable`] wraps any store to fail chosen
//! calls.

mod codec;
mod context;
mod error;
mod housekeeping;
mod lock;
pub mod memory;
mod metadata;
mod store;
pub mod unreliable;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use codec::{
    BarCodec, BlockLayout, BlockRead, CodecError, CodecInput, Continuation, Decoded, GroupLayout, KeptPrefix,
    StoredBytes, read_slice,
};
pub use context::OpContext;
pub use error::{IoStep, StorageError};
pub use housekeeping::{Capacity, Entry, EntryKind, Housekeeping, Survey};
pub use lock::{SeriesGuard, SeriesLocks};
pub use metadata::{
    Appended, Blocks, ByteSpan, DateRange, FileMetadata, Fingerprint, GroupBlock, Md5Checkpoint, MetadataStore,
    RecordList, UnreadableRecord,
};
pub use store::{
    BackupPolicy, BadBlock, BarStore, BarStoreExt, Capabilities, Checksum, FileInfo, Keep, LoadOptions, Loaded,
    Persisted, PutMode, PutOptions, Revision, Rows, StagedWrite, Version, Which,
};

#[cfg(feature = "mock")]
pub use housekeeping::MockHousekeeping;
#[cfg(feature = "mock")]
pub use lock::MockSeriesLocks;
#[cfg(feature = "mock")]
pub use metadata::MockMetadataStore;
#[cfg(feature = "mock")]
pub use store::MockBarStore;

/// Re-exported so adapters and users need one dependency for the vocabulary.
pub use barvault_domain as domain;

//! The ports of barvault: what the application needs from storage, stated as small
//! object-safe traits so that adapters (files, memory, a faulty wrapper) can be swapped
//! without the application noticing.
//!
//! One trait per concern: [`BarStore`] keeps bars, [`MetadataStore`] keeps per-file
//! records, [`SeriesLocks`] serializes writers of one series, and [`BarCodec`] turns bars
//! into bytes. Every failure is one [`StorageError`], whose variants carry the series,
//! path, line and source needed to act on it. The `conformance` feature exposes the
//! behavioural contract as plain async functions every adapter's tests call.

mod codec;
mod context;
mod error;
mod lock;
pub mod memory;
mod metadata;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use codec::{BarCodec, CodecError, CodecInput, KeptPrefix, RawTail};
pub use context::OpContext;
pub use error::{IoStep, StorageError};
pub use lock::{SeriesGuard, SeriesLocks};
pub use metadata::{DateRange, FileMetadata, Fingerprint, Md5State, MetadataStore};
pub use store::{
    BackupPolicy, BarStore, FileInfo, PersistOptions, SecondaryStatus, SeriesTail, StageHint, StagedWrite,
    StorageReceipt, WriteMode,
};

#[cfg(feature = "mock")]
pub use lock::MockSeriesLocks;
#[cfg(feature = "mock")]
pub use metadata::MockMetadataStore;
#[cfg(feature = "mock")]
pub use store::MockBarStore;

/// Re-exported so adapters and users need one dependency for the vocabulary.
pub use barvault_domain as domain;

//! The housekeeping port: what a store's namespace holds besides current versions, and the
//! space it has left.
//!
//! `verify`, `recover`, `health` and `cleanup` need to see temp files of interrupted
//! writes, backups, lock files and entries nobody should have put there, and to remove
//! some of them. Those are facts of one backend (a directory tree, a bucket with pending
//! multipart uploads), so the application asks this port instead of walking a file system.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use barvault_domain::SeriesKey;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::OpContext;
use crate::error::StorageError;

/// What one entry of a [`Survey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The current version of a series in one format.
    Data,
    /// The version a write replaced (`{file}.backup`).
    Backup,
    /// What an interrupted write left: a temp file, a pending upload.
    Leftover,
    /// A lock file.
    Lock,
    /// Something the store did not create where it keeps its data: a symbolic link, a
    /// directory or special file in place of a file, a layout directory that points
    /// elsewhere. Never followed, never written through; reported.
    Foreign,
}

/// One entry of the store's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub kind: EntryKind,
    pub location: PathBuf,
    /// The series the entry belongs to, when its name says.
    pub series: Option<SeriesKey>,
    /// The format (file extension) it belongs to, when its name says.
    pub format: Option<String>,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    /// For a leftover: nothing is writing it any more (its writer is gone, or it is older
    /// than any write takes), so it may be removed.
    pub stale: bool,
    /// What the entry is, for people: `temp file of AAPL.csv (pid 4242, 12 s old)`.
    pub detail: String,
}

/// Every entry found, sorted by location.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Survey {
    pub entries: Vec<Entry>,
}

impl Survey {
    /// The entries of one kind.
    pub fn of(&self, kind: EntryKind) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.kind == kind)
    }
}

/// Space where the store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub total_bytes: u64,
    /// Bytes free for this process (what a write can use).
    pub available_bytes: u64,
    /// Bytes free in all (including space reserved for the superuser).
    pub free_bytes: u64,
}

/// Surveys and tidies a store's namespace.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Housekeeping: Send + Sync + Debug {
    /// Every data file, backup, leftover, lock and foreign entry under the store.
    async fn survey(&self, ctx: &OpContext) -> Result<Survey, StorageError>;

    /// Removes `entry` (a leftover, a backup, a lock — the latter while holding it, so no
    /// holder is bypassed); whether it was still there. Data and foreign entries are
    /// refused with [`StorageError::InvalidInput`]: data leaves through its store, and a
    /// foreign entry is for a person to look at.
    async fn discard(&self, entry: &Entry, ctx: &OpContext) -> Result<bool, StorageError>;

    /// Space left; `None` where the backend has no such notion (object storage).
    async fn capacity(&self, ctx: &OpContext) -> Result<Option<Capacity>, StorageError>;

    /// Writes and removes a probe, proving that the store is writable.
    async fn probe(&self, ctx: &OpContext) -> Result<(), StorageError>;
}

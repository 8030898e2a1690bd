//! What a persist through the application asks for and what it reports.

use std::time::Duration;

use barvault_domain::{MergePolicy, MergeStats};
use barvault_ports::{Fingerprint, OpContext};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Whether a persist merges with what is stored or replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Read what is stored, merge the new bars in under the policy, write the result.
    #[default]
    Merge,
    /// Write exactly the given bars; what was stored survives only as the `.backup`.
    /// Writes nothing when the stored bars are already equal.
    Replace,
    /// Remove the stored bars before this instant (nanoseconds since the epoch, UTC) and
    /// keep the rest; the bars given must be empty. The stored bars are read under the
    /// series lock (without locks: against the version read), so a bar committed by a
    /// concurrent write survives unless it is itself older: retention never writes back a
    /// state read before another writer's commit. A trim of every stored bar removes the
    /// series (records first, as [`crate::DualStorageManager::remove`]).
    Trim { before: i64 },
}

/// Options of one persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersistOptions {
    pub mode: WriteMode,
    pub policy: MergePolicy,
}

impl PersistOptions {
    pub fn merge(policy: MergePolicy) -> Self {
        Self { mode: WriteMode::Merge, policy }
    }

    pub fn replace() -> Self {
        Self { mode: WriteMode::Replace, ..Self::default() }
    }

    /// See [`WriteMode::Trim`].
    pub fn trim(before: i64) -> Self {
        Self { mode: WriteMode::Trim { before }, ..Self::default() }
    }
}

/// What happened to the secondary (backup-format) copy of a dual write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SecondaryStatus {
    Written { format: String, location: String },
    Unchanged { format: String, location: String },
    Failed { format: String, location: String, error: String },
}

/// The outcome of a successful persist.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReceipt {
    /// The primary file (or `memory://…` for the in-memory store).
    pub location: String,
    pub format: String,
    /// Rows in the stored series after the call.
    pub rows_written: usize,
    /// False when the merge changed nothing and no file was touched.
    pub written: bool,
    pub merge: MergeStats,
    /// Whether the previous version was kept as `.backup`.
    pub backup_created: bool,
    /// MD5 of the bytes written, computed while writing (absent when nothing was written
    /// or the store has no bytes).
    pub checksum_md5: Option<String>,
    pub file_size: Option<u64>,
    /// What the store offered to record with the checksum (see [`Fingerprint`]).
    #[serde(skip)]
    pub fingerprint: Option<Fingerprint>,
    /// Set by dual stores.
    pub secondary: Option<SecondaryStatus>,
    pub correlation_id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

impl StorageReceipt {
    /// A receipt for a call that wrote no file (yet): the caller fills in what it writes.
    pub fn unwritten(
        location: impl Into<String>,
        format: impl Into<String>,
        rows: usize,
        merge: MergeStats,
        ctx: &OpContext,
    ) -> Self {
        Self {
            location: location.into(),
            format: format.into(),
            rows_written: rows,
            written: false,
            merge,
            backup_created: false,
            checksum_md5: None,
            file_size: None,
            fingerprint: None,
            secondary: None,
            correlation_id: ctx.correlation_id().to_string(),
            timestamp: Utc::now(),
            duration: Duration::ZERO,
        }
    }
}

mod duration_secs {
    use serde::Serializer;
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

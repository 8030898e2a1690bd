//! Writers without locks ([`DualSettings::lock_free`](super::DualSettings::lock_free)):
//! what changes when writers of one series on different machines do not exclude each
//! other and every write is conditional on the version it read (object storage).
//!
//! The primary copy is where a version is committed: each write of it is conditional on
//! the primary version whose bars it merged onto, so the primary's versions form one chain
//! in which every version holds its predecessor's rows, and no update that was merged
//! into the chain is lost. Everything else follows the primary:
//! - a primary that parses is the newest version even when its record disagrees (its
//!   writer may be between its commit and its record, or gone), never a damaged copy to
//!   merge around — that would put an older version back over a newer one;
//! - a write never overwrites unconditionally: a copy to repair is replaced against the
//!   version it was read at (or created where there is none);
//! - the secondary copy is written by whichever writer committed the primary last: a
//!   writer whose secondary write meets a newer secondary writes it again against that one
//!   while its primary is still the newest, and stops as soon as another writer's primary
//!   has replaced its own (that writer will write the secondary, from bars that include
//!   these);
//! - a record is written only while its object still holds what it records (the metadata
//!   adapter checks), so a primary record that meets a newer primary is a conflict, and the
//!   persist starts again from a fresh read: merging bars that are already stored changes
//!   nothing, so a retry only writes what is missing.

use barvault_ports::BarStoreExt;
use std::sync::Arc;
use std::time::Duration;

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{
    BackupPolicy, BarStore, FileMetadata, OpContext, Persisted, PutMode, PutOptions, Revision, Rows, StagedWrite,
    StorageError, Version,
};

use super::DualStorageManager;
use super::read::{Copy, CopyState, Read};

/// Rounds of "write the secondary again against the newer one" before giving up.
const SECONDARY_ROUNDS: usize = 8;

impl DualStorageManager {
    /// Reads one copy as [`Self::read_copy`] does; without locks, a copy that parses but
    /// disagrees with its record is the newest version (committed before its record), and
    /// an unparsable copy keeps its version so that its repair is conditional too.
    pub(super) async fn read_one(
        &self,
        store: &dyn BarStore,
        meta: Option<&FileMetadata>,
        series: &SeriesKey,
        rows: Rows,
        ctx: &OpContext,
    ) -> Result<Read, StorageError> {
        let read = Self::read_copy(store, meta, series, rows, ctx).await?;
        if !self.settings.lock_free {
            return Ok(read);
        }
        match read.copy {
            Copy::Mismatch(bars, why) => {
                tracing::info!(reason = %why, "a copy is newer than its record (a writer between its commit and its record); it is the newest version");
                Ok(Read { copy: Copy::Good(bars), proven: false, ..read })
            }
            Copy::Bad(why) if read.version.is_none() => {
                let version = store.file_info(series, ctx).await?.map(|i| i.version);
                Ok(Read { copy: Copy::Bad(why), version, ..read })
            }
            _ => Ok(read),
        }
    }

    /// How a copy is written: against the version read, as a new object where none was,
    /// and — under a series lock only — over whatever is there when the copy is damaged.
    pub(super) fn put_options_for(&self, copy: &CopyState) -> PutOptions {
        let backup = if copy.ok { BackupPolicy::Keep } else { BackupPolicy::Skip };
        let mode = match (&copy.version, copy.ok || self.settings.lock_free) {
            (Some(v), true) => PutMode::Update(v.clone()),
            (None, true) => PutMode::Create,
            (_, false) => PutMode::Overwrite,
        };
        PutOptions { mode, backup }
    }

    /// The pause before attempt `retry + 1` of a persist: none under a series lock, else a
    /// jittered exponential backoff from [`DualSettings::retry_backoff`](super::DualSettings).
    pub(super) fn backoff(&self, retry: usize) -> Duration {
        let base = self.settings.retry_backoff;
        if base.is_zero() {
            return Duration::ZERO;
        }
        let full = base.saturating_mul(1 << retry.saturating_sub(1).min(5));
        // Between half and all of it: the fraction from a fresh random hash.
        let fraction = 0.5 + 0.5 * (jitter() as f64 / u64::MAX as f64);
        full.mul_f64(fraction)
    }

    /// Commits the staged secondary; without locks, a secondary that another writer
    /// replaced meanwhile is written again against the newer one for as long as
    /// `primary` (the version this persist committed, if it wrote one) is still the
    /// primary's newest, and left to the writer that replaced the primary otherwise
    /// (`Ok(None)`: superseded).
    pub(super) async fn commit_secondary(
        &self,
        secondary: &Arc<dyn BarStore>,
        series: &SeriesKey,
        bars: &Arc<Bars>,
        staged: Box<dyn StagedWrite>,
        primary: Option<&Version>,
        ctx: &OpContext,
    ) -> Result<Option<Persisted>, StorageError> {
        let first = staged.commit(ctx).await;
        if !self.settings.lock_free {
            return first.map(Some);
        }
        let mut last = match first {
            Err(e) if e.is_version_conflict() => e,
            other => return other.map(Some),
        };
        for round in 0..SECONDARY_ROUNDS {
            // The secondary's version first, then whether the primary is still ours: a
            // writer that replaces the primary after this check writes the secondary after
            // it too, and a secondary written in between makes this write a conflict.
            let current = secondary.file_info(series, ctx).await?.map(|i| i.version);
            if !self.primary_is(series, primary, ctx).await? {
                tracing::info!(round, "another writer replaced the primary; the secondary is theirs to write");
                return Ok(None);
            }
            let options = PutOptions::replacing(current);
            match secondary.persist(series, &Revision::whole(Arc::clone(bars)), &options, ctx).await {
                Err(e) if e.is_version_conflict() => {
                    tracing::debug!(round, error = %e, "secondary replaced again meanwhile");
                    last = e;
                    tokio::time::sleep(self.backoff(round + 1)).await;
                }
                other => return other.map(Some),
            }
        }
        Err(last)
    }

    /// Whether the primary copy of `series` is still `version` (with no version: whether
    /// this persist left the primary as it found it, which it then cannot tell — true).
    async fn primary_is(
        &self,
        series: &SeriesKey,
        version: Option<&Version>,
        ctx: &OpContext,
    ) -> Result<bool, StorageError> {
        let Some(version) = version else { return Ok(true) };
        Ok(self.primary.file_info(series, ctx).await?.is_some_and(|i| &i.version == version))
    }
}

/// A random `u64`, from the standard library's per-instance random hash keys.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish()
}

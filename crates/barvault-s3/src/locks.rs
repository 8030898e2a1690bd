//! Series "locks" of a bucket: none. Writers on different machines cannot share a lock file,
//! and a lease in the bucket would stall every writer of a series behind a crashed one until
//! it expired. Instead every write is conditional on the version it read (see the crate
//! documentation), so a writer that loses a race finds out at its PUT and merges again.

use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::SeriesKey;
use barvault_ports::{OpContext, SeriesGuard, SeriesLocks, StorageError};

/// A [`SeriesLocks`] that excludes nobody: for stores whose every write is a conditional
/// write ([`Capabilities::atomic_updates`](barvault_ports::Capabilities::atomic_updates)).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConditionalWrites;

#[derive(Debug)]
struct Unlocked;

impl SeriesGuard for Unlocked {}

#[async_trait]
impl SeriesLocks for ConditionalWrites {
    async fn lock(
        &self,
        _series: &SeriesKey,
        _timeout: Duration,
        _ctx: &OpContext,
    ) -> Result<Box<dyn SeriesGuard>, StorageError> {
        Ok(Box::new(Unlocked))
    }
}

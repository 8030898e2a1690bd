// mockall's generated expectation closures return the (large) StorageError by value;
// the trait signatures are fixed, so the lint is silenced for the mocks only.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::SeriesKey;

use crate::context::OpContext;
use crate::error::StorageError;

/// Proof that a series is locked; dropping it releases the lock.
pub trait SeriesGuard: Send + Sync + Debug {
    /// Releases the lock of a series that was removed while it was held, and removes what
    /// holding it left behind (a lock file) before releasing it: no moment is left where a
    /// lock file of a series without data lies unlocked, which `verify` would report as
    /// stale. A waiter must then find the lock as if the series never had one. Blocking
    /// (it may remove and sync a file). The default only releases.
    fn release_removed(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Mutual exclusion per series, held across read → merge → write so that concurrent
/// writers (threads or processes, depending on the adapter) never lose each other's rows.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SeriesLocks: Send + Sync + Debug {
    /// Waits at most `timeout` for the lock of `series`, then fails with [`StorageError::Locked`].
    async fn lock(
        &self,
        series: &SeriesKey,
        timeout: Duration,
        ctx: &OpContext,
    ) -> Result<Box<dyn SeriesGuard>, StorageError>;
}

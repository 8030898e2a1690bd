// mockall's generated expectation closures return the (large) StorageError by value;
// the trait signatures are fixed, so the lint is silenced for the mocks only.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::SeriesKey;

use crate::context::OpContext;
use crate::error::StorageError;

/// Proof that a series is locked; dropping it releases the lock.
pub trait SeriesGuard: Send + Sync + Debug {}

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

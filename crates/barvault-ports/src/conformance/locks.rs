//! The contract of [`SeriesLocks`].

use std::time::Duration;

use super::{ctx, stock};
use crate::error::StorageError;
use crate::lock::SeriesLocks;

/// A held lock makes a second locker of the same series time out with `Locked`, does not
/// block other series, and is free again once dropped. Needs a Tokio runtime with time.
pub async fn locks_exclude_and_time_out(locks: &dyn SeriesLocks) {
    let s = stock("CF_LOCK");
    let other = stock("CF_LOCK_OTHER");
    let c = ctx();
    let held = locks.lock(&s, Duration::from_secs(5), &c).await.unwrap_or_else(|e| panic!("first lock failed: {e}"));
    let timeout = Duration::from_millis(50);
    match locks.lock(&s, timeout, &c).await {
        Err(StorageError::Locked { series, waited, .. }) => {
            assert_eq!(series, s, "locks: Locked names the wrong series");
            assert!(waited >= timeout, "locks: gave up after {waited:?}, before the {timeout:?} timeout");
        }
        Err(e) => panic!("locks: expected StorageError::Locked, got {e:?}"),
        Ok(_) => panic!("locks: a held series was locked twice"),
    }
    let unrelated = locks.lock(&other, timeout, &c).await;
    assert!(unrelated.is_ok(), "locks: another series is blocked: {unrelated:?}");
    drop(held);
    let again = locks.lock(&s, timeout, &c).await;
    assert!(again.is_ok(), "locks: series still locked after the guard was dropped: {again:?}");
}

/// A waiter gets the lock as soon as the holder releases it, within its timeout.
pub async fn locks_waiter_acquires_after_release(locks: &dyn SeriesLocks) {
    let s = stock("CF_LOCK_WAIT");
    let c = ctx();
    let held = locks.lock(&s, Duration::from_secs(5), &c).await.unwrap_or_else(|e| panic!("first lock failed: {e}"));
    let release = async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
    };
    let (_, waited) = tokio::join!(release, locks.lock(&s, Duration::from_secs(5), &c));
    assert!(waited.is_ok(), "locks: waiter did not get the released lock: {waited:?}");
}

/// Every [`SeriesLocks`] case, in order.
pub async fn locks_run_all(locks: &dyn SeriesLocks) {
    locks_exclude_and_time_out(locks).await;
    locks_waiter_acquires_after_release(locks).await;
}

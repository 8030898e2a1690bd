//! What a [`BarStore`] declares in its [`Capabilities`], checked both ways: a declared
//! capability works exactly, an undeclared one is refused with
//! [`StorageError::Unsupported`] (or, for tail reads, simply not used).

use crate::BarStoreExt;
use std::sync::Arc;

use barvault_domain::{Bars, MergePolicy, merge, nanos_to_datetime};

use super::core::{assert_bars, assert_conflict, load_all, load_with, overwrite, put, version};
use super::{BASE_NS, DAY_NS, ctx, sample_bars, sample_metadata, stock};
use crate::error::StorageError;
use crate::metadata::{DateRange, FileMetadata, Fingerprint};
use crate::store::{BackupPolicy, BarStore, Checksum, Keep, LoadOptions, Persisted, PutOptions, Revision, Rows, Which};

fn unsupported<T: std::fmt::Debug>(store: &dyn BarStore, what: &str, result: Result<T, StorageError>) {
    match result {
        Err(StorageError::Unsupported { .. }) => {}
        other => panic!("[{}] {what} is not declared, so it must be Unsupported; got {other:?}", store.name()),
    }
}

/// With [`Capabilities::revisions`](crate::Capabilities::revisions): a revision given by
/// the rows after those it skips, read with `Rows::From`, commits exactly the merged
/// version, night after night — also when the caller's claim about unchanged rows is
/// wrong (a store must detect or ignore it). Without it, skipped rows are refused.
pub async fn revisions_keep_the_rows_they_skip(store: &dyn BarStore) {
    let s = stock("CF_REVISION");
    let c = ctx();
    let mut stored = sample_bars(5_000, BASE_NS, DAY_NS, 600);
    overwrite(store, &s, &stored).await;
    if !store.capabilities().revisions {
        let v = version(store, &s).await;
        let revision =
            Revision { bars: Arc::new(sample_bars(3, BASE_NS + 6_000 * DAY_NS, DAY_NS, 1)), skipped: 10, keep: None };
        unsupported(
            store,
            "a revision with skipped rows",
            store.persist(&s, &revision, &PutOptions::update(v), &c).await,
        );
        return;
    }
    for round in 0..4u64 {
        let n = stored.len();
        let from = stored.timestamps()[n - 2];
        let read = load_with(store, &s, &LoadOptions::default().rows(Rows::From(from))).await;
        let read = read.unwrap_or_else(|| panic!("[{}] round {round}: nothing stored", store.name()));
        let tail = read.bars.clone().unwrap_or_default();
        let update = sample_bars(3, from, DAY_NS, 610 + round);
        let (expected, _) = merge(&stored, &update, MergePolicy::KeepLast).expect("merge");
        let (bars, _) = merge(&tail, &update, MergePolicy::KeepLast).expect("merge");
        let unchanged = read.skipped + tail.common_prefix_len(&bars);
        // Rounds 2 and 3 lie about the stored version: a store must not trust the claim.
        let keep = match round {
            2 => Keep { stored_rows: n + 7, unchanged },
            3 => Keep { stored_rows: n, unchanged: unchanged + 1 },
            _ => Keep { stored_rows: n, unchanged },
        };
        let revision = Revision { bars: Arc::new(bars), skipped: read.skipped, keep: Some(keep) };
        let receipt = store.persist(&s, &revision, &PutOptions::update(read.info.version.clone()), &c).await;
        let receipt = receipt.unwrap_or_else(|e| panic!("[{}] round {round}: persist failed: {e}", store.name()));
        assert_eq!(receipt.rows, expected.len(), "[{}] round {round}: receipt rows", store.name());
        assert_bars(store, &format!("revision round {round}"), &load_all(store, &s).await, &expected);
        if store.capabilities().checksums {
            let loaded = load_with(store, &s, &LoadOptions::default().checksum(Checksum::Compute)).await;
            let sum = loaded.and_then(|l| l.checksum);
            assert_eq!(sum, receipt.checksum, "[{}] round {round}: receipt checksum vs the bytes", store.name());
        }
        stored = expected;
    }
    // A revision against a stale token is a conflict, even with rows to skip.
    let stale = version(store, &s).await;
    overwrite(store, &s, &sample_bars(10, BASE_NS, DAY_NS, 700)).await;
    let revision =
        Revision { bars: Arc::new(sample_bars(2, BASE_NS + 9_000 * DAY_NS, DAY_NS, 701)), skipped: 5, keep: None };
    assert_conflict(
        store,
        "a revision of a replaced version",
        store.persist(&s, &revision, &PutOptions::update(stale), &c).await,
    );
}

/// With [`Capabilities::backups`](crate::Capabilities::backups): a write that keeps its
/// backup makes the replaced version readable as `Which::Backup`; one that skips it leaves
/// the older backup; a new series has none. Without it, backup reads are refused.
pub async fn backups_hold_the_replaced_version(store: &dyn BarStore) {
    let s = stock("CF_BACKUP");
    let first = sample_bars(5, BASE_NS, DAY_NS, 30);
    let second = sample_bars(6, BASE_NS, DAY_NS, 31);
    let third = sample_bars(7, BASE_NS, DAY_NS, 32);
    let backup = LoadOptions::default().which(Which::Backup);
    if !store.capabilities().backups {
        overwrite(store, &s, &first).await;
        unsupported(store, "a backup read", store.load(&s, &backup, &ctx()).await);
        return;
    }
    let r = put(store, &s, &first, PutOptions::create()).await;
    assert!(!r.backup_created, "[{}] a new series has a backup", store.name());
    assert!(load_with(store, &s, &backup).await.is_none(), "[{}] a new series has a backup", store.name());
    let v = r.info.version;
    let r = put(store, &s, &second, PutOptions::update(v)).await;
    assert!(r.backup_created, "[{}] the update did not keep its backup", store.name());
    let b = load_with(store, &s, &backup).await.map(crate::Loaded::into_bars);
    assert_bars(store, "backup after the update", &b.unwrap_or_default(), &first);
    put(store, &s, &third, PutOptions::update(r.info.version).backup(BackupPolicy::Skip)).await;
    let b = load_with(store, &s, &backup).await.map(crate::Loaded::into_bars);
    assert_bars(store, "backup after a write that skipped it", &b.unwrap_or_default(), &first);
    assert_bars(store, "current after a write that skipped the backup", &load_all(store, &s).await, &third);
}

/// With [`Capabilities::checksums`](crate::Capabilities::checksums): the receipt's MD5 is
/// that of the bytes every later load reads; a record's checksum stands for the bytes only
/// when its fingerprint (size and CRC-32) matches them; an audit tells whether a
/// fingerprint describes the file. Without it, no checksum is ever reported.
pub async fn checksums_describe_the_stored_bytes(store: &dyn BarStore) {
    let s = stock("CF_CHECKSUM");
    let bars = sample_bars(40, BASE_NS, DAY_NS, 40);
    let receipt = overwrite(store, &s, &bars).await;
    let computed = load_with(store, &s, &LoadOptions::default().checksum(Checksum::Compute)).await;
    let computed = computed.unwrap_or_else(|| panic!("[{}] load of a stored series", store.name()));
    if !store.capabilities().checksums {
        assert_eq!(receipt.checksum, None, "[{}] a checksum without the capability", store.name());
        assert_eq!(computed.checksum, None, "[{}] a checksum without the capability", store.name());
        return;
    }
    let md5 = receipt.checksum.clone().unwrap_or_else(|| panic!("[{}] receipt without checksum", store.name()));
    assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()), "[{}] checksum {md5:?}", store.name());
    assert_eq!(computed.checksum.as_deref(), Some(md5.as_str()), "[{}] computed vs receipt", store.name());
    let fingerprint =
        receipt.fingerprint.clone().unwrap_or_else(|| panic!("[{}] receipt without fingerprint", store.name()));

    let record = |checksum: &str, fingerprint: Option<Fingerprint>| FileMetadata {
        checksum: checksum.to_string(),
        file_size: receipt.info.size,
        fingerprint,
        ..sample_metadata(&s, store.name(), 1)
    };
    let claimed = "0123456789abcdef0123456789abcdef";
    let key = &s;
    let read_against = |r: FileMetadata| async move {
        let options = LoadOptions::default().checksum(Checksum::Record(Box::new(r)));
        load_with(store, key, &options).await.and_then(|l| l.checksum)
    };
    // A matching fingerprint vouches for the recorded checksum (here a made-up one, to see it taken).
    let trusted = read_against(record(claimed, Some(fingerprint.clone()))).await;
    assert_eq!(trusted.as_deref(), Some(claimed), "[{}] a matching fingerprint was not trusted", store.name());
    // Any other fingerprint, or none, is not: the bytes' MD5 is computed.
    let wrong = Fingerprint { crc32: fingerprint.crc32 ^ 1, ..fingerprint.clone() };
    for (what, r) in
        [("a wrong CRC-32", record(claimed, Some(wrong.clone()))), ("no fingerprint", record(claimed, None))]
    {
        let sum = read_against(r).await;
        assert_eq!(sum.as_deref(), Some(md5.as_str()), "[{}] {what} was trusted", store.name());
    }
    for (what, fp, ok) in [("its own fingerprint", fingerprint, true), ("a wrong one", wrong, false)] {
        let audited =
            load_with(store, &s, &LoadOptions::default().rows(Rows::Nothing).checksum(Checksum::Audit(fp))).await;
        let audited = audited.unwrap_or_else(|| panic!("[{}] audit of a stored series", store.name()));
        assert_eq!(audited.checksum.as_deref(), Some(md5.as_str()), "[{}] audit checksum", store.name());
        assert_eq!(audited.fingerprint_ok, Some(ok), "[{}] audit of {what}", store.name());
    }
}

/// With `list` and `remove`: every stored series is listed once; remove deletes a series
/// with its backup and reports whether it existed. Without them, both are refused.
pub async fn list_and_remove(store: &dyn BarStore) {
    let caps = store.capabilities();
    let a = stock("CF_LIST_A");
    let b = stock("CF_LIST_B");
    let bars = sample_bars(3, BASE_NS, DAY_NS, 50);
    overwrite(store, &a, &bars).await;
    overwrite(store, &b, &bars).await;
    overwrite(store, &b, &sample_bars(4, BASE_NS, DAY_NS, 51)).await;
    let c = ctx();
    if caps.list {
        let listed = store.list(&c).await.unwrap_or_else(|e| panic!("[{}] list failed: {e}", store.name()));
        for k in [&a, &b] {
            assert_eq!(listed.iter().filter(|x| *x == k).count(), 1, "[{}] list has {k} once", store.name());
        }
    } else {
        unsupported(store, "list", store.list(&c).await);
    }
    if !caps.remove {
        unsupported(store, "remove", store.remove(&a, &c).await);
        return;
    }
    let removed = store.remove(&b, &c).await.unwrap_or_else(|e| panic!("[{}] remove failed: {e}", store.name()));
    assert!(removed, "[{}] remove of a stored series said false", store.name());
    assert!(load_with(store, &b, &LoadOptions::default()).await.is_none(), "[{}] removed series loads", store.name());
    if caps.backups {
        let backup = load_with(store, &b, &LoadOptions::default().which(Which::Backup)).await;
        assert!(backup.is_none(), "[{}] a removed series kept its backup", store.name());
    }
    let again = store.remove(&b, &c).await.unwrap_or_else(|e| panic!("[{}] remove failed: {e}", store.name()));
    assert!(!again, "[{}] second remove said true", store.name());
    if caps.list {
        let listed = store.list(&c).await.unwrap_or_else(|e| panic!("[{}] list failed: {e}", store.name()));
        assert!(!listed.contains(&b) && listed.contains(&a), "[{}] list after remove: {listed:?}", store.name());
    }
}

/// Eight writers, each appending its own bars by read → merge → conditional write → retry
/// on conflict, lose no update — where the store declares its conditional writes atomic
/// without a lock ([`Capabilities::atomic_updates`]).
pub async fn concurrent_updates_lose_nothing(store: &dyn BarStore) {
    if !store.capabilities().atomic_updates {
        return;
    }
    let s = stock("CF_RACE");
    overwrite(store, &s, &sample_bars(1, BASE_NS, DAY_NS, 60)).await;
    let key = &s;
    let writer = |i: u64| async move {
        let s = key;
        let mine = sample_bars(1, BASE_NS + (1 + i as i64) * DAY_NS, DAY_NS, 61 + i);
        for attempt in 0..200 {
            let loaded = load_with(store, s, &LoadOptions::default()).await;
            let loaded = loaded.unwrap_or_else(|| panic!("[{}] writer {i}: series vanished", store.name()));
            let version = loaded.info.version.clone();
            let (next, _) = merge(&loaded.into_bars(), &mine, MergePolicy::KeepLast).expect("merge");
            match store.persist(s, &Revision::whole(next), &PutOptions::update(version), &ctx()).await {
                Ok(_) => return attempt,
                Err(StorageError::VersionConflict { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("[{}] writer {i}: {e}", store.name()),
            }
        }
        panic!("[{}] writer {i}: 200 conflicts in a row", store.name());
    };
    let attempts = futures_join_all((0..8).map(writer).collect()).await;
    let stored = load_all(store, &s).await;
    assert_eq!(stored.len(), 9, "[{}] lost updates ({attempts:?} retries): {} rows", store.name(), stored.len());
}

/// With [`Capabilities::appends`](crate::Capabilities::appends): rows later than the stored
/// ones, appended to the version a record describes, make exactly the stored rows followed
/// by them, with the checksum of the whole new file; appends chain from the version each
/// returns; a record that does not describe the stored bytes appends nothing rather than a
/// wrong file. Without it, an append is refused.
pub async fn appends_continue_the_stored_version(store: &dyn BarStore) {
    let s = stock("CF_APPEND");
    let c = ctx();
    let record_of = |bars: &Bars, written: &Persisted| FileMetadata {
        checksum: written.checksum.clone().unwrap_or_default(),
        file_size: written.info.size,
        fingerprint: written.fingerprint.clone(),
        row_count: bars.len() as u64,
        columns: bars.column_names(),
        date_range: DateRange {
            start: bars.first_timestamp().map(nanos_to_datetime),
            end: bars.last_timestamp().map(nanos_to_datetime),
        },
        ..sample_metadata(&s, store.name(), 1)
    };
    let mut expected = sample_bars(50, BASE_NS, DAY_NS, 80);
    let mut written = overwrite(store, &s, &expected).await;
    let later = |round: i64| sample_bars(3, BASE_NS + (50 + 3 * round) * DAY_NS, DAY_NS, 81 + round as u64);
    if !store.capabilities().appends {
        unsupported(store, "append", store.append(&s, &later(0), &record_of(&expected, &written), &c).await);
        assert_bars(store, "after a refused append", &load_all(store, &s).await, &expected);
        return;
    }
    for round in 0..3 {
        let next = later(round);
        let appended = store.append(&s, &next, &record_of(&expected, &written), &c).await;
        let appended = appended
            .unwrap_or_else(|e| panic!("[{}] round {round}: append failed: {e}", store.name()))
            .unwrap_or_else(|| panic!("[{}] round {round}: declares appends but appended nothing", store.name()));
        expected = merge(&expected, &next, MergePolicy::KeepLast).expect("merge").0;
        assert_eq!(appended.rows, expected.len(), "[{}] round {round}: rows of the appended version", store.name());
        assert_bars(store, &format!("append round {round}"), &load_all(store, &s).await, &expected);
        if store.capabilities().checksums {
            let loaded = load_with(store, &s, &LoadOptions::default().checksum(Checksum::Compute)).await;
            let sum = loaded.and_then(|l| l.checksum);
            assert_eq!(sum, appended.checksum, "[{}] round {round}: append checksum vs the bytes", store.name());
        }
        written = appended;
    }
    // A record claiming more bytes than are stored does not describe this file.
    let wrong = FileMetadata { file_size: written.info.size + 7, ..record_of(&expected, &written) };
    let result = store.append(&s, &later(10), &wrong, &c).await;
    assert!(!matches!(result, Ok(Some(_))), "[{}] appended to a version its record does not describe", store.name());
    assert_bars(store, "after an append to a wrong record", &load_all(store, &s).await, &expected);
}

/// Polls every future to completion on the current task (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future completed")).collect()
}

/// Every capability case, in order.
pub async fn run_capabilities(store: &dyn BarStore) {
    revisions_keep_the_rows_they_skip(store).await;
    backups_hold_the_replaced_version(store).await;
    checksums_describe_the_stored_bytes(store).await;
    list_and_remove(store).await;
    concurrent_updates_lose_nothing(store).await;
    appends_continue_the_stored_version(store).await;
}

//! Reuse of the stored bytes of unchanged leading rows (`BarStore::stage_with`): the new
//! file is exactly what a full encode gives, or (when the stored bytes were formatted
//! differently) still loads back as exactly the new bars with a true checksum; and every
//! hint the store cannot confirm is ignored.

mod common;

use std::path::Path;
use std::sync::Arc;

use barvault::domain::ExtraColumn;
use barvault::{Bars, Instrument, Period, SeriesKey};
use barvault_csv::{CsvCodec, encode_to_vec};
use barvault_fs::{Fault, FaultyFs, FileStore, md5_hex};
use barvault_parquet::ParquetCodec;
use barvault_ports::{BackupPolicy, BarCodec, BarStore, CodecInput, IoStep, PersistOptions, StageHint, StorageError};
use common::ctx;

const DAY: i64 = 86_400_000_000_000;

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("REUSE").unwrap(), Period::D1)
}

/// `n` daily bars from 2006 on, with an extra column that is sometimes empty; `bump`
/// shifts the prices of the rows from `changed_from` on.
fn daily(n: usize, changed_from: usize, bump: f64) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_136_160_000_000_000_000 + i * DAY).collect();
    let px = |i: usize| 50.0 + (i % 97) as f64 * 0.25 + if i >= changed_from { bump } else { 0.0 };
    let v: Vec<f64> = (0..n).map(px).collect();
    let vol: Vec<f64> = (0..n).map(|i| 1500.0 + i as f64).collect();
    let oi: Vec<Option<f64>> = (0..n).map(|i| (i % 5 != 0).then_some(i as f64 * 0.5)).collect();
    Bars::new(ts, v.clone(), v.clone(), v.clone(), v, vol, vec![ExtraColumn::new("open_interest", oi).unwrap()])
        .unwrap()
}

fn store(dir: &Path) -> FileStore<CsvCodec> {
    FileStore::builder(dir, CsvCodec).build().unwrap()
}

fn hint(stored: &Bars, new: &Bars) -> StageHint {
    StageHint { stored_rows: stored.len(), unchanged_prefix: stored.common_prefix_len(new) }
}

/// Proves the stored file (as a writer does before replacing it), stages `new` with
/// `hint` and commits; returns the checksum the receipt reports.
async fn rewrite<C: BarCodec + 'static>(store: &FileStore<C>, new: &Bars, hint: StageHint) -> String {
    let s = series();
    store.checksum(&s, &ctx()).await.unwrap().expect("a stored file");
    let staged = store.stage_with(new, &s, hint, &ctx()).await.unwrap();
    let receipt = staged.commit(BackupPolicy::Keep, &ctx()).await.unwrap();
    receipt.checksum_md5.expect("a checksum")
}

fn assert_stored(store: &FileStore<CsvCodec>, expected: &Bars, md5: &str) -> Vec<u8> {
    let bytes = std::fs::read(store.path_of(&series())).unwrap();
    assert_eq!(md5_hex(&bytes), md5, "the recorded checksum is that of the bytes on disk");
    let raw = CsvCodec.decode_bytes(&bytes, None).unwrap();
    assert!(raw.into_bars(Default::default()).unwrap().0 == *expected, "the file loads back as the new bars");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_update_gives_the_bytes_of_a_full_encode() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let old = daily(5000, usize::MAX, 0.0);
    store.persist(&old, &series(), PersistOptions::replace(), &ctx()).await.unwrap();
    // Two revised bars and one new one, as in a nightly update.
    let new = daily(5001, 4998, 0.5);
    let h = hint(&old, &new);
    assert_eq!(h.unchanged_prefix, 4998);
    let md5 = rewrite(&store, &new, h).await;
    assert!(assert_stored(&store, &new, &md5) == encode_to_vec(&new));
    // The old version is the backup, untouched.
    assert!(std::fs::read(store.backup_path_of(&series())).unwrap() == encode_to_vec(&old));
}

/// The stored bytes of unchanged rows are kept as they are: a row stored as `1500`
/// (as barvault 0.1 and other writers format it) stays so, while the file still loads exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_bytes_of_unchanged_rows_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let old = daily(3000, usize::MAX, 0.0);
    let path = store.path_of(&series());
    let text = String::from_utf8(encode_to_vec(&old)).unwrap();
    let odd = text.replacen(",1500.0,", ",1500,", 1);
    assert_ne!(odd, text);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &odd).unwrap();
    let new = daily(3002, 2990, -1.0);
    let md5 = rewrite(&store, &new, hint(&old, &new)).await;
    let bytes = assert_stored(&store, &new, &md5);
    let kept: String = odd.split_inclusive('\n').take(2990 + 1).collect();
    assert!(bytes.starts_with(kept.as_bytes()), "the stored prefix was copied");
    assert!(bytes != encode_to_vec(&new), "and not encoded again");
}

/// Hints the store can check against the file and the codec are ignored when wrong:
/// the result is then a full encode, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_that_do_not_match_the_stored_file_are_ignored() {
    let old = daily(2000, usize::MAX, 0.0);
    let new = daily(2001, 1990, 0.75);
    let right = hint(&old, &new);
    let wrong = [
        // The last "unchanged" row is in fact changed.
        StageHint { unchanged_prefix: right.unchanged_prefix + 3, ..right },
        // Wrong stored row counts put the boundary on another line.
        StageHint { stored_rows: right.stored_rows + 1, ..right },
        StageHint { stored_rows: right.stored_rows - 1, ..right },
        StageHint { stored_rows: 10 * right.stored_rows, ..right },
        // More unchanged rows than stored: impossible.
        StageHint { stored_rows: 5, unchanged_prefix: 6 },
    ];
    for h in wrong {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let odd = String::from_utf8(encode_to_vec(&old)).unwrap().replacen(",1500.0,", ",1500,", 1);
        let path = store.path_of(&series());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &odd).unwrap();
        let md5 = rewrite(&store, &new, h).await;
        assert!(assert_stored(&store, &new, &md5) == encode_to_vec(&new), "{h:?} must fall back to a full encode");
    }
}

/// A new row with a sub-second timestamp widens every timestamp of the file, so no
/// stored line can be kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wider_timestamp_fraction_rewrites_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let old = daily(1000, usize::MAX, 0.0);
    store.persist(&old, &series(), PersistOptions::replace(), &ctx()).await.unwrap();
    let mut raw = barvault::domain::RawBars::from(daily(1001, usize::MAX, 0.0));
    raw.ts[1000] += 250_000_000;
    let new = raw.into_bars(Default::default()).unwrap().0;
    let h = hint(&old, &new);
    assert_eq!(h.unchanged_prefix, 1000);
    let md5 = rewrite(&store, &new, h).await;
    let bytes = assert_stored(&store, &new, &md5);
    assert!(bytes == encode_to_vec(&new));
    assert!(String::from_utf8(bytes).unwrap().contains("2006-01-02 00:00:00.00Z,"));
}

/// Without a proof of the current file, or when the file changed after its proof, the
/// store encodes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_its_proof_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let s = series();
    let old = daily(1500, usize::MAX, 0.0);
    let new = daily(1501, 1499, 2.0);
    let path = store.path_of(&s);
    let odd = String::from_utf8(encode_to_vec(&old)).unwrap().replacen(",1500.0,", ",1500,", 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &odd).unwrap();
    // Proven, then rewritten (another inode) with the same text.
    store.checksum(&s, &ctx()).await.unwrap();
    let again = path.with_extension("again");
    std::fs::write(&again, &odd).unwrap();
    std::fs::rename(&again, &path).unwrap();
    let staged = store.stage_with(&new, &s, hint(&old, &new), &ctx()).await.unwrap();
    let md5 = staged.commit(BackupPolicy::Keep, &ctx()).await.unwrap().checksum_md5.unwrap();
    assert!(assert_stored(&store, &new, &md5) == encode_to_vec(&new));
    // No proof at all (the last one was used up): the same.
    let newer = daily(1502, 1500, 3.0);
    let staged = store.stage_with(&newer, &s, hint(&new, &newer), &ctx()).await.unwrap();
    let md5 = staged.commit(BackupPolicy::Keep, &ctx()).await.unwrap().checksum_md5.unwrap();
    assert!(assert_stored(&store, &newer, &md5) == encode_to_vec(&newer));
}

/// A write that fails while copying the kept bytes leaves the stored file as it was and
/// no temp file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_of_the_kept_bytes_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyFs::real());
    let store = FileStore::builder(dir.path(), CsvCodec).fs(faulty.clone()).build().unwrap();
    let s = series();
    let old = daily(20_000, usize::MAX, 0.0);
    store.persist(&old, &s, PersistOptions::replace(), &ctx()).await.unwrap();
    let before = std::fs::read(store.path_of(&s)).unwrap();
    let new = daily(20_001, 19_999, 1.0);
    store.checksum(&s, &ctx()).await.unwrap();
    faulty.inject(Fault::once(IoStep::WriteTemp, 1, libc_enospc()));
    match store.stage_with(&new, &s, hint(&old, &new), &ctx()).await {
        Err(StorageError::Io { step: IoStep::WriteTemp, .. }) => {}
        other => panic!("expected a WriteTemp failure, got {other:?}"),
    }
    assert!(std::fs::read(store.path_of(&s)).unwrap() == before);
    let leftovers: Vec<_> = std::fs::read_dir(store.path_of(&s).parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

fn libc_enospc() -> i32 {
    28
}

/// Through the dual manager: a nightly-style update of a proven series keeps the CSV
/// byte-identical to a full encode, both checksums true, and `verify` clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_updates_stay_exact_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let s = series();
    let mut expected = daily(4000, usize::MAX, 0.0);
    vault.manager().persist(&expected, &s, PersistOptions::default(), &ctx()).await.unwrap();
    for night in 0..4 {
        let n = expected.len();
        let update = daily(n + 1, n - 2, 0.5 * (night + 1) as f64);
        let update = update.slice(&barvault::TimeRange::new(Some(update.timestamps()[n - 2]), None).unwrap());
        vault.manager().persist(&update, &s, PersistOptions::default(), &ctx()).await.unwrap();
        expected = barvault::domain::merge(&expected, &update, Default::default()).unwrap().0;
        let (csv, _) = common::paths(&vault, &s);
        assert!(std::fs::read(&csv).unwrap() == encode_to_vec(&expected), "night {night}");
        assert!(common::load(vault.manager(), &s).await.unwrap() == expected);
    }
    let report = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A damaged primary is never a source of kept bytes: its checksum fails the proof, the
/// manager gives no hint, and the CSV is encoded whole from the sound Parquet copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_primary_is_rewritten_whole() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let s = series();
    let old = daily(3000, usize::MAX, 0.0);
    vault.manager().persist(&old, &s, PersistOptions::default(), &ctx()).await.unwrap();
    let (csv, _) = common::paths(&vault, &s);
    // Same length, one digit changed in an early row: only the checksum can tell.
    let text = String::from_utf8(common::read(&csv)).unwrap();
    let damaged = text.replacen(",1500.0,", ",1600.0,", 1);
    assert_ne!(damaged, text);
    std::fs::write(&csv, &damaged).unwrap();
    let new = daily(3001, 2999, 1.0);
    let update = new.slice(&barvault::TimeRange::new(Some(new.timestamps()[2999]), None).unwrap());
    vault.manager().persist(&update, &s, PersistOptions::default(), &ctx()).await.unwrap();
    assert!(common::read(&csv) == encode_to_vec(&new), "the damaged row must not survive");
    assert!(vault.verify(barvault::Scope::All, true).await.unwrap().is_clean());
}

fn parquet_store(dir: &Path, fs: Arc<FaultyFs>) -> FileStore<ParquetCodec> {
    FileStore::builder(dir, ParquetCodec::default()).fs(fs).build().unwrap()
}

fn parquet_bars(bytes: &[u8]) -> Bars {
    let raw = ParquetCodec::default().decode(CodecInput::Bytes(bytes), None).unwrap();
    raw.into_bars(Default::default()).unwrap().0
}

/// Parquet: an update keeps the stored row groups that hold only unchanged rows byte for
/// byte (the first 4,096 of 5,000 daily rows), and the file loads back as exactly the new
/// bars with a true checksum. The next update keeps them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_updates_keep_the_unchanged_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = parquet_store(dir.path(), Arc::new(FaultyFs::real()));
    let s = series();
    let mut old = daily(5000, usize::MAX, 0.0);
    store.persist(&old, &s, PersistOptions::replace(), &ctx()).await.unwrap();
    for night in 0..3 {
        let before = std::fs::read(store.path_of(&s)).unwrap();
        let new = daily(old.len() + 1, old.len() - 2, 0.5 * (night + 1) as f64);
        let h = hint(&old, &new);
        let kept = ParquetCodec::default().keepable(&before, &new, h.unchanged_prefix).expect("groups to keep");
        assert_eq!(kept.rows, 4096, "night {night}");
        let md5 = rewrite(&store, &new, h).await;
        let bytes = std::fs::read(store.path_of(&s)).unwrap();
        assert_eq!(md5_hex(&bytes), md5, "night {night}: the checksum is that of the bytes on disk");
        assert!(bytes[..kept.bytes as usize] == before[..kept.bytes as usize], "night {night}: kept bytes differ");
        assert!(parquet_bars(&bytes) == new, "night {night}: the file does not load back as the new bars");
        assert!(parquet_bars(&std::fs::read(store.backup_path_of(&s)).unwrap()) == old, "night {night}: backup");
        old = new;
    }
}

/// A write that keeps row groups and fails at any step of its temp file leaves the stored
/// file as it was and no temp file behind; the next write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_keeping_row_groups_changes_nothing() {
    for step in [IoStep::CreateTemp, IoStep::WriteTemp, IoStep::FsyncTemp, IoStep::Rename] {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyFs::real());
        let store = parquet_store(dir.path(), faulty.clone());
        let s = series();
        let old = daily(5000, usize::MAX, 0.0);
        store.persist(&old, &s, PersistOptions::replace(), &ctx()).await.unwrap();
        let before = std::fs::read(store.path_of(&s)).unwrap();
        let new = daily(5001, 4998, 1.0);
        store.checksum(&s, &ctx()).await.unwrap();
        // Without a spare, so that the temp file is created (the step a CreateTemp fault fails).
        faulty.inject(Fault::from_nth(IoStep::Recycle, 1, libc_enospc()));
        // There is no backup yet: it is linked, and the only rename publishes the file.
        faulty.inject(Fault::once(step, 1, libc_enospc()));
        let result = match store.stage_with(&new, &s, hint(&old, &new), &ctx()).await {
            Ok(staged) => staged.commit(BackupPolicy::Keep, &ctx()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(matches!(result, Err(StorageError::Io { step: s, .. }) if s == step), "{step:?}: {result:?}");
        faulty.clear();
        assert!(std::fs::read(store.path_of(&s)).unwrap() == before, "{step:?}: the stored file changed");
        let leftovers: Vec<_> = std::fs::read_dir(store.path_of(&s).parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{step:?}: temp files left: {leftovers:?}");
        let md5 = rewrite(&store, &new, hint(&old, &new)).await;
        let bytes = std::fs::read(store.path_of(&s)).unwrap();
        assert_eq!(md5_hex(&bytes), md5);
        assert!(parquet_bars(&bytes) == new, "{step:?}");
    }
}

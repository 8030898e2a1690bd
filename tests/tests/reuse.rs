//! Keeping the stored bytes of unchanged leading rows (an update against a version token
//! with [`Keep`]): the new file is exactly what a full encode gives, or (when the stored
//! bytes were formatted differently) still loads back as exactly the new bars with a true
//! checksum; every claim the store and the codec cannot confirm keeps nothing; and a token
//! of a file that changed since it was read is a conflict, never a file built from it.

mod common;

use barvault_ports::BarStoreExt;
use std::path::Path;
use std::sync::Arc;

use barvault::PersistOptions;
use barvault::domain::ExtraColumn;
use barvault::{Bars, Instrument, Period, SeriesKey};
use barvault_csv::{CsvCodec, encode_to_vec};
use barvault_fs::{Fault, FaultyFs, FileStore, FsOp, md5_hex};
use barvault_parquet::ParquetCodec;
use barvault_ports::{
    BarCodec, BarStore, Checksum, CodecInput, Continuation, IoStep, Keep, LoadOptions, PutOptions, Revision, Rows,
    StorageError, Version,
};
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

fn hint(stored: &Bars, new: &Bars) -> Keep {
    Keep { stored_rows: stored.len(), unchanged: stored.common_prefix_len(new) }
}

/// Proves the stored file and returns the version token of what was proven (as a writer
/// does before replacing it).
async fn prove<C: BarCodec + 'static>(store: &FileStore<C>) -> Version {
    let options = LoadOptions::default().rows(Rows::Nothing).checksum(Checksum::Compute);
    let loaded = store.load(&series(), &options, &ctx()).await.unwrap().expect("a stored file");
    assert!(loaded.checksum.is_some());
    loaded.info.version
}

/// Writes `new` as an update of `version`, vouching for `keep`; the checksum the receipt reports.
async fn update<C: BarCodec + 'static>(
    store: &FileStore<C>,
    new: &Bars,
    keep: Keep,
    version: Version,
) -> Result<String, StorageError> {
    let revision = Revision { bars: Arc::new(new.clone()), skipped: 0, keep: Some(keep) };
    let receipt = store.persist(&series(), &revision, &PutOptions::update(version), &ctx()).await?;
    Ok(receipt.checksum.expect("a checksum"))
}

/// Proves the stored file, then updates it to `new` vouching for `keep`.
async fn rewrite<C: BarCodec + 'static>(store: &FileStore<C>, new: &Bars, keep: Keep) -> String {
    let version = prove(store).await;
    update(store, new, keep, version).await.unwrap()
}

async fn replace<C: BarCodec + 'static>(store: &FileStore<C>, bars: &Bars) {
    store.persist(&series(), &Revision::whole(bars.clone()), &PutOptions::overwrite(), &ctx()).await.unwrap();
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
    replace(&store, &old).await;
    // Two revised bars and one new one, as in a nightly update.
    let new = daily(5001, 4998, 0.5);
    let h = hint(&old, &new);
    assert_eq!(h.unchanged, 4998);
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
        Keep { unchanged: right.unchanged + 3, ..right },
        // Wrong stored row counts put the boundary on another line.
        Keep { stored_rows: right.stored_rows + 1, ..right },
        Keep { stored_rows: right.stored_rows - 1, ..right },
        Keep { stored_rows: 10 * right.stored_rows, ..right },
        // More unchanged rows than stored: impossible.
        Keep { stored_rows: 5, unchanged: 6 },
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
    replace(&store, &old).await;
    let mut raw = barvault::domain::RawBars::from(daily(1001, usize::MAX, 0.0));
    raw.ts[1000] += 250_000_000;
    let new = raw.into_bars(Default::default()).unwrap().0;
    let h = hint(&old, &new);
    assert_eq!(h.unchanged, 1000);
    let md5 = rewrite(&store, &new, h).await;
    let bytes = assert_stored(&store, &new, &md5);
    assert!(bytes == encode_to_vec(&new));
    assert!(String::from_utf8(bytes).unwrap().contains("2006-01-02 00:00:00.00Z,"));
}

/// A token of a file that was replaced after it was proven (another inode, the same text)
/// is stale: the update is a conflict and the file stays as it is; read again, the update
/// keeps the stored bytes. A token that proved nothing (identity only, from `file_info`)
/// still lets the store keep the bytes: it hashes them from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_its_proof_is_a_conflict_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let s = series();
    let old = daily(1500, usize::MAX, 0.0);
    let new = daily(1501, 1499, 2.0);
    let path = store.path_of(&s);
    let odd = String::from_utf8(encode_to_vec(&old)).unwrap().replacen(",1500.0,", ",1500,", 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &odd).unwrap();
    let proven = prove(&store).await;
    let again = path.with_extension("again");
    std::fs::write(&again, &odd).unwrap();
    std::fs::rename(&again, &path).unwrap();
    let late = update(&store, &new, hint(&old, &new), proven).await;
    assert!(matches!(late, Err(StorageError::VersionConflict { .. })), "{late:?}");
    assert_eq!(std::fs::read(&path).unwrap(), odd.as_bytes(), "a stale token changed the file");
    let md5 = rewrite(&store, &new, hint(&old, &new)).await;
    let bytes = assert_stored(&store, &new, &md5);
    assert!(bytes.starts_with(odd.split_inclusive('\n').take(1499 + 1).collect::<String>().as_bytes()));
    // Identity only: the kept bytes are hashed from the start, and the checksum is true.
    let newer = daily(1502, 1500, 3.0);
    let identity = store.file_info(&s, &ctx()).await.unwrap().unwrap().version;
    let md5 = update(&store, &newer, hint(&new, &newer), identity).await.unwrap();
    assert_stored(&store, &newer, &md5);
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
    replace(&store, &old).await;
    let before = std::fs::read(store.path_of(&s)).unwrap();
    let new = daily(20_001, 19_999, 1.0);
    let version = prove(&store).await;
    faulty.inject(Fault::once(FsOp::WriteTemp, 1, libc_enospc()));
    match update(&store, &new, hint(&old, &new), version).await {
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
        assert!(common::served(vault.manager(), &s).await.unwrap() == expected);
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
    let raw =
        ParquetCodec::default().decode(CodecInput::Bytes(bytes), barvault_ports::Rows::All).map(|d| d.raw).unwrap();
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
    replace(&store, &old).await;
    for night in 0..3 {
        let before = std::fs::read(store.path_of(&s)).unwrap();
        let new = daily(old.len() + 1, old.len() - 2, 0.5 * (night + 1) as f64);
        let h = hint(&old, &new);
        let next = Continuation { bars: &new, skipped: 0, series: &s };
        let kept = ParquetCodec::default().keepable(&before, next, h).unwrap().expect("groups to keep");
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
    for step in [FsOp::CreateTemp, FsOp::WriteTemp, FsOp::FsyncTemp, FsOp::Rename] {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyFs::real());
        let store = parquet_store(dir.path(), faulty.clone());
        let s = series();
        let old = daily(5000, usize::MAX, 0.0);
        replace(&store, &old).await;
        let before = std::fs::read(store.path_of(&s)).unwrap();
        let new = daily(5001, 4998, 1.0);
        let version = prove(&store).await;
        // Without a spare, so that the temp file is created (the step a CreateTemp fault fails).
        faulty.inject(Fault::from_nth(FsOp::Recycle, 1, libc_enospc()));
        // There is no backup yet: it is linked, and the only rename publishes the file.
        faulty.inject(Fault::once(step, 1, libc_enospc()));
        let result = update(&store, &new, hint(&old, &new), version).await;
        assert!(matches!(&result, Err(StorageError::Io { step: s, .. }) if *s == step.step()), "{step:?}: {result:?}");
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

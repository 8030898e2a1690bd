//! Damaged stores: a truncated, garbage-filled or bit-flipped CSV, a deleted Parquet copy or
//! metadata record, stale temp and lock files, and a CSV-only store whose only good copy is
//! the `.backup`. In each case loads serve the sound data, `verify` names the damage with its
//! path, and `recover` restores the previous content exactly and leaves `verify` clean.

mod common;

use std::path::{Path, PathBuf};

use barvault::{
    Bars, HealthStatus, IssueKind, MergePolicy, PersistOptions, Scope, SeriesKey, StorageConfig, StorageError,
    StorageFactory, Vault, VerifyReport,
};
use barvault_metadata::FileMetadataStore;
use barvault_ports::MetadataStore;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock, with_extra};

/// A dual vault holding two writes of AAPL (so each copy also has a `.backup`).
struct Stored {
    _dir: tempfile::TempDir,
    vault: Vault,
    series: SeriesKey,
    bars: Bars,
    csv: PathBuf,
    parquet: PathBuf,
    csv_bytes: Vec<u8>,
}

async fn stored(vault_of: impl Fn(&Path) -> Vault) -> Stored {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_of(dir.path());
    let series = stock("AAPL");
    let first = sample_bars(30, BASE_NS, DAY_NS, 10);
    let adj = (0..30).map(|i| (i % 4 != 0).then_some(i as f64 / 3.0)).collect();
    let second = with_extra(&sample_bars(30, BASE_NS + 20 * DAY_NS, DAY_NS, 11), "adj_close", adj);
    let ctx = common::ctx();
    vault.manager().persist(&first, &series, PersistOptions::default(), &ctx).await.unwrap();
    vault.manager().persist(&second, &series, PersistOptions::default(), &ctx).await.unwrap();
    let bars = barvault_domain::merge(&first, &second, MergePolicy::KeepLast).unwrap().0;
    let p = vault.paths_of(&series);
    let csv = p[0].clone();
    let parquet = p.get(1).cloned().unwrap_or_default();
    let csv_bytes = common::read(&csv);
    Stored { _dir: dir, vault, series, bars, csv, parquet, csv_bytes }
}

impl Stored {
    async fn load(&self) -> Result<Option<Bars>, StorageError> {
        self.vault.manager().load_with_fallback(&self.series, None, &common::ctx()).await
    }

    async fn verify(&self) -> VerifyReport {
        self.vault.verify(Scope::All, false).await.unwrap()
    }

    async fn recover_clean(&self) {
        let report = self.vault.recover(Scope::All).await.unwrap();
        assert!(report.unrecoverable.is_empty(), "{report:#?}");
        assert!(!report.actions.is_empty(), "recover did nothing");
        let after = self.vault.verify(Scope::All, true).await.unwrap();
        assert!(after.is_clean(), "{:#?}", after.issues);
        let again = self.vault.recover(Scope::All).await.unwrap();
        assert!(again.actions.is_empty() && again.unrecoverable.is_empty(), "second recover: {again:#?}");
    }
}

fn has(report: &VerifyReport, kind: IssueKind, path: &Path) -> bool {
    report.issues.iter().any(|i| i.kind == kind && i.path == path)
}

/// Each way of damaging a file: truncation, garbage, one flipped bit that still parses,
/// one changed byte that does not.
fn corruptions(bytes: &[u8]) -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut flipped = bytes.to_vec();
    // A digit in the middle of the data: flipping its lowest bit makes another digit.
    let at = (bytes.len() / 2..bytes.len()).find(|&i| bytes[i].is_ascii_digit() && bytes[i] != b'9').unwrap();
    flipped[at] ^= 0x01;
    assert!(flipped[at].is_ascii_digit());
    let mut letter = bytes.to_vec();
    letter[at] = b'x';
    let garbage: Vec<u8> = (0..bytes.len()).map(|i| (i * 7919 % 251) as u8).collect();
    vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), false),
        ("garbage", garbage, false),
        ("bit flip", flipped, true),
        ("letter in a number", letter, false),
        ("emptied", Vec::new(), false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_csv_is_served_from_parquet_reported_and_restored_byte_for_byte() {
    let original = stored(common::vault).await.csv_bytes;
    for (what, damaged, parses) in corruptions(&original) {
        let t = stored(common::vault).await;
        assert!(t.csv_bytes == original, "fixture is not deterministic");
        std::fs::write(&t.csv, &damaged).unwrap();

        assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()), "{what}: fallback");
        let report = t.verify().await;
        assert!(has(&report, IssueKind::ChecksumMismatch, &t.csv), "{what}: {:#?}", report.issues);
        if !parses {
            let unparsable = has(&report, IssueKind::Unparsable, &t.csv);
            // An emptied CSV parses as a file without rows in some dialects; either way its checksum is wrong.
            assert!(unparsable || what == "emptied", "{what}: {:#?}", report.issues);
        }
        assert!(report.issues.iter().all(|i| i.path == t.csv), "{what}: only the CSV is damaged: {:#?}", report.issues);
        let health = t.vault.check_health().await.unwrap();
        assert_eq!(health.overall_status, HealthStatus::Error, "{what}");

        t.recover_clean().await;
        assert!(common::read(&t.csv) == original, "{what}: recovered CSV differs from the bytes before the damage");
        assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_onto_a_damaged_csv_keeps_every_stored_row() {
    let t = stored(common::vault).await;
    std::fs::write(&t.csv, b"timestamp,open\nnot,a bar\n").unwrap();
    let extra = sample_bars(3, BASE_NS + 100 * DAY_NS, DAY_NS, 12);
    t.vault.manager().persist(&extra, &t.series, PersistOptions::default(), &common::ctx()).await.unwrap();
    let expected = barvault_domain::merge(&t.bars, &extra, MergePolicy::KeepLast).unwrap().0;
    assert_eq!(t.load().await.unwrap(), Some(expected));
    let report = t.vault.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.issues);
    // The damaged file was not kept as the backup: the backup still holds a sound version.
    assert!(!common::read(&barvault_fs::backup_path_of(&t.csv)).starts_with(b"timestamp,open\nnot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_parquet_is_reported_and_rebuilt_from_the_csv() {
    let t = stored(common::vault).await;
    let len = std::fs::metadata(&t.parquet).unwrap().len() as usize;
    std::fs::write(&t.parquet, vec![0u8; len]).unwrap();
    assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()));
    let report = t.verify().await;
    assert!(has(&report, IssueKind::ChecksumMismatch, &t.parquet), "{:#?}", report.issues);
    assert!(has(&report, IssueKind::Unparsable, &t.parquet), "{:#?}", report.issues);
    t.recover_clean().await;
    assert!(common::read(&t.csv) == t.csv_bytes, "recovering the Parquet copy touched the CSV");
    let parquet = barvault_fs::FileStore::new(t.vault.base(), barvault::ParquetCodec::default()).unwrap();
    assert_eq!(common::load(&parquet, &t.series).await, Some(t.bars.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_parquet_is_reported_and_rebuilt() {
    let t = stored(common::vault).await;
    std::fs::remove_file(&t.parquet).unwrap();
    assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()));
    let report = t.verify().await;
    assert!(has(&report, IssueKind::MissingFile, &t.parquet), "{:#?}", report.issues);
    assert_eq!(report.issues.len(), 1, "{:#?}", report.issues);
    t.recover_clean().await;
    assert!(t.parquet.is_file());
    let parquet = barvault_fs::FileStore::new(t.vault.base(), barvault::ParquetCodec::default()).unwrap();
    assert_eq!(common::load(&parquet, &t.series).await, Some(t.bars.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_metadata_record_is_reported_and_rewritten() {
    let t = stored(common::vault).await;
    let meta = FileMetadataStore::new(t.vault.base());
    let ctx = common::ctx();
    let original = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("csv record");
    assert_eq!(original.generation, 2, "two writes, two generations");
    std::fs::remove_file(meta.record_path(&t.series, "csv")).unwrap();

    assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()));
    let report = t.verify().await;
    assert!(has(&report, IssueKind::MissingMetadata, &t.csv), "{:#?}", report.issues);
    t.recover_clean().await;
    let rewritten = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("record rewritten");
    assert_eq!(rewritten.checksum, original.checksum);
    assert_eq!(rewritten.generation, original.generation, "must agree with the Parquet record");
    assert_eq!(
        (rewritten.row_count, &rewritten.columns, rewritten.date_range, rewritten.file_size),
        (original.row_count, &original.columns, original.date_range, original.file_size)
    );
    assert!(common::read(&t.csv) == t.csv_bytes);
}

/// Hostile record files written over the CSV record (issue 17): a 2^70 row count, 100,000
/// nested `[`, invalid UTF-8, a sparse 64 GiB file, and a path field naming a FIFO outside
/// the store (opening it for reading would block this test). Loads keep serving the bars,
/// `verify` names the record as `bad_metadata`, `recover` writes a sound one, and nothing
/// ever opens the outside path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_metadata_records_are_named_replaced_and_never_address_a_file() {
    let outside = tempfile::tempdir().unwrap();
    let fifo = outside.path().join("outside.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    let swap = |json: &[u8], from: &str, to: &[u8]| {
        let at = json.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from}"));
        [&json[..at], to, &json[at + from.len()..]].concat()
    };
    for what in ["row count 2^70", "100,000 [", "invalid UTF-8", "path to an outside FIFO"] {
        if what.contains("FIFO") && !made {
            eprintln!("skipped {what}: mkfifo failed");
            continue;
        }
        let t = stored(common::vault).await;
        let meta = FileMetadataStore::new(t.vault.base());
        let ctx = common::ctx();
        let sound = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("csv record");
        let json = serde_json::to_vec_pretty(&sound).unwrap();
        let rows = format!("\"row_count\": {}", sound.row_count);
        let bytes = match what {
            "row count 2^70" => swap(&json, &rows, b"\"row_count\": 1180591620717411303424"),
            "100,000 [" => vec![b'['; 100_000],
            "invalid UTF-8" => swap(&json, "AAPL.csv\"", b"AA\xffPL.csv\""),
            _ => swap(&json, "\"stocks/1d/AAPL.csv\"", format!("{:?}", fifo.display().to_string()).as_bytes()),
        };
        // The legacy form has no slot checksum to get right; slotted forms of each are
        // covered by barvault-metadata's own tests.
        std::fs::remove_file(meta.record_path(&t.series, "csv")).unwrap();
        let legacy = meta.legacy_record_path(&t.series, "csv");
        std::fs::write(&legacy, &bytes).unwrap();
        let run = async {
            assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()), "{what}");
            let report = t.verify().await;
            assert!(has(&report, IssueKind::BadMetadata, &legacy), "{what}: {:#?}", report.issues);
            t.recover_clean().await;
        };
        let limit = std::time::Duration::from_secs(60);
        tokio::time::timeout(limit, run).await.unwrap_or_else(|_| panic!("{what}: hung (opened the FIFO?)"));
        assert!(common::read(&t.csv) == t.csv_bytes, "{what}");
        let now = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("a sound record");
        assert_eq!(now.checksum, sound.checksum, "{what}");
    }
    let t = stored(common::vault).await;
    let meta = FileMetadataStore::new(t.vault.base());
    let record = meta.record_path(&t.series, "csv");
    std::fs::File::create(&record).unwrap().set_len(64 << 30).unwrap();
    assert_eq!(t.load().await.unwrap(), Some(t.bars.clone()));
    assert!(has(&t.verify().await, IssueKind::BadMetadata, &record));
    t.recover_clean().await;
    assert!(std::fs::metadata(&record).unwrap().len() < 1 << 20, "the 64 GiB record was replaced");
}

/// A record whose MD5 is right but whose fingerprint is not (a wrong MD5 state, or a wrong
/// CRC-32) would mislead the next write: `verify` names it (also `--deep`), `recover`
/// re-records the file without touching it, and the next persist is exact again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fingerprint_is_reported_and_re_recorded() {
    for wrong_crc in [false, true] {
        let t = stored(common::vault).await;
        let meta = FileMetadataStore::new(t.vault.base());
        let ctx = common::ctx();
        let mut record = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("csv record");
        let fp = record.fingerprint.as_mut().expect("a fingerprint");
        if wrong_crc {
            fp.crc32 ^= 1;
        } else {
            fp.checkpoints.push(barvault_ports::Md5Checkpoint { offset: 64, state: "00".repeat(16) });
        }
        meta.record(&record, &ctx).await.unwrap();

        for deep in [false, true] {
            let report = t.vault.verify(Scope::All, deep).await.unwrap();
            assert!(has(&report, IssueKind::BadFingerprint, &t.csv), "deep {deep}: {:#?}", report.issues);
            assert_eq!(report.issues.len(), 1, "deep {deep}: {:#?}", report.issues);
        }
        t.recover_clean().await;
        assert!(common::read(&t.csv) == t.csv_bytes, "recover rewrote the file");
        let fixed = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("csv record");
        assert_eq!((fixed.checksum.as_str(), fixed.fingerprint.as_ref()), (record.checksum.as_str(), None));

        let more = sample_bars(5, BASE_NS + 60 * DAY_NS, DAY_NS, 12);
        t.vault.manager().persist(&more, &t.series, PersistOptions::default(), &ctx).await.unwrap();
        let after = t.vault.verify(Scope::All, true).await.unwrap();
        assert!(after.is_clean(), "{:#?}", after.issues);
        let next = meta.get(&t.series, "csv", &ctx).await.unwrap().expect("csv record");
        assert!(next.fingerprint.is_some(), "the next write records a fingerprint again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temp_and_lock_files_are_reported_and_removed() {
    assert!(!Path::new("/proc/999999").exists(), "fixture needs pid 999999 to be unused");
    let t = stored(common::vault).await;
    let dir = t.csv.parent().unwrap();
    let temp = dir.join(".AAPL.csv.tmp.999999.abcdef0123456789");
    std::fs::write(&temp, b"half a write").unwrap();
    let ghost_locks = [dir.join(".GHOST.lock"), dir.join(".GHOST.csv.lock")];
    for l in &ghost_locks {
        std::fs::write(l, b"").unwrap();
    }
    // A live series' lock file is not stale.
    let live_lock = dir.join(".AAPL.lock");
    assert!(live_lock.exists(), "persist takes the series lock file");

    let report = t.verify().await;
    assert!(has(&report, IssueKind::StaleTemp, &temp), "{:#?}", report.issues);
    for l in &ghost_locks {
        assert!(has(&report, IssueKind::StaleLock, l), "{:#?}", report.issues);
    }
    assert_eq!(report.issues.len(), 3, "{:#?}", report.issues);
    let health = t.vault.check_health().await.unwrap();
    assert_eq!(health.overall_status, HealthStatus::Warning, "{health:#?}");
    assert_eq!(health.stale_temp_files, vec![temp.display().to_string()]);

    t.recover_clean().await;
    assert!(!temp.exists() && ghost_locks.iter().all(|l| !l.exists()));
    assert!(live_lock.exists(), "recover removed the lock file of a live series");
    assert!(common::read(&t.csv) == t.csv_bytes);
    assert_eq!(t.vault.check_health().await.unwrap().overall_status, HealthStatus::Healthy);
}

fn csv_only(dir: &Path) -> Vault {
    StorageFactory::open(&StorageConfig { backup_enabled: false, ..common::config(dir) }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_only_store_recovers_a_damaged_csv_from_its_sound_backup() {
    let t = stored(csv_only).await;
    assert_eq!(t.vault.formats(), vec!["csv".to_string()]);
    let backup = barvault_fs::backup_path_of(&t.csv);
    let previous = common::read(&backup);
    let first = sample_bars(30, BASE_NS, DAY_NS, 10);
    let csv = barvault_fs::FileStore::new(t.vault.base(), barvault::CsvCodec).unwrap();
    let options = barvault_ports::LoadOptions::default().which(barvault_ports::Which::Backup);
    let stored_backup = barvault_ports::BarStore::load(&csv, &t.series, &options, &common::ctx()).await.unwrap();
    assert_eq!(stored_backup.map(|l| l.into_bars()), Some(first.clone()));

    std::fs::write(&t.csv, b"\x00\x01garbage").unwrap();
    let err = t.load().await.unwrap_err();
    assert!(matches!(err, StorageError::Unreadable { .. }), "{err:?}");
    let report = t.verify().await;
    assert!(has(&report, IssueKind::Unparsable, &t.csv), "{:#?}", report.issues);

    let recovered = t.vault.recover(Scope::All).await.unwrap();
    assert!(recovered.unrecoverable.is_empty(), "{recovered:#?}");
    assert!(recovered.actions.iter().any(|a| a.action.contains("previous version")), "{recovered:#?}");
    assert!(common::read(&t.csv) == previous, "the CSV is not the previous version byte for byte");
    assert_eq!(t.load().await.unwrap(), Some(first));
    let after = t.vault.verify(Scope::All, true).await.unwrap();
    assert!(after.is_clean(), "{:#?}", after.issues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_not_trusted() {
    let t = stored(csv_only).await;
    let backup = barvault_fs::backup_path_of(&t.csv);
    let mut bad_backup = common::read(&backup);
    let at = bad_backup.len() / 2;
    bad_backup[at] = if bad_backup[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&backup, &bad_backup).unwrap();
    std::fs::write(&t.csv, b"\x00garbage").unwrap();
    let report = t.vault.recover(Scope::All).await.unwrap();
    assert_eq!(report.unrecoverable.len(), 1, "{report:#?}");
    assert_eq!(report.unrecoverable[0].0, t.series.to_string());
    assert_eq!(common::read(&t.csv), b"\x00garbage", "recover replaced a file with nothing better");
    assert!(common::read(&backup) == bad_backup, "recover touched the backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_copies_damaged_refuses_to_persist_and_recovers_the_previous_version() {
    let t = stored(common::vault).await;
    let previous_csv = common::read(&barvault_fs::backup_path_of(&t.csv));
    std::fs::write(&t.csv, b"garbage").unwrap();
    std::fs::write(&t.parquet, b"garbage").unwrap();
    let extra = sample_bars(2, BASE_NS + 200 * DAY_NS, DAY_NS, 13);
    let err = t.vault.manager().persist(&extra, &t.series, PersistOptions::default(), &common::ctx()).await;
    assert!(matches!(err, Err(StorageError::Unreadable { .. })), "{err:?}");
    assert_eq!(common::read(&t.csv), b"garbage", "a refused persist wrote");

    t.recover_clean().await;
    assert!(common::read(&t.csv) == previous_csv, "CSV is not the previous version");
    assert_eq!(t.load().await.unwrap(), Some(sample_bars(30, BASE_NS, DAY_NS, 10)));
}

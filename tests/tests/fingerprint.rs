//! Fingerprints (`FileMetadata::fingerprint`): a store trusts a file it is about to replace
//! when its size and CRC-32 match the record, without hashing it, and resumes the next
//! version's MD5 from the recorded checkpoints. These tests show that the fast path is taken
//! exactly when the record vouches for the file, and that the MD5s it yields stay true
//! night after night, for CSV and Parquet, through the store and through the manager.

mod common;

use barvault_ports::BarStoreExt;
use std::path::Path;
use std::sync::Arc;

use barvault::{Bars, Instrument, Period, PersistOptions, SeriesKey, TimeRange};
use barvault_csv::CsvCodec;
use barvault_fs::{FaultyFs, FileStore, md5_hex};
use barvault_parquet::ParquetCodec;
use barvault_ports::{
    BarCodec, BarStore, Checksum, DateRange, FileMetadata, Fingerprint, Keep, LoadOptions, Md5Checkpoint, Persisted,
    PutOptions, Revision, Rows,
};
use common::ctx;

const DAY: i64 = 86_400_000_000_000;

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("PRINT").unwrap(), Period::D1)
}

/// `n` daily bars; the rows from `changed_from` on are shifted by `bump`.
fn daily(n: usize, changed_from: usize, bump: f64) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_136_160_000_000_000_000 + i * DAY).collect();
    let v: Vec<f64> =
        (0..n).map(|i| 20.0 + (i * 7919 % 10_007) as f64 * 0.01 + if i >= changed_from { bump } else { 0.0 }).collect();
    let vol: Vec<f64> = (0..n).map(|i| 900.0 + i as f64).collect();
    Bars::new(ts, v.clone(), v.clone(), v.clone(), v, vol, Vec::new()).unwrap()
}

/// The record a manager would keep for the file a receipt describes.
fn record_of(receipt: &Persisted, bars: &Bars) -> FileMetadata {
    FileMetadata {
        file_path: String::new(),
        instrument_symbol: series().instrument.symbol().clone(),
        instrument_type: series().instrument.kind(),
        period: series().period,
        format: receipt.info.format.clone(),
        row_count: bars.len() as u64,
        columns: bars.column_names(),
        date_range: DateRange::default(),
        file_size: receipt.info.size,
        last_updated: chrono::Utc::now(),
        checksum: receipt.checksum.clone().expect("a checksum"),
        generation: 1,
        backup_checksum: None,
        fingerprint: receipt.fingerprint.clone(),
        appended: None,
    }
}

async fn first_write<C: BarCodec + 'static>(store: &FileStore<C>, bars: &Bars) -> FileMetadata {
    let receipt = store.persist(&series(), &Revision::whole(bars.clone()), &PutOptions::overwrite(), &ctx()).await;
    record_of(&receipt.unwrap(), bars)
}

/// The fingerprint is the CRC-32 of the bytes on disk, and the record's checksum their MD5.
fn assert_record_true(path: &Path, record: &FileMetadata, what: &str) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(md5_hex(&bytes), record.checksum, "{what}: the MD5 is that of the bytes on disk");
    let fp = record.fingerprint.as_ref().expect("a fingerprint");
    assert_eq!(fp.crc32, crc32_bitwise(&bytes), "{what}: the CRC-32 is that of the bytes on disk");
    assert!(!fp.checkpoints.is_empty(), "{what}: states to resume from");
    assert!(fp.checkpoints.windows(2).all(|w| w[0].offset < w[1].offset), "{what}: states ascending");
    assert!(fp.checkpoints.iter().all(|s| s.offset % 64 == 0 && s.offset <= bytes.len() as u64), "{what}");
}

/// CRC-32 (IEEE) computed bit by bit, independent of the implementation under test.
fn crc32_bitwise(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A load against a record returns the record's checksum only when the record's fingerprint
/// matches the file: a record whose MD5 is wrong but whose size and CRC-32 are right is
/// believed (which shows the MD5 was not computed), anything else is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_believed_only_when_its_fingerprint_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::builder(dir.path(), CsvCodec).build().unwrap();
    let s = series();
    let record = first_write(&store, &daily(3000, usize::MAX, 0.0)).await;
    assert_record_true(&store.path_of(&s), &record, "first write");
    let truth = record.checksum.clone();
    let read_against = |r: Option<FileMetadata>, rows: Rows| {
        let store = store.clone();
        async move {
            let checksum = match r {
                Some(r) => Checksum::Record(Box::new(r)),
                None => Checksum::Compute,
            };
            let options = LoadOptions::default().rows(rows).checksum(checksum);
            store.load(&series(), &options, &ctx()).await.unwrap().unwrap().checksum.unwrap()
        }
    };
    let check = |r: FileMetadata| read_against(Some(r), Rows::Nothing);
    assert_eq!(check(record.clone()).await, truth);

    let lying = FileMetadata { checksum: "0".repeat(32), ..record.clone() };
    assert_eq!(check(lying.clone()).await, "0".repeat(32), "a matching fingerprint vouches for the record");

    let fp = record.fingerprint.clone().unwrap();
    let variants = [
        ("no fingerprint", FileMetadata { fingerprint: None, ..lying.clone() }),
        (
            "another CRC",
            FileMetadata { fingerprint: Some(Fingerprint { crc32: fp.crc32 ^ 1, ..fp.clone() }), ..lying.clone() },
        ),
        ("another size", FileMetadata { file_size: lying.file_size + 1, ..lying.clone() }),
        (
            "a malformed state",
            FileMetadata {
                fingerprint: Some(Fingerprint {
                    checkpoints: vec![Md5Checkpoint { offset: 64, state: "not hex".into() }],
                    ..fp.clone()
                }),
                ..lying.clone()
            },
        ),
        (
            "states past the end",
            FileMetadata {
                fingerprint: Some(Fingerprint {
                    checkpoints: vec![Md5Checkpoint { offset: 1 << 40, state: "00".repeat(16) }],
                    ..fp.clone()
                }),
                ..lying.clone()
            },
        ),
    ];
    for (what, r) in variants {
        assert_eq!(check(r).await, truth, "{what}: the MD5 must be computed");
    }
    assert_eq!(read_against(None, Rows::Nothing).await, truth);

    // The same for a decoding read.
    assert_eq!(read_against(Some(lying.clone()), Rows::All).await, "0".repeat(32));
    assert_eq!(read_against(Some(record.clone()), Rows::All).await, truth);
    let other = FileMetadata { fingerprint: Some(Fingerprint { crc32: fp.crc32 ^ 1, ..fp }), ..lying };
    assert_eq!(read_against(Some(other), Rows::All).await, truth);

    // One changed digit, same size: the CRC-32 no longer matches and the MD5 tells.
    let path = store.path_of(&s);
    let mut damaged = std::fs::read(&path).unwrap();
    let at = (damaged.len() / 2..).find(|&i| damaged[i].is_ascii_digit()).unwrap();
    damaged[at] = if damaged[at] == b'7' { b'8' } else { b'7' };
    std::fs::write(&path, &damaged).unwrap();
    let found = check(record.clone()).await;
    assert_eq!(found, md5_hex(&damaged));
    assert_ne!(found, truth);
}

/// Each night proves the stored file by its record only (fingerprint), updates it against
/// the version proven keeping the unchanged rows' bytes, and records the new fingerprint:
/// after many nights every MD5 is still that of the bytes on disk, so every resumed
/// checkpoint was right.
/// Files of `rows` rows: up to 256 KiB the kept bytes come from the bytes the proof read,
/// above that from the file.
async fn nights<C: BarCodec + 'static>(store: FileStore<C>, rows: usize) {
    let s = series();
    let mut old = daily(rows, usize::MAX, 0.0);
    let mut record = first_write(&store, &old).await;
    for night in 0..6 {
        // Night 3 revises a quarter of the history, the others the last two rows.
        let from = if night == 3 { old.len() * 3 / 4 } else { old.len() - 2 };
        let new = daily(old.len() + 1, from, 0.25 * (night + 1) as f64);
        let keep = Keep { stored_rows: old.len(), unchanged: old.common_prefix_len(&new) };
        let options = LoadOptions::default().rows(Rows::Nothing).checksum(Checksum::Record(Box::new(record.clone())));
        let proven = store.load(&s, &options, &ctx()).await.unwrap().unwrap();
        assert_eq!(proven.checksum.as_deref(), Some(record.checksum.as_str()), "night {night}");
        let revision = Revision { bars: Arc::new(new.clone()), skipped: 0, keep: Some(keep) };
        let receipt = store.persist(&s, &revision, &PutOptions::update(proven.info.version), &ctx()).await.unwrap();
        record = record_of(&receipt, &new);
        assert_record_true(&store.path_of(&s), &record, &format!("{} night {night}", store.name()));
        let loaded = store.load(&s, &LoadOptions::default(), &ctx()).await.unwrap().unwrap().into_bars();
        assert!(loaded == new, "night {night}: the file loads back as the new bars");
        old = new;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_md5s_resumed_from_records_stay_true() {
    let dir = tempfile::tempdir().unwrap();
    nights(FileStore::builder(dir.path(), CsvCodec).build().unwrap(), 4000).await;
    let size = std::fs::metadata(dir.path().join("stocks/1d/PRINT.csv")).unwrap().len();
    assert!(size < 256 << 10, "{size}: kept bytes come from memory");
    let dir = tempfile::tempdir().unwrap();
    nights(FileStore::builder(dir.path(), CsvCodec).build().unwrap(), 20_000).await;
    let size = std::fs::metadata(dir.path().join("stocks/1d/PRINT.csv")).unwrap().len();
    assert!(size > 256 << 10, "{size}: kept bytes come from the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_md5s_resumed_from_records_stay_true() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::builder(dir.path(), ParquetCodec::default()).fs(Arc::new(FaultyFs::real())).build().unwrap();
    nights(store, 5000).await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::builder(dir.path(), ParquetCodec::default()).fs(Arc::new(FaultyFs::real())).build().unwrap();
    nights(store, 40_000).await;
    let size = std::fs::metadata(dir.path().join("stocks/1d/PRINT.parquet")).unwrap().len();
    assert!(size > 256 << 10, "{size}: kept bytes come from the file");
}

/// Through the manager: every record carries a true fingerprint, nightly updates keep it
/// true, `verify` (which recomputes every MD5) stays clean, and a record without a
/// fingerprint (written before they existed) is proven by its MD5 and then gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_records_true_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let s = series();
    let mut expected = daily(4000, usize::MAX, 0.0);
    vault.manager().persist(&expected, &s, PersistOptions::default(), &ctx()).await.unwrap();
    let records = |vault: &barvault::Vault| {
        let (vault, s) = (vault.clone(), s.clone());
        async move {
            let m = vault.manager().metadata();
            let csv = m.get(&s, "csv", &ctx()).await.unwrap().unwrap();
            let parquet = m.get(&s, "parquet", &ctx()).await.unwrap().unwrap();
            (csv, parquet)
        }
    };
    for night in 0..4 {
        if night == 2 {
            // As a record of an older barvault would be.
            let (mut csv, mut parquet) = records(&vault).await;
            csv.fingerprint = None;
            parquet.fingerprint = None;
            vault.manager().metadata().record(&csv, &ctx()).await.unwrap();
            vault.manager().metadata().record(&parquet, &ctx()).await.unwrap();
        }
        let n = expected.len();
        let update = daily(n + 1, n - 2, 0.5 * (night + 1) as f64);
        let update = update.slice(&TimeRange::new(Some(update.timestamps()[n - 2]), None).unwrap());
        vault.manager().persist(&update, &s, PersistOptions::default(), &ctx()).await.unwrap();
        expected = barvault::domain::merge(&expected, &update, Default::default()).unwrap().0;
        let (csv_path, parquet_path) = common::paths(&vault, &s);
        let (csv, parquet) = records(&vault).await;
        assert_record_true(&csv_path, &csv, &format!("csv night {night}"));
        assert_record_true(&parquet_path, &parquet, &format!("parquet night {night}"));
        assert!(common::served(vault.manager(), &s).await.unwrap() == expected, "night {night}");
    }
    let report = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

//! Block checksums of the Parquet copy (issue 18, P10): recorded at write time, a range
//! load reads, proves and decodes only the footer and the row groups it overlaps, damage
//! in a group it does not touch leaves it untouched, damage in one it touches is a data
//! error naming the file and the group, an audit names every bad group, and a record
//! without block checksums (written before they existed) still loads by the whole file.

mod common;

use std::path::{Path, PathBuf};

use barvault_domain::{Bars, Period, SeriesKey, TimeRange};
use barvault_fs::FileStore;
use barvault_parquet::ParquetCodec;
use barvault_ports::{
    BarStore, BarStoreExt, Blocks, Checksum, FileMetadata, LoadOptions, OpContext, Persisted, PutOptions, Revision,
    Rows, StorageError, conformance::sample_metadata,
};
use common::{bars_with, stock};

const MINUTE: i64 = 60_000_000_000;
/// 10 row groups of 1,000 one-minute bars.
const ROWS: i64 = 10_000;
const GROUP_ROWS: usize = 1_000;

fn series() -> SeriesKey {
    stock("BLK", Period::M1)
}

fn bars() -> Bars {
    let ts: Vec<i64> = (0..ROWS).map(|i| 1_700_000_000_000_000_000 + i * MINUTE).collect();
    bars_with(&ts, |t| 100.0 + ((t / MINUTE) % 997) as f64 * 0.01)
}

struct Stored {
    _dir: tempfile::TempDir,
    store: FileStore<ParquetCodec>,
    path: PathBuf,
    record: FileMetadata,
    bars: Bars,
}

impl Stored {
    fn blocks(&self) -> &Blocks {
        self.record.fingerprint.as_ref().and_then(|f| f.blocks.as_ref()).expect("block checksums recorded")
    }

    /// The timestamps of row group `g`'s first and last rows.
    fn group_range(&self, g: usize) -> TimeRange {
        let b = &self.blocks().groups[g];
        TimeRange::new(Some(b.first), Some(b.last)).unwrap()
    }

    /// The rows of `range`, read against `record`; the load must vouch for them with the
    /// record's checksum (a whole-file proof of a damaged file would return another MD5).
    async fn load_range(&self, range: TimeRange, record: &FileMetadata) -> Result<Bars, StorageError> {
        let options =
            LoadOptions::default().rows(Rows::Range(range)).checksum(Checksum::Record(Box::new(record.clone())));
        let loaded = self.store.load(&series(), &options, &OpContext::new()).await?.expect("stored");
        assert_eq!(loaded.checksum.as_deref(), Some(record.checksum.as_str()), "proven against the record");
        Ok(loaded.into_bars())
    }
}

fn record_of(written: &Persisted, bars: &Bars) -> FileMetadata {
    FileMetadata {
        checksum: written.checksum.clone().expect("checksum"),
        file_size: written.info.size,
        row_count: bars.len() as u64,
        fingerprint: written.fingerprint.clone(),
        ..sample_metadata(&series(), "parquet", 1)
    }
}

async fn stored() -> Stored {
    let dir = tempfile::tempdir().unwrap();
    let codec = ParquetCodec::default().with_row_group_rows(GROUP_ROWS);
    let store = FileStore::new(dir.path(), codec).unwrap();
    let bars = bars();
    let written = store
        .persist(&series(), &Revision::whole(bars.clone()), &PutOptions::create(), &OpContext::new())
        .await
        .unwrap();
    let record = record_of(&written, &bars);
    let path = PathBuf::from(&written.info.location);
    Stored { _dir: dir, store, path, record, bars }
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// The middle byte of row group `g`.
fn middle_of(s: &Stored, g: usize) -> u64 {
    let b = &s.blocks().groups[g];
    b.offset + b.len / 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_lists_every_row_group_and_the_footer_of_the_file_written() {
    let s = stored().await;
    let blocks = s.blocks().clone();
    let bytes = std::fs::read(&s.path).unwrap();
    assert_eq!(blocks.groups.len(), ROWS as usize / GROUP_ROWS);
    assert_eq!(blocks.footer.end(), bytes.len() as u64, "the footer ends the file");
    let mut end = 4;
    let mut first_row = 0usize;
    for (i, g) in blocks.groups.iter().enumerate() {
        assert!(g.offset >= end, "group {i} starts after the previous one");
        let span = &bytes[g.offset as usize..(g.offset + g.len) as usize];
        assert_eq!(crc32fast::hash(span), g.crc32, "group {i}'s CRC-32");
        assert_eq!(g.rows, GROUP_ROWS as u64);
        assert_eq!(g.first, s.bars.timestamps()[first_row], "group {i}'s first timestamp");
        assert_eq!(g.last, s.bars.timestamps()[first_row + GROUP_ROWS - 1], "group {i}'s last timestamp");
        first_row += GROUP_ROWS;
        end = g.offset + g.len;
    }
    assert!(end <= blocks.footer.offset);
    let footer = &bytes[blocks.footer.offset as usize..];
    assert_eq!(crc32fast::hash(footer), blocks.footer.crc32);
    // As stored: the record round-trips through JSON with its blocks.
    let json = serde_json::to_string(&s.record).unwrap();
    assert!(json.contains("\"blocks\""), "{json}");
    let back: FileMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s.record);
}

/// Damage in every row group a range does not touch (and in the bytes before the first
/// group) leaves the range read exact and proven: those bytes are never read. The same
/// damage makes a whole read, and a range read by an old record without blocks, fail
/// their proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_read_touches_only_its_row_groups() {
    let s = stored().await;
    // Rows 4,500..=5,499: the second half of group 4 and the first half of group 5.
    let ts = s.bars.timestamps();
    let range = TimeRange::new(Some(ts[4_500]), Some(ts[5_499])).unwrap();
    let expected = s.bars.slice(&range);
    assert_eq!(expected.len(), 1_000);
    assert_eq!(s.load_range(range, &s.record).await.unwrap(), expected, "undamaged");
    for g in (0..s.blocks().groups.len()).filter(|g| ![4, 5].contains(g)) {
        flip_byte(&s.path, middle_of(&s, g));
    }
    flip_byte(&s.path, 1);
    assert_eq!(s.load_range(range, &s.record).await.unwrap(), expected, "damage outside groups 4 and 5 is not read");

    // Without block checksums the range read proves the whole file: the MD5 it returns
    // is not the record's, which a caller takes as damage.
    let mut old = s.record.clone();
    old.fingerprint.as_mut().unwrap().blocks = None;
    let options = LoadOptions::default().rows(Rows::Range(range)).checksum(Checksum::Record(Box::new(old)));
    match s.store.load(&series(), &options, &OpContext::new()).await {
        Ok(Some(l)) => assert_ne!(l.checksum.as_deref(), Some(s.record.checksum.as_str()), "whole-file proof"),
        Ok(None) => panic!("stored"),
        Err(e) => assert!(e.is_data_error(), "{e}"),
    }
}

/// A flipped byte inside a row group the range touches is a data error naming the file
/// and the group with its byte range; so is a damaged footer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_touched_row_group_or_the_footer_is_a_data_error_naming_it() {
    let s = stored().await;
    let range = s.group_range(7);
    let g = s.blocks().groups[7];
    flip_byte(&s.path, middle_of(&s, 7));
    let e = s.load_range(range, &s.record).await.expect_err("damage in the group read");
    assert!(e.is_data_error(), "{e}");
    let text = e.to_string();
    let named = format!("row group 7 (bytes {}..{})", g.offset, g.offset + g.len);
    assert!(text.contains(&named) && text.contains("BLK.parquet"), "{text}");
    // Another range, away from group 7, still reads.
    assert_eq!(s.load_range(s.group_range(2), &s.record).await.unwrap(), s.bars.slice(&s.group_range(2)));

    let s = stored().await;
    let footer = s.blocks().footer;
    flip_byte(&s.path, footer.offset + footer.len / 3);
    let e = s.load_range(s.group_range(0), &s.record).await.expect_err("damaged footer");
    assert!(e.is_data_error() && e.to_string().contains("the footer"), "{e}");
}

/// A record whose blocks do not fit the file (a hostile or mistaken record) is a data
/// error, never a read outside the file or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_that_do_not_fit_the_file_are_refused() {
    let s = stored().await;
    let range = s.group_range(1);
    let mut wrong = s.record.clone();
    let blocks = wrong.fingerprint.as_mut().unwrap().blocks.as_mut().unwrap();
    blocks.groups[1].offset = u64::MAX - 3;
    let e = s.load_range(range, &wrong).await.expect_err("misplaced group");
    assert!(e.is_data_error(), "{e}");
    let mut wrong = s.record.clone();
    let blocks = wrong.fingerprint.as_mut().unwrap().blocks.as_mut().unwrap();
    blocks.groups[1].crc32 ^= 1;
    let e = s.load_range(range, &wrong).await.expect_err("wrong CRC-32 in the record");
    assert!(e.to_string().contains("row group 1"), "{e}");
}

/// An audit (what `verify` runs) names each bad block, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_names_each_damaged_row_group() {
    let s = stored().await;
    let fp = s.record.fingerprint.clone().unwrap();
    let audit = LoadOptions::default().rows(Rows::Nothing).checksum(Checksum::Audit(fp));
    let clean = s.store.load(&series(), &audit, &OpContext::new()).await.unwrap().unwrap();
    assert!(clean.bad_blocks.is_empty() && clean.fingerprint_ok == Some(true), "{:?}", clean.bad_blocks);
    flip_byte(&s.path, middle_of(&s, 3));
    flip_byte(&s.path, middle_of(&s, 8));
    let found = s.store.load(&series(), &audit, &OpContext::new()).await.unwrap().unwrap();
    let groups: Vec<Option<usize>> = found.bad_blocks.iter().map(|b| b.group).collect();
    assert_eq!(groups, vec![Some(3), Some(8)]);
    assert_eq!(found.fingerprint_ok, Some(false));
    let g = s.blocks().groups[3];
    assert_eq!((found.bad_blocks[0].offset, found.bad_blocks[0].len), (g.offset, g.len));
}

/// A record written before block checksums existed (no `blocks` key) deserializes and a
/// range read by it returns the rows, proven by the whole file's fingerprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_record_without_blocks_still_loads() {
    let s = stored().await;
    let mut json: serde_json::Value = serde_json::to_value(&s.record).unwrap();
    json["fingerprint"].as_object_mut().unwrap().remove("blocks");
    let old: FileMetadata = serde_json::from_value(json).unwrap();
    assert!(old.fingerprint.as_ref().unwrap().blocks.is_none());
    let range = s.group_range(6);
    let options = LoadOptions::default().rows(Rows::Range(range)).checksum(Checksum::Record(Box::new(old)));
    let loaded = s.store.load(&series(), &options, &OpContext::new()).await.unwrap().unwrap();
    assert_eq!(loaded.checksum.as_deref(), Some(s.record.checksum.as_str()));
    assert_eq!(loaded.into_bars(), s.bars.slice(&range));
}

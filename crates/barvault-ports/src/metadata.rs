// mockall's generated expectation closures return the (large) StorageError by value;
// the trait signatures are fixed, so the lint is silenced for the mocks only.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use barvault_domain::{DomainError, Instrument, InstrumentKind, Period, SeriesKey, Symbol};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::context::OpContext;
use crate::error::StorageError;

/// First and last timestamp of a file (UTC, nanosecond precision in RFC 3339).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DateRange {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// The record kept for one stored data file (one series in one format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// Path relative to the store's base directory, `/`-separated: `stocks/1d/AAPL.csv`.
    pub file_path: String,
    pub instrument_symbol: Symbol,
    pub instrument_type: InstrumentKind,
    pub period: Period,
    /// `csv` or `parquet`.
    pub format: String,
    pub row_count: u64,
    pub columns: Vec<String>,
    pub date_range: DateRange,
    pub file_size: u64,
    pub last_updated: DateTime<Utc>,
    /// MD5 of the file's bytes, lower-case hex.
    pub checksum: String,
    /// Increases with every write of the series; both formats of one write share it.
    pub generation: u64,
    /// MD5 of the previous version, kept beside the data as `{file}.backup`, so recovery
    /// can tell a sound backup from a damaged one. `None` when no backup was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_checksum: Option<String>,
    /// A cheap proof of the file's bytes for the next write, written with the checksum by
    /// the store that wrote the file; `None` in records written before it existed or by
    /// repairs, whose readers then compute the MD5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Set in the primary copy's record when this version was made by appending rows in
    /// place to a version both copies held: the secondary copy deliberately lags by
    /// `rows` rows (see [`Appended`]). `None` for a version written whole or by kept bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended: Option<Appended>,
}

/// Rows appended in place since both copies last held the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The generation both copies held before the first of these appends (the generation
    /// the secondary copy's record still carries).
    pub base_generation: u64,
    /// Rows appended since then: the secondary copy holds the first `row_count - rows`.
    pub rows: u64,
}

/// What lets a store trust a file it is about to replace without hashing all of it again,
/// and hash its next version from where the two start to differ.
///
/// A file whose size and CRC-32 match the record is taken to be the file the record's MD5
/// describes: CRC-32 catches every burst of up to 32 flipped bits and any other damage
/// with probability 1 − 2⁻³², which is what storage checksums (ext4, btrfs) rely on.
/// `verify` still recomputes every MD5. The MD5 states are those after the first `offset`
/// bytes of the file, so the MD5 of a next version that keeps those bytes resumes from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CRC-32 (IEEE 802.3, as zlib computes it) of the file's bytes.
    pub crc32: u32,
    /// MD5 checkpoints at a few offsets, ascending; denser toward the end of the file,
    /// where the next version usually starts to differ. (On disk: `md5_states`.)
    #[serde(default, rename = "md5_states", skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Md5Checkpoint>,
    /// CRC-32s of the file's blocks, each of which a range read can prove alone (the
    /// Parquet copy: its footer and each row group); `None` for formats without blocks
    /// and in records written before they existed, whose range reads prove the whole
    /// file. See docs/FORMAT.md, "Block checksums".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Blocks>,
}

impl Fingerprint {
    /// A fingerprint without block checksums.
    pub fn new(crc32: u32, checkpoints: Vec<Md5Checkpoint>) -> Self {
        Self { crc32, checkpoints, blocks: None }
    }
}

/// Where a file's independently provable blocks lie and their CRC-32s (IEEE, as zlib).
///
/// A reader of some rows reads the footer and the row groups whose timestamps overlap
/// them, checks each one's CRC-32 against this record (the record is the trusted side:
/// which groups hold which rows is taken from here, not from the file), and decodes only
/// those bytes. Any mismatch is damage, as a mismatching MD5 is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocks {
    /// The file's trailing metadata: every byte after the last row group, to the end.
    pub footer: ByteSpan,
    /// The row groups, in file order.
    pub groups: Vec<GroupBlock>,
}

/// `len` bytes from `offset`, and their CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteSpan {
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
}

impl ByteSpan {
    /// The offset just past the span (saturating: a hostile record cannot overflow it).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// One row group: its bytes (every column chunk of it), rows, and first and last
/// timestamp (UTC nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBlock {
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
    pub rows: u64,
    pub first: i64,
    pub last: i64,
}

impl GroupBlock {
    /// The group's bytes and CRC-32.
    pub fn span(&self) -> ByteSpan {
        ByteSpan { offset: self.offset, len: self.len, crc32: self.crc32 }
    }
}

/// An MD5 checkpoint: the hash state after the first `offset` bytes of a file (`offset` a
/// multiple of 64), from which the MD5 of any file starting with those bytes resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Md5Checkpoint {
    pub offset: u64,
    /// The four 32-bit state words A, B, C, D, each little-endian, as 32 hex digits.
    pub state: String,
}

impl FileMetadata {
    /// The series this record describes.
    ///
    /// # Panics
    /// If the symbol is not valid for the kind (a forex record whose symbol is not a
    /// six-letter pair), which only a hand-edited or foreign record can hold; code that
    /// reads records from disk should use [`FileMetadata::try_series`].
    pub fn series(&self) -> SeriesKey {
        self.try_series().expect("a stored Symbol is valid for its kind")
    }

    /// The series this record describes, or why its symbol does not fit its kind.
    pub fn try_series(&self) -> Result<SeriesKey, DomainError> {
        Ok(SeriesKey::new(Instrument::new(self.instrument_type, self.instrument_symbol.as_str())?, self.period))
    }
}

/// A record that exists but cannot be read (damaged, misplaced, not a record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableRecord {
    /// Where the record is kept.
    pub location: PathBuf,
    /// The series and format its location names, when it names one.
    pub series: Option<SeriesKey>,
    pub format: Option<String>,
    pub reason: String,
}

/// Every record of a store, and the ones that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordList {
    /// Sorted by `file_path`.
    pub records: Vec<FileMetadata>,
    /// Sorted by location.
    pub unreadable: Vec<UnreadableRecord>,
}

/// Keeps per-file metadata records (the seed's FileMetadata).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MetadataStore: Send + Sync + Debug {
    /// Records (or replaces) the metadata of one file, durably.
    async fn record(&self, meta: &FileMetadata, ctx: &OpContext) -> Result<(), StorageError>;

    /// The record of `series` in `format`, if any.
    async fn get(
        &self,
        series: &SeriesKey,
        format: &str,
        ctx: &OpContext,
    ) -> Result<Option<FileMetadata>, StorageError>;

    /// Every record, and the records that exist but cannot be read.
    async fn list(&self, ctx: &OpContext) -> Result<RecordList, StorageError>;

    /// Removes the record (also an unreadable one); returns whether it existed.
    async fn remove(&self, series: &SeriesKey, format: &str, ctx: &OpContext) -> Result<bool, StorageError>;

    /// Where the record of `series` in `format` is kept now (also an unreadable one, and
    /// one an earlier version left where it kept records then), for a person deciding
    /// what a delete removes. Empty where the backend cannot tell.
    async fn locations(&self, series: &SeriesKey, format: &str, ctx: &OpContext) -> Result<Vec<PathBuf>, StorageError> {
        let _ = (series, format, ctx);
        Ok(Vec::new())
    }
}

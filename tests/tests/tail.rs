//! Merges that read and write only a series' last rows (a load with `Rows::From`, a
//! revision that skips the stored rows before them): the store they leave is the one a
//! whole read and write leaves, byte for byte where the format allows, and every case the
//! last rows cannot serve (a new column, a wider timestamp fraction, a damaged copy) still
//! leaves exactly that.

mod common;

use std::path::Path;
use std::sync::Arc;

use barvault::domain::{ExtraColumn, merge};
use barvault::{
    Bars, DualSettings, DualStorageManager, Instrument, Period, PersistOptions, SeriesKey, TimeRange, ValidationPolicy,
};
use barvault_csv::{CsvCodec, encode_to_vec};
use barvault_fs::{FileStore, md5_hex};
use barvault_parquet::ParquetCodec;
use barvault_ports::memory::{InMemoryLocks, InMemoryMetadataStore};
use barvault_ports::unreliable::UnreliableStore;
use barvault_ports::{BarCodec, CodecInput, FileMetadata, MetadataStore};
use common::ctx;

const DAY: i64 = 86_400_000_000_000;
const START: i64 = 1_136_160_000_000_000_000;

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("TAIL").unwrap(), Period::D1)
}

/// `n` daily bars with an extra column that is sometimes empty; `bump` shifts the prices
/// of the rows from `changed_from` on.
fn daily(n: usize, changed_from: usize, bump: f64) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| START + i * DAY).collect();
    let px = |i: usize| 50.0 + (i * 37 % 1000) as f64 * 0.01 + if i >= changed_from { bump } else { 0.0 };
    let v: Vec<f64> = (0..n).map(px).collect();
    let vol: Vec<f64> = (0..n).map(|i| 1500.0 + i as f64).collect();
    let oi: Vec<Option<f64>> = (0..n).map(|i| (i % 5 != 0).then_some(i as f64 * 0.5)).collect();
    Bars::new(ts, v.clone(), v.clone(), v.clone(), v, vol, vec![ExtraColumn::new("open_interest", oi).unwrap()])
        .unwrap()
}

/// Rows of `bars` from row `from` on.
fn from_row(bars: &Bars, from: usize) -> Bars {
    bars.slice(&TimeRange::new(Some(bars.timestamps()[from]), None).unwrap())
}

/// A CSV + Parquet manager over `dir` that prefers reading the Parquet copy, as the
/// factory builds it, with counting stores.
struct Stack {
    csv: Arc<UnreliableStore>,
    parquet: Arc<UnreliableStore>,
    csv_store: FileStore<CsvCodec>,
    parquet_store: FileStore<ParquetCodec>,
    metadata: Arc<InMemoryMetadataStore>,
    manager: DualStorageManager,
}

fn stack(dir: &Path, refuse: bool) -> Stack {
    let csv_store = FileStore::builder(dir, CsvCodec).locked_by_caller().build().unwrap();
    let parquet_store = FileStore::builder(dir, ParquetCodec::default()).locked_by_caller().build().unwrap();
    let wrap = |store: Arc<dyn barvault_ports::BarStore>| {
        let wrapped = UnreliableStore::new(store);
        Arc::new(if refuse { wrapped.without_tail_reads() } else { wrapped })
    };
    let csv = wrap(Arc::new(csv_store.clone()));
    let parquet = wrap(Arc::new(parquet_store.clone()));
    let metadata = Arc::new(InMemoryMetadataStore::new());
    // No appends in place (tests/tests/append.rs has them): every merge here, the night
    // that only adds a bar included, rewrites both copies, by their tails or whole.
    let settings = DualSettings {
        validation: ValidationPolicy::Off,
        prefer_secondary_reads: true,
        append_lag_rows: 0,
        ..DualSettings::default()
    };
    let manager = DualStorageManager::new(
        csv.clone(),
        Some(parquet.clone()),
        metadata.clone(),
        Arc::new(InMemoryLocks::new()),
        settings,
    );
    Stack { csv, parquet, csv_store, parquet_store, metadata, manager }
}

impl Stack {
    async fn persist(&self, bars: &Bars) {
        self.manager.persist(bars, &series(), PersistOptions::default(), &ctx()).await.unwrap();
    }

    fn csv_bytes(&self) -> Vec<u8> {
        common::read(&self.csv_store.path_of(&series()))
    }

    fn parquet_bars(&self) -> Bars {
        let bytes = common::read(&self.parquet_store.path_of(&series()));
        ParquetCodec::default()
            .decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::All)
            .map(|d| d.raw)
            .unwrap()
            .into_bars(Default::default())
            .unwrap()
            .0
    }

    async fn record(&self, format: &str) -> FileMetadata {
        self.metadata.get(&series(), format, &ctx()).await.unwrap().expect("a record")
    }

    /// Both files hold `expected`, the CSV exactly as a whole encode writes it, and both
    /// records describe their file: rows, range, columns and the MD5 of its bytes.
    async fn assert_holds(&self, expected: &Bars, step: &str) {
        assert!(self.csv_bytes() == encode_to_vec(expected), "{step}: the CSV is not a whole encode of the bars");
        assert!(self.parquet_bars() == *expected, "{step}: the Parquet copy does not load back as the bars");
        assert!(common::served(&self.manager, &series()).await.unwrap() == *expected, "{step}: load");
        for (format, path) in
            [("csv", self.csv_store.path_of(&series())), ("parquet", self.parquet_store.path_of(&series()))]
        {
            let record = self.record(format).await;
            assert_eq!(record.checksum, md5_hex(&common::read(&path)), "{step}: {format} checksum");
            assert_eq!(record.row_count, expected.len() as u64, "{step}: {format} rows");
            assert_eq!(record.columns, expected.column_names(), "{step}: {format} columns");
            let range = (record.date_range.start.map(|t| t.timestamp_nanos_opt().unwrap()), record.date_range.end);
            assert_eq!(range.0, expected.first_timestamp(), "{step}: {format} first");
            assert_eq!(
                range.1.map(|t| t.timestamp_nanos_opt().unwrap()),
                expected.last_timestamp(),
                "{step}: {format} last"
            );
        }
    }
}

/// Nightly merges through the manager read the Parquet copy from its last row group(s)
/// and stage both copies from the stored bytes and the merged last rows; a manager whose
/// stores refuse tails reads and stages the whole series. Both leave the same CSV bytes,
/// the same Parquet rows and the same records, night after night, including a night
/// that only appends and a night whose first revised bar opens the last row group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_merges_leave_the_store_a_whole_merge_leaves() {
    let (dir_tail, dir_whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tail = stack(dir_tail.path(), false);
    let whole = stack(dir_whole.path(), true);
    let mut expected = daily(5_000, usize::MAX, 0.0);
    for s in [&tail, &whole] {
        s.persist(&expected).await;
    }
    let mut updates = Vec::new();
    for night in 0..4 {
        let n = expected.len() + night;
        updates.push((format!("night {night}"), from_row(&daily(n + 1, n - 2, 0.5 * (night + 1) as f64), n - 2)));
    }
    // Only a new bar; then bars revised from the first row of the last row group (4,096).
    updates.push(("append".into(), from_row(&daily(5_005, 5_004, 2.0), 5_004)));
    updates.push(("group start".into(), from_row(&daily(5_005, 4_096, 3.0), 4_096)));
    // From row 1,000 on: no row group can be skipped, the tail read returns every row.
    updates.push(("deep revision".into(), from_row(&daily(5_006, 1_000, 4.0), 1_000)));
    for (i, (step, update)) in updates.iter().enumerate() {
        expected = merge(&expected, update, Default::default()).unwrap().0;
        for s in [&tail, &whole] {
            s.persist(update).await;
            s.assert_holds(&expected, step).await;
        }
        for format in ["csv", "parquet"] {
            let (a, b) = (tail.record(format).await, whole.record(format).await);
            assert_eq!((a.generation, &a.date_range, a.row_count), (b.generation, &b.date_range, b.row_count));
        }
        let _ = i;
        assert_eq!(tail.csv.loads_skipping_rows(), 0, "{step}: the CSV copy is only proven");
        assert_eq!((whole.parquet.loads_skipping_rows(), whole.parquet.stages_skipping_rows()), (0, 0), "{step}");
    }
    assert!(tail.csv_bytes() == whole.csv_bytes());
    // Six of the seven merges skipped rows; the deep revision read and wrote every row.
    assert_eq!(tail.parquet.loads_skipping_rows(), 6, "the Parquet copy is read by its tail");
    assert_eq!((tail.csv.stages_skipping_rows(), tail.parquet.stages_skipping_rows()), (6, 6));
}

/// What the last rows cannot serve is done on the whole series, with the same result:
/// - bars that add a column, which changes every stored row (nulls);
/// - a bar with a sub-second timestamp, which widens the time of every CSV line, so the
///   stored lines cannot be kept (the CSV store declines the tail);
/// - a damaged CSV copy (its checksum fails), which must not lend its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_the_last_rows_cannot_serve_read_the_whole_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path(), false);
    let mut expected = daily(5_000, usize::MAX, 0.0);
    s.persist(&expected).await;

    let plain = from_row(&daily(5_001, 4_999, 1.0), 4_999);
    let adj: Vec<Option<f64>> = vec![Some(1.5); plain.len()];
    let widened = Bars::new(
        plain.timestamps().to_vec(),
        plain.open().to_vec(),
        plain.high().to_vec(),
        plain.low().to_vec(),
        plain.close().to_vec(),
        plain.volume().to_vec(),
        vec![plain.extras()[0].clone(), ExtraColumn::new("adj_close", adj).unwrap()],
    )
    .unwrap();
    expected = merge(&expected, &widened, Default::default()).unwrap().0;
    s.persist(&widened).await;
    s.assert_holds(&expected, "new column").await;
    assert_eq!(expected.column_names().len(), 8);
    // Staged by its tail; the stores keep no stored byte (every row gains a column) and
    // write the whole version from the rows they hold.
    assert_eq!((s.csv.stages_skipping_rows(), s.parquet.stages_skipping_rows()), (1, 1));

    let last = expected.last_timestamp().unwrap();
    let sub_second =
        Bars::new(vec![last + DAY + 1], vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![0.0], vec![]).unwrap();
    expected = merge(&expected, &sub_second, Default::default()).unwrap().0;
    s.persist(&sub_second).await;
    s.assert_holds(&expected, "sub-second timestamp").await;
    assert_eq!(s.csv.stages_skipping_rows(), 2, "staged by its tail, every line encoded anew");

    let path = s.csv_store.path_of(&series());
    let text = String::from_utf8(common::read(&path)).unwrap();
    let damaged = text.replacen(",1500.0,", ",1600.0,", 1);
    assert_ne!(damaged, text);
    std::fs::write(&path, damaged).unwrap();
    let update = from_row(&expected, expected.len() - 1);
    let bumped = Bars::new(
        update.timestamps().to_vec(),
        vec![9.0],
        vec![9.0],
        vec![9.0],
        vec![9.0],
        vec![9.0],
        update.extras().to_vec(),
    )
    .unwrap();
    expected = merge(&expected, &bumped, Default::default()).unwrap().0;
    let before = s.csv.stages_skipping_rows();
    s.persist(&bumped).await;
    s.assert_holds(&expected, "damaged primary").await;
    assert_eq!(s.csv.stages_skipping_rows(), before, "no tail staged from a damaged copy");
}

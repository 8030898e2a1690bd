//! Appends in place (docs/DECISIONS.md, "Appends in place"): bars that all follow a stored
//! series are written after the CSV's committed end, the Parquet copy lags by a recorded
//! number of rows and is written again when the lag would pass its bound, and an append
//! interrupted after its bytes but before its record leaves exactly the committed bars.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use barvault::{Bars, Instrument, IssueKind, Period, PersistOptions, Scope, SeriesKey, Vault};
use barvault_csv::CsvCodec;
use barvault_ports::{Appended, FileMetadata, MetadataStore};
use common::{ctx, paths, read, vault};

const MINUTE: i64 = 60_000_000_000;
const START: i64 = 1_704_186_000_000_000_000; // 2024-01-02 09:00 UTC

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("APND").unwrap(), Period::M1)
}

/// Minute bars `lo..hi` of one deterministic series (the same row always has the same values).
fn minutes(lo: usize, hi: usize) -> Bars {
    let ts: Vec<i64> = (lo..hi).map(|i| START + i as i64 * MINUTE).collect();
    let px: Vec<f64> = (lo..hi).map(|i| 100.0 + (i * 37 % 1000) as f64 * 0.01).collect();
    let vol: Vec<f64> = (lo..hi).map(|i| (i * 13 % 5000) as f64).collect();
    Bars::new(ts, px.clone(), px.clone(), px.clone(), px, vol, vec![]).unwrap()
}

async fn persist(v: &Vault, bars: &Bars) {
    v.manager().persist(bars, &series(), PersistOptions::default(), &ctx()).await.unwrap();
}

async fn record(v: &Vault, format: &str) -> FileMetadata {
    v.manager().metadata().get(&series(), format, &ctx()).await.unwrap().expect("a record")
}

async fn stored(v: &Vault) -> Bars {
    v.manager().load_with_fallback(&series(), None, &ctx()).await.unwrap().expect("stored bars")
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn append_raw(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Three appends go in place (same inode, the bytes of a whole encode, the Parquet copy
/// and its record untouched, the lag recorded, `verify` clean with a note); the append that
/// would pass the lag bound writes both copies again, and so does a revision.
#[tokio::test]
async fn appends_go_in_place_and_the_parquet_copy_catches_up_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (csv, parquet) = paths(&v, &series());
    persist(&v, &minutes(0, 1000)).await;
    let (csv_inode, parquet_bytes) = (inode(&csv), read(&parquet));
    let mut rows = 1000;
    for (n, step) in [1usize, 1000, 2000].into_iter().enumerate() {
        persist(&v, &minutes(rows, rows + step)).await;
        rows += step;
        assert_eq!(inode(&csv), csv_inode, "append {n} rewrote the CSV");
        assert_eq!(read(&csv), CsvCodec.encode_to_vec(&minutes(0, rows)), "append {n}");
        assert_eq!(read(&parquet), parquet_bytes, "append {n} wrote the Parquet copy");
        let (c, p) = (record(&v, "csv").await, record(&v, "parquet").await);
        assert_eq!(c.appended, Some(Appended { base_generation: 1, rows: rows as u64 - 1000 }));
        assert_eq!((c.generation, p.generation, c.row_count, p.row_count), (n as u64 + 2, 1, rows as u64, 1000));
        assert_eq!(c.file_size, read(&csv).len() as u64);
        assert_eq!(stored(&v).await, minutes(0, rows));
        for deep in [false, true] {
            let report = v.verify(Scope::All, deep).await.unwrap();
            assert!(report.is_clean(), "deep {deep}: {:?}", report.issues);
            assert_eq!(report.notes.len(), 1, "deep {deep}: {:?}", report.notes);
            assert_eq!(report.notes[0].kind, IssueKind::Lagging);
        }
    }
    // 3,001 rows lag; 1,100 more would pass the 4,096-row bound.
    persist(&v, &minutes(rows, rows + 1100)).await;
    rows += 1100;
    assert_ne!(inode(&csv), csv_inode, "past the bound, both copies are written whole");
    let (c, p) = (record(&v, "csv").await, record(&v, "parquet").await);
    assert_eq!((c.appended, c.generation, p.generation, p.row_count), (None, 5, 5, rows as u64));
    let report = v.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean() && report.notes.is_empty(), "{report:?}");
    // Lagging again, then a revision of stored rows: both copies written, the lag gone.
    persist(&v, &minutes(rows, rows + 3)).await;
    assert!(record(&v, "csv").await.appended.is_some());
    let mut revised = minutes(rows - 2, rows + 3);
    revised = Bars::new(
        revised.timestamps().to_vec(),
        vec![1.0; 5],
        vec![2.0; 5],
        vec![0.5; 5],
        vec![1.5; 5],
        vec![7.0; 5],
        vec![],
    )
    .unwrap();
    persist(&v, &revised).await;
    let (c, p) = (record(&v, "csv").await, record(&v, "parquet").await);
    assert_eq!((c.appended, c.generation), (None, p.generation));
    assert_eq!(stored(&v).await.len(), rows + 3);
    assert!(v.verify(Scope::All, true).await.unwrap().is_clean());
}

/// What an append interrupted between its bytes and its record leaves (bytes after the
/// committed length, here a partial line): every read gives the committed bars, `verify`
/// names the bytes, and the next append or `recover` cuts them.
#[tokio::test]
async fn bytes_after_the_committed_length_are_never_read_and_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (csv, _) = paths(&v, &series());
    persist(&v, &minutes(0, 500)).await;
    persist(&v, &minutes(500, 510)).await;
    let committed = read(&csv);
    append_raw(&csv, b"2024-01-02 17:30:00Z,100.1,100.");
    assert_eq!(stored(&v).await, minutes(0, 510));
    let report = v.verify(Scope::All, false).await.unwrap();
    assert_eq!(report.issues.iter().map(|i| i.kind).collect::<Vec<_>>(), [IssueKind::UncommittedTail], "{report:?}");
    // The next append cuts them and appends after the committed length.
    persist(&v, &minutes(510, 515)).await;
    assert_eq!(read(&csv), CsvCodec.encode_to_vec(&minutes(0, 515)));
    assert!(read(&csv).starts_with(&committed));
    assert!(v.verify(Scope::All, true).await.unwrap().is_clean());
    // A whole write (a revision) makes its new version of the committed bytes only.
    append_raw(&csv, b"2024-01-02 17:40:00Z,1.0,1.0,1.0,1.0,1.0\n");
    persist(&v, &minutes(514, 516)).await;
    assert_eq!(stored(&v).await, minutes(0, 516));
    let report = v.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    // `recover` cuts them too, keeping every committed bar.
    persist(&v, &minutes(516, 520)).await;
    append_raw(&csv, b"2024-01-02 18:00:00Z,1");
    let recovered = v.recover(Scope::All).await.unwrap();
    // The CSV is rewritten (the bytes cut); the series being damaged, the lagging Parquet
    // copy is brought up to it in the same repair.
    assert!(recovered.actions.iter().any(|a| a.path == csv), "{recovered:?}");
    assert_eq!(stored(&v).await, minutes(0, 520));
    assert_eq!(read(&csv), CsvCodec.encode_to_vec(&minutes(0, 520)));
    let report = v.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Bars that do not all follow the stored ones, a new column or a sub-second timestamp
/// that would change every stored line are not appended: both copies are written and
/// record the same generation.
#[tokio::test]
async fn only_bars_after_the_last_stored_one_in_the_stored_style_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (csv, _) = paths(&v, &series());
    persist(&v, &minutes(0, 100)).await;
    let first = inode(&csv);
    // Overlapping the last stored bar.
    persist(&v, &minutes(99, 101)).await;
    assert_ne!(inode(&csv), first);
    let (c, p) = (record(&v, "csv").await, record(&v, "parquet").await);
    assert_eq!((c.appended, c.generation), (None, p.generation));
    // A sub-second bar after the last one: every line gets a fraction, so the file is encoded whole.
    let second = inode(&csv);
    let b = minutes(101, 102);
    let fine =
        Bars::new(vec![b.timestamps()[0] + 500_000_000], vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![])
            .unwrap();
    let validation = barvault::ValidationPolicy::Off;
    v.manager().persist_with_backup(&fine, &series(), PersistOptions::default(), validation, &ctx()).await.unwrap();
    assert_ne!(inode(&csv), second, "a sub-second bar was appended to a file of whole seconds");
    let (c, p) = (record(&v, "csv").await, record(&v, "parquet").await);
    assert_eq!((c.appended, c.generation), (None, p.generation));
    assert_eq!(stored(&v).await.len(), 102);
    assert!(v.verify(Scope::All, true).await.unwrap().is_clean());
}

/// The append is one more call of the port ([`barvault_ports::Capabilities::appends`]):
/// through a wrapper that forwards it, an append goes in place; one that fails with EIO
/// fails the persist, naming the step, and leaves the committed bars and both records as
/// they were; once healed, the same bars append.
#[tokio::test]
async fn a_failed_append_fails_the_persist_and_keeps_the_committed_bars() {
    use std::sync::Arc;

    use barvault::{DualSettings, DualStorageManager};
    use barvault_fs::FileStore;
    use barvault_parquet::ParquetCodec;
    use barvault_ports::memory::{InMemoryLocks, InMemoryMetadataStore};
    use barvault_ports::unreliable::{Injected, Op, UnreliableStore};

    let dir = tempfile::tempdir().unwrap();
    let csv_store = FileStore::builder(dir.path(), CsvCodec).locked_by_caller().build().unwrap();
    let parquet = FileStore::builder(dir.path(), ParquetCodec::default()).locked_by_caller().build().unwrap();
    let csv = Arc::new(UnreliableStore::new(Arc::new(csv_store.clone())));
    assert!(barvault_ports::BarStore::capabilities(&*csv).appends, "the wrapper hides the capability");
    let metadata = Arc::new(InMemoryMetadataStore::new());
    let manager = DualStorageManager::new(
        csv.clone(),
        Some(Arc::new(parquet)),
        metadata.clone(),
        Arc::new(InMemoryLocks::new()),
        DualSettings::default(),
    );
    let path = csv_store.path_of(&series());
    let persist = |bars: Bars| {
        let manager = &manager;
        async move { manager.persist(&bars, &series(), PersistOptions::default(), &ctx()).await }
    };
    persist(minutes(0, 500)).await.unwrap();
    persist(minutes(500, 501)).await.unwrap();
    assert_eq!(csv.calls(Op::Append), 1);
    let records = || async {
        let (s, c) = (series(), ctx());
        (metadata.get(&s, "csv", &c).await.unwrap(), metadata.get(&s, "parquet", &c).await.unwrap())
    };
    let (bytes, before) = (read(&path), records().await);

    csv.fail_once(Op::Append, 1, Injected::Io(5));
    let err = persist(minutes(501, 503)).await.expect_err("the injected EIO");
    assert!(err.to_string().contains("append"), "{err}");
    assert_eq!(read(&path), bytes, "a failed append changed the CSV");
    assert!(records().await == before, "a failed append changed a record");
    assert_eq!(common::served(&manager, &series()).await.unwrap(), minutes(0, 501));

    csv.heal();
    persist(minutes(501, 503)).await.unwrap();
    assert_eq!(csv.calls(Op::Append), 3);
    assert_eq!(read(&path), CsvCodec.encode_to_vec(&minutes(0, 503)));
    assert_eq!(common::served(&manager, &series()).await.unwrap(), minutes(0, 503));
}

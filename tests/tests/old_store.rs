//! A store written by the release binary of commit f3a35d0 (before port v2; see
//! `tests/data/store-f3a35d0-inputs/README.md`) opens under the current code, verifies
//! clean, serves the bars the old binary served (in today's CSV form: `Z` timestamps,
//! integral floats with `.0`), merges new bars (rewriting the old file whole in today's
//! form, never mixing the two in one file), and `recover` tidies the per-format lock files
//! it left.

mod common;

use std::path::{Path, PathBuf};

use barvault::{
    Bars, CsvCodec, ExportFormat, ImportOptions, Instrument, InstrumentKind, MergePolicy, Period, Scope, SeriesKey,
    ValidationPolicy, WriteMode,
};

/// The bars of a CSV file's bytes, in any of the forms barvault reads.
fn bars_of(bytes: &[u8]) -> Bars {
    CsvCodec.decode_bytes(bytes, None).unwrap().into_bars(MergePolicy::KeepLast).unwrap().0
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Copies `from` into `to` recursively, hidden files included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn series(kind: InstrumentKind, symbol: &str, period: Period) -> SeriesKey {
    SeriesKey::new(Instrument::new(kind, symbol).unwrap(), period)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_format_opens_verifies_serves_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("store");
    copy_tree(&fixture().join("store-f3a35d0"), &base);
    let vault = common::vault(&base);
    let report = vault.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.issues);
    assert_eq!(report.series_checked, 3);

    let nvda = series(InstrumentKind::Stock, "NVDA", Period::D1);
    let served = [
        (nvda.clone(), "served-NVDA-1d.csv"),
        (series(InstrumentKind::Future, "ESTX50", Period::M1), "served-ESTX50-1m.csv"),
        (series(InstrumentKind::Stock, "TICKS", Period::M1), "served-TICKS-1m.csv"),
    ];
    for (s, name) in &served {
        let out = dir.path().join(name);
        vault.export(s, None, ExportFormat::Csv, Some(&out), &common::ctx()).await.unwrap();
        let expected = bars_of(&common::read(&fixture().join("store-f3a35d0-inputs").join(name)));
        let got = common::read(&out);
        assert!(bars_of(&got) == expected, "{s}: served bars differ from what the old binary served");
        assert_eq!(got, CsvCodec.encode_to_vec(&expected), "{s}: served in today's form");
    }

    // A nightly-style update: the last stored bar revised and two new ones.
    let (csv, _) = common::paths(&vault, &nvda);
    let before = common::read(&csv);
    let update = dir.path().join("NVDA-update.csv");
    std::fs::write(
        &update,
        "timestamp,open,high,low,close,volume,adj_close\n\
         2000-05-10 00:00:00,7.2,7.3,6.5,6.6,1000,6.1\n\
         2000-05-11 00:00:00,6.6,7,6.5,6.9,2000,6.4\n\
         2000-05-12 00:00:00,6.9,7.1,6.8,7,3000,6.5\n",
    )
    .unwrap();
    let stored_last = String::from_utf8(before.clone()).unwrap().lines().last().unwrap().to_string();
    assert!(stored_last.starts_with("2000-05-10"), "fixture: the last stored bar is {stored_last}");
    let options = ImportOptions {
        validation: ValidationPolicy::Strict,
        mode: WriteMode::Merge,
        policy: MergePolicy::KeepLast,
        ..ImportOptions::default()
    };
    let r = vault.import_file(&update, &nvda, options, &common::ctx()).await.unwrap();
    assert_eq!((r.added, r.replaced, r.rows_stored), (2, 1, 331), "{r:?}");
    let after = common::read(&csv);
    let (old, new) = (bars_of(&before), bars_of(&after));
    assert!(new.slice_rows(0, 328) == old.slice_rows(0, 328), "the unchanged bars are the stored ones");
    assert_eq!(after, CsvCodec.encode_to_vec(&new), "the old file is rewritten whole in today's form");
    let report = vault.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "after the merge: {:#?}", report.issues);

    // The per-format lock files of the old version are tidied by recover.
    let legacy = base.join("stocks/1d/.NVDA.csv.lock");
    assert!(legacy.exists());
    let recovered = vault.recover(Scope::All).await.unwrap();
    assert!(!legacy.exists() && !base.join("futures/1m/.ESTX50.parquet.lock").exists(), "{recovered:?}");
    assert_eq!(recovered.actions.len(), 6, "two legacy locks per series: {recovered:#?}");
    assert!(base.join("stocks/1d/.NVDA.lock").exists(), "the series lock stays");
    assert!(vault.verify(Scope::All, true).await.unwrap().is_clean());
}

//! Real market data (intraday futures, ticks, Yahoo daily stocks) imported through the
//! application round-trips through both formats: each copy loads the bars the input file
//! holds, and CSV → Parquet → CSV reproduces the stored CSV byte for byte.

mod common;

use std::path::Path;

use barvault::{
    Bars, CsvCodec, ExportFormat, ImportOptions, InputOptions, Instrument, InstrumentKind, MergePolicy, ParquetCodec,
    Period, Scope, SeriesKey, ValidationPolicy, WriteMode,
};
use barvault_fs::FileStore;
use barvault_ports::BarCodec;

struct Sample {
    file: &'static str,
    kind: InstrumentKind,
    symbol: &'static str,
    period: Period,
    min_rows: usize,
    extras: &'static [&'static str],
}

const SAMPLES: [Sample; 4] = [
    Sample {
        file: "ESTX50-2006-01-02-1m.txt",
        kind: InstrumentKind::Future,
        symbol: "ESTX50",
        period: Period::M1,
        min_rows: 30_000,
        extras: &["open_interest"],
    },
    Sample {
        file: "ticks-2015-09-23.csv",
        kind: InstrumentKind::Future,
        symbol: "ES_TICKS",
        period: Period::M1,
        min_rows: 100,
        extras: &["open_interest"],
    },
    Sample {
        file: "NVDA.csv",
        kind: InstrumentKind::Stock,
        symbol: "NVDA",
        period: Period::D1,
        min_rows: 4_000,
        extras: &["adj_close"],
    },
    Sample {
        file: "ORCL.csv",
        kind: InstrumentKind::Stock,
        symbol: "ORCL",
        period: Period::D1,
        min_rows: 5_000,
        extras: &["adj_close"],
    },
];

const IMPORT: ImportOptions = ImportOptions {
    validation: ValidationPolicy::Off,
    mode: WriteMode::Merge,
    policy: MergePolicy::KeepLast,
    input: NAIVE_UTC,
};
const NAIVE_UTC: InputOptions = InputOptions { tz: None, progress: None };

/// The bars an input file holds, decoded independently of the store.
fn expected_bars(file: &Path) -> Bars {
    let raw = CsvCodec.decode_bytes(&common::read(file), None).expect("decode input");
    raw.into_bars(MergePolicy::KeepLast).expect("input folds").0
}

fn encode<C: BarCodec>(codec: &C, bars: &Bars, series: &SeriesKey) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(bars, series, &mut out).expect("encode");
    out
}

fn decode<C: BarCodec>(codec: &C, bytes: &[u8]) -> Bars {
    let raw = codec.decode(barvault_ports::CodecInput::Bytes(bytes), barvault_ports::Rows::All).expect("decode").raw;
    raw.into_bars(MergePolicy::KeepLast).expect("sorted").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_files_round_trip_through_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let ctx = common::ctx();
    let csv_store = FileStore::new(dir.path(), CsvCodec).unwrap();
    let parquet_store = FileStore::new(dir.path(), ParquetCodec::default()).unwrap();
    for sample in &SAMPLES {
        let file = common::data_file(sample.file);
        let series = SeriesKey::new(Instrument::new(sample.kind, sample.symbol).unwrap(), sample.period);
        let expected = expected_bars(&file);
        assert!(expected.len() >= sample.min_rows, "{}: {} rows", sample.file, expected.len());
        for extra in sample.extras {
            assert!(
                expected.extra(extra).is_some(),
                "{}: no {extra} column in {:?}",
                sample.file,
                expected.column_names()
            );
        }

        let imported = vault.import_file(&file, &series, IMPORT, &ctx).await.unwrap();
        assert!(imported.written && imported.warning.is_none(), "{imported:?}");
        assert_eq!(imported.rows_stored, expected.len(), "{}", sample.file);

        // Both copies, read by plain single-format stores, hold exactly the input's bars.
        let from_csv = common::load(&csv_store, &series).await.expect("csv copy");
        let from_parquet = common::load(&parquet_store, &series).await.expect("parquet copy");
        assert!(from_csv == expected, "{}: CSV copy differs from the input", sample.file);
        assert!(from_parquet == expected, "{}: Parquet copy differs from the input", sample.file);
        assert!(vault.manager().load(&series, None, &ctx).await.unwrap() == Some(expected.clone()));

        // CSV → Parquet → CSV is byte-identical to the stored CSV.
        let (csv_path, _) = common::paths(&vault, &series);
        let stored_csv = common::read(&csv_path);
        let parquet_bytes = encode(&ParquetCodec::default(), &decode(&CsvCodec, &stored_csv), &series);
        let back = encode(&CsvCodec, &decode(&ParquetCodec::default(), &parquet_bytes), &series);
        assert!(back == stored_csv, "{}: CSV → Parquet → CSV changed the bytes", sample.file);

        // The same through the user-facing path: export Parquet, import it into a fresh
        // vault, and its stored CSV is the same file.
        let exported = dir.path().join(format!("export-{}.parquet", sample.symbol));
        let rows = vault.export(&series, None, ExportFormat::Parquet, Some(&exported), &ctx).await.unwrap();
        assert_eq!(rows, expected.len());
        let other_dir = tempfile::tempdir().unwrap();
        let other = common::vault(other_dir.path());
        other.import_file(&exported, &series, IMPORT, &ctx).await.unwrap();
        let (other_csv, _) = common::paths(&other, &series);
        assert!(common::read(&other_csv) == stored_csv, "{}: exported Parquet re-imports differently", sample.file);
        let exported_csv = dir.path().join(format!("export-{}.csv", sample.symbol));
        vault.export(&series, None, ExportFormat::Csv, Some(&exported_csv), &ctx).await.unwrap();
        assert!(common::read(&exported_csv) == stored_csv, "{}: CSV export differs from the stored file", sample.file);

        // Importing the same file again changes nothing and writes nothing.
        let again = vault.import_file(&file, &series, IMPORT, &ctx).await.unwrap();
        assert!(!again.written && again.added == 0 && again.replaced == 0, "{again:?}");
        assert!(common::read(&csv_path) == stored_csv);
    }
    let report = vault.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.issues);
    assert_eq!(report.series_checked, SAMPLES.len());
    assert_eq!(report.files_checked, 2 * SAMPLES.len());
}

//! The whole write and read path as an application sees it: `StorageFactory::open` on a
//! real directory, `DualStorageManager::persist_with_backup` (validate, lock, read state,
//! merge, stage CSV and Parquet at once with fsync, publish them in order, record MD5
//! metadata) and `load_with_fallback` (with the default `prefer_secondary_reads`: read the
//! Parquet copy when it shares the CSV's generation, verify its checksum, decode).
//!
//! Run with `cargo bench -p barvault --bench dual`. Stores live under Cargo's target
//! directory (`CARGO_TARGET_TMPDIR`), so the fsyncs hit the same disk as the build.

#[path = "../../barvault-domain/benches/common/mod.rs"]
mod common;

use barvault::{
    Instrument, MergePolicy, OpContext, Period, PersistOptions, SeriesKey, StorageConfig, StorageFactory,
    ValidationPolicy, Vault,
};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use common::{MINUTE_NS, SIZES, START_NS, bars_every, label, minute_bars, tune};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("AAPL").expect("valid symbol"), Period::M1)
}

/// A fresh, empty dual (CSV + Parquet) store with the default configuration.
fn empty_store() -> (TempDir, Vault) {
    let dir = tempfile::Builder::new()
        .prefix("barvault-bench-dual-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir under the target directory");
    let config = StorageConfig::with_output_directory(dir.path());
    assert!(config.backup_enabled, "the default configuration keeps a Parquet copy");
    let vault = StorageFactory::open(&config).expect("open store");
    (dir, vault)
}

/// First persist of a series into an empty store: both files and the metadata are
/// written and fsynced. Each iteration gets a new store (setup, not timed); the store is
/// deleted after timing.
fn bench_persist(c: &mut Criterion) {
    let rt = runtime();
    let series = series();
    let ctx = OpContext::new();
    let mut group = c.benchmark_group("app/persist_new_series_fsync");
    for rows in SIZES {
        let bars = minute_bars(rows, START_NS, 1);
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bars, |b, bars| {
            b.iter_batched(
                empty_store,
                |(dir, vault)| {
                    let outcome = rt
                        .block_on(vault.manager().persist_with_backup(
                            bars,
                            &series,
                            PersistOptions::merge(MergePolicy::KeepLast),
                            ValidationPolicy::Strict,
                            &ctx,
                        ))
                        .expect("persist");
                    assert_eq!(outcome.receipt.rows_written, rows);
                    (dir, vault, outcome)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// `load_with_fallback` of the whole series from a healthy store (the Parquet copy, which
/// shares the CSV's generation, is read, checked against its recorded MD5 and decoded; the
/// CSV is not touched). The file is in the page cache after the first iteration, so this is
/// decode and hashing cost, not disk reads.
fn bench_load(c: &mut Criterion) {
    let rt = runtime();
    let series = series();
    let ctx = OpContext::new();
    let mut group = c.benchmark_group("app/load_with_fallback");
    for rows in SIZES {
        let bars = minute_bars(rows, START_NS, 1);
        let (_dir, vault) = empty_store();
        rt.block_on(vault.manager().persist_with_backup(
            &bars,
            &series,
            PersistOptions::merge(MergePolicy::KeepLast),
            ValidationPolicy::Strict,
            &ctx,
        ))
        .expect("persist");
        let loaded = rt.block_on(vault.manager().load_with_fallback(&series, None, &ctx)).expect("load");
        assert_eq!(loaded.as_ref(), Some(&bars), "the store must give back what it was given");
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::from_parameter(label(rows)), |b| {
            b.iter(|| rt.block_on(vault.manager().load_with_fallback(&series, None, &ctx)).expect("load"))
        });
    }
    group.finish();
}

/// Daily bars (5,000 of them, as in a nightly update) for a template series.
const STORE_SERIES_ROWS: usize = 5_000;
const DAY_NS: i64 = 86_400_000_000_000;

/// A store holding `count` daily series: one persisted through the API, the others copies
/// of its data files and metadata records under other symbols (so building 10,000 series
/// takes seconds, not the minutes of 10,000 fsynced persists). Returns the series to write.
fn store_with_series(count: usize, rt: &Runtime, ctx: &OpContext) -> (TempDir, Vault, SeriesKey) {
    let (dir, vault) = empty_store();
    let key = |symbol: &str| SeriesKey::new(Instrument::stock(symbol).expect("valid symbol"), Period::D1);
    let template = key("TEMPLATE");
    let bars = bars_every(STORE_SERIES_ROWS, START_NS, DAY_NS, 7);
    rt.block_on(vault.manager().persist_with_backup(
        &bars,
        &template,
        PersistOptions::merge(MergePolicy::KeepLast),
        ValidationPolicy::Strict,
        ctx,
    ))
    .expect("persist the template series");
    let data = dir.path().join("stocks/1d");
    let meta = dir.path().join(".barvault/meta/stocks/1d");
    let records: Vec<String> = ["csv", "parquet"]
        .iter()
        .map(|ext| {
            let record = rt.block_on(vault.manager().metadata().get(&template, ext, ctx)).expect("record");
            serde_json::to_string_pretty(&record.expect("the template is recorded")).expect("json")
        })
        .collect();
    for i in 1..count {
        let symbol = format!("S{i:05}");
        for (ext, record) in ["csv", "parquet"].iter().zip(&records) {
            std::fs::copy(data.join(format!("TEMPLATE.{ext}")), data.join(format!("{symbol}.{ext}"))).expect("copy");
            // Written as records of earlier versions (one JSON document), which barvault
            // reads: the copies take seconds instead of 10,000 fsynced record writes.
            std::fs::write(meta.join(format!("{symbol}.{ext}.json")), record.replace("TEMPLATE", &symbol))
                .expect("write record");
        }
    }
    let target = if count > 1 { key(&format!("S{:05}", count / 2)) } else { template };
    (dir, vault, target)
}

/// The nightly-update write (one new bar merged into a 5,000-row daily series, both copies
/// and records fsynced) into a store of 1 series and of 10,000: the bound is that
/// the second costs at most 1.2× the first (nothing in a persist reads store-wide state).
fn bench_store_size(c: &mut Criterion) {
    let rt = runtime();
    let ctx = OpContext::new();
    let mut group = c.benchmark_group("app/persist_daily_bar_by_store_size");
    group.sample_size(30);
    for count in [1, 10_000] {
        let (_dir, vault, target) = store_with_series(count, &rt, &ctx);
        let mut next = START_NS + STORE_SERIES_ROWS as i64 * DAY_NS;
        group.bench_function(BenchmarkId::from_parameter(format!("{count} series")), |b| {
            b.iter(|| {
                let bar = bars_every(1, next, DAY_NS, 9);
                next += DAY_NS;
                let outcome = rt
                    .block_on(vault.manager().persist_with_backup(
                        &bar,
                        &target,
                        PersistOptions::merge(MergePolicy::KeepLast),
                        ValidationPolicy::Strict,
                        &ctx,
                    ))
                    .expect("persist");
                assert_eq!(outcome.receipt.merge.rows_added, 1);
            })
        });
    }
    group.finish();
}

/// The P2 shape at the library level: 1,000 new minute bars, the first 500 of them
/// revising the last 500 stored, merged into a series of 1M rows (growing by 500 per
/// iteration). The stored CSV's unchanged leading rows are reused (proof, copy, MD5
/// resumed), so this measures the merge, one whole Parquet encode and the CSV's tail.
fn bench_tail_update(c: &mut Criterion) {
    let rt = runtime();
    let ctx = OpContext::new();
    let series = series();
    let (_dir, vault) = empty_store();
    let rows = 1_000_000;
    rt.block_on(vault.manager().persist_with_backup(
        &minute_bars(rows, START_NS, 1),
        &series,
        PersistOptions::merge(MergePolicy::KeepLast),
        ValidationPolicy::Strict,
        &ctx,
    ))
    .expect("persist the stored series");
    let mut group = c.benchmark_group("app/tail_update");
    tune(&mut group, rows);
    let mut end = START_NS + rows as i64 * MINUTE_NS;
    let mut seed = 2;
    group.bench_function("1M_stored+1k_half_revised", |b| {
        b.iter(|| {
            let update = minute_bars(1_000, end - 500 * MINUTE_NS, seed);
            end += 500 * MINUTE_NS;
            seed += 1;
            let outcome = rt
                .block_on(vault.manager().persist_with_backup(
                    &update,
                    &series,
                    PersistOptions::merge(MergePolicy::KeepLast),
                    ValidationPolicy::Strict,
                    &ctx,
                ))
                .expect("persist");
            assert_eq!(outcome.receipt.merge.rows_added, 500);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_persist, bench_load, bench_store_size, bench_tail_update);
criterion_main!(benches);

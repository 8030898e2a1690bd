//! Merge and normalisation costs of the domain: what every persist pays before any I/O.
//!
//! Run with `cargo bench -p barvault-domain --bench merge`.

mod common;

use std::hint::black_box;

use barvault_domain::{MergePolicy, RawBars, merge};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use common::{MINUTE_NS, SIZES, START_NS, label, minute_bars, tune};

const EXISTING: usize = 1_000_000;
const NEW: usize = 100_000;

/// 1M stored bars + 100k new ones under keep-last: half of the new rows replace the last
/// 50k stored rows (with different prices), half extend the series; then a batch that only
/// appends after the stored range.
fn bench_merge(c: &mut Criterion) {
    let existing = minute_bars(EXISTING, START_NS, 1);
    let overlap_start = START_NS + (EXISTING - NEW / 2) as i64 * MINUTE_NS;
    let overlapping = minute_bars(NEW, overlap_start, 2);
    let append_start = START_NS + EXISTING as i64 * MINUTE_NS;
    let appended = minute_bars(NEW, append_start, 3);

    // Check once, outside the timed loops, that the inputs have the intended shape.
    let (_, stats) = merge(&existing, &overlapping, MergePolicy::KeepLast).expect("merge");
    assert_eq!((stats.duplicates_removed, stats.rows_added), (NEW / 2, NEW / 2));
    let (_, stats) = merge(&existing, &appended, MergePolicy::KeepLast).expect("merge");
    assert_eq!((stats.duplicates_removed, stats.rows_added), (0, NEW));

    let mut group = c.benchmark_group("domain/merge_keep_last");
    tune(&mut group, EXISTING);
    group.throughput(Throughput::Elements((EXISTING + NEW) as u64));
    group.bench_function("1M+100k_50pct_overlap", |b| {
        b.iter(|| merge(&existing, black_box(&overlapping), MergePolicy::KeepLast).expect("merge"))
    });
    group.bench_function("1M+100k_append", |b| {
        b.iter(|| merge(&existing, black_box(&appended), MergePolicy::KeepLast).expect("merge"))
    });
    group.finish();
}

/// `RawBars::into_bars` on bars already in order (what decoding a stored file gives): the
/// sorted fast path that only checks the order and moves the columns.
fn bench_into_bars_sorted(c: &mut Criterion) {
    let mut group = c.benchmark_group("domain/into_bars_sorted");
    for rows in SIZES {
        let raw = RawBars::from(minute_bars(rows, START_NS, 4));
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &raw, |b, raw| {
            // The clone is setup, not measured; the frame is dropped after timing.
            b.iter_batched(
                || raw.clone(),
                |raw| raw.into_bars(MergePolicy::KeepLast).expect("sorted input"),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_merge, bench_into_bars_sorted);
criterion_main!(benches);

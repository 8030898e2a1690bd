//! Parquet (snappy) encode and decode throughput on realistic minute bars, encode of 1M
//! bars with the other page compressions, and a one-day range read of a 1M-row file
//! (row-group pruning).
//!
//! Run with `cargo bench -p barvault-parquet --bench codec`.

#[path = "../../barvault-domain/benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use barvault_domain::{Instrument, Period, SeriesKey, TimeRange};
use barvault_parquet::{ParquetCodec, ParquetCompression};
use barvault_ports::{BarCodec, CodecInput};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use common::{BARS_PER_DAY, MINUTE_NS, SIZES, START_NS, label, minute_bars, tune};

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("AAPL").expect("valid symbol"), Period::M1)
}

fn codec() -> ParquetCodec {
    ParquetCodec::new(ParquetCompression::Snappy)
}

fn encoded(rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    codec().encode(&minute_bars(rows, START_NS, 1), &series(), &mut out).expect("encode");
    out
}

/// `ParquetCodec::encode` (snappy, default row groups) into a reused `Vec`.
fn bench_encode(c: &mut Criterion) {
    let codec = codec();
    let series = series();
    let mut group = c.benchmark_group("parquet/encode_snappy");
    for rows in SIZES {
        let bars = minute_bars(rows, START_NS, 1);
        let mut out = Vec::new();
        codec.encode(&bars, &series, &mut out).expect("encode");
        eprintln!(
            "parquet/encode_snappy/{}: {} bytes ({:.1} per row)",
            label(rows),
            out.len(),
            out.len() as f64 / rows as f64
        );
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bars, |b, bars| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(bars), &series, &mut out).expect("encode");
                out.len()
            })
        });
    }
    group.finish();
}

/// `ParquetCodec::encode` of 1M bars with each other compression (snappy is above), to
/// weigh encode time against file size.
fn bench_encode_compressions(c: &mut Criterion) {
    let series = series();
    let rows = 1_000_000;
    let bars = minute_bars(rows, START_NS, 1);
    let mut group = c.benchmark_group("parquet/encode_1M");
    tune(&mut group, rows);
    group.throughput(Throughput::Elements(rows as u64));
    for compression in [ParquetCompression::Lz4, ParquetCompression::Zstd, ParquetCompression::None] {
        let codec = ParquetCodec::new(compression);
        let mut out = Vec::new();
        codec.encode(&bars, &series, &mut out).expect("encode");
        eprintln!(
            "parquet/encode_1M/{compression}: {} bytes ({:.1} per row)",
            out.len(),
            out.len() as f64 / rows as f64
        );
        group.bench_function(compression.as_str(), |b| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&bars), &series, &mut out).expect("encode");
                out.len()
            })
        });
    }
    group.finish();
}

/// `ParquetCodec::decode` of a whole file held in memory.
fn bench_decode(c: &mut Criterion) {
    let codec = codec();
    let mut group = c.benchmark_group("parquet/decode_snappy");
    for rows in SIZES {
        let bytes = encoded(rows);
        let raw = codec.decode(CodecInput::Bytes(&bytes), None).expect("decode");
        assert_eq!(raw.into_bars(Default::default()).expect("sorted").0, minute_bars(rows, START_NS, 1));
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bytes, |b, bytes| {
            b.iter(|| codec.decode(CodecInput::Bytes(black_box(bytes)), None).expect("decode"))
        });
    }
    group.finish();
}

/// One day (1,440 bars) from the middle of a 1M-row file: only the row group holding it is
/// decoded, then trimmed to the range.
fn bench_range(c: &mut Criterion) {
    let codec = codec();
    let rows = 1_000_000;
    let bytes = encoded(rows);
    let first = START_NS + (rows / 2) as i64 * MINUTE_NS;
    let day = TimeRange::new(Some(first), Some(first + (BARS_PER_DAY as i64 - 1) * MINUTE_NS)).expect("range");
    let (raw, stats) = codec.decode_with_stats(CodecInput::Bytes(&bytes), Some(day)).expect("decode");
    assert_eq!(raw.len(), BARS_PER_DAY);
    eprintln!("parquet/decode_range_one_day/1M: {stats:?}");
    let mut group = c.benchmark_group("parquet/decode_range_one_day");
    tune(&mut group, rows);
    group.throughput(Throughput::Elements(BARS_PER_DAY as u64));
    group.bench_function(label(rows), |b| {
        b.iter(|| codec.decode(CodecInput::Bytes(black_box(&bytes)), Some(day)).expect("decode"))
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_encode_compressions, bench_decode, bench_range);
criterion_main!(benches);

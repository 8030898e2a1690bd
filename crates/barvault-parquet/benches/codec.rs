//! Parquet (snappy) encode and decode throughput on realistic minute bars, encode of 1M
//! bars with the other page compressions, a one-day range read of a 1M-row file
//! (row-group pruning), and encode and decode of one 5,000-row daily series (the nightly
//! rewrite of a stock universe: hundreds of such small files).
//!
//! Run with `cargo bench -p barvault-parquet --bench codec`.

#[path = "../../barvault-domain/benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use barvault_domain::{Bars, Instrument, Period, SeriesKey, TimeRange};
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

/// One day in nanoseconds.
const DAY_NS: i64 = 86_400_000_000_000;

/// `rows` daily bars shaped like `gen_bars.py --universe` (the P4 workload): a geometric
/// random walk from $50 with 1% daily volatility, open = previous close, high and low a
/// half-normal spread beyond them, all rounded to cents; whole volumes in 100..100,000; one
/// bar per calendar day from 2006-01-02. A 5,000-row series has ~2,900 distinct closes (the
/// generated files: 2,200–3,300; the real ORCL and NVDA files in `tests/data/daily`: ~0.6 a row).
fn daily_bars(rows: usize, seed: u64) -> Bars {
    // xorshift64* and Box-Muller: deterministic, no dependency.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut unit = move || ((next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut normal = move || (-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
    let cents = |x: f64| (x * 100.0).round() / 100.0;
    let start = 1_136_160_000_000_000_000; // 2006-01-02T00:00:00Z
    let (mut ts, mut open, mut high, mut low, mut close, mut volume) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut prev = 50.0f64;
    for i in 0..rows {
        let c = prev * (0.01 * normal()).exp();
        let spread = (0.007 * normal()).abs() * c;
        ts.push(start + i as i64 * DAY_NS);
        open.push(cents(prev));
        high.push(cents(prev.max(c) + spread));
        low.push(cents(prev.min(c) - spread));
        close.push(cents(c));
        volume.push((100 + (next_volume(i as u64, seed) % 99_900)) as f64);
        prev = c;
    }
    Bars::new(ts, open, high, low, close, volume, vec![]).expect("timestamps are strictly increasing")
}

/// A whole-number volume for row `i` (splitmix64 of the row and seed).
fn next_volume(i: u64, seed: u64) -> u64 {
    let mut z = i.wrapping_add(seed << 32).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Encode into a reused `Vec` and decode of one 5,000-row daily series (snappy): the file
/// the nightly update of a stock universe rewrites once per symbol.
fn bench_daily(c: &mut Criterion) {
    let codec = codec();
    let series = SeriesKey::new(Instrument::stock("S0000").expect("valid symbol"), Period::D1);
    let rows = 5_000;
    let bars = daily_bars(rows, 100);
    let mut out = Vec::new();
    codec.encode(&bars, &series, &mut out).expect("encode");
    let raw = codec.decode(CodecInput::Bytes(&out), barvault_ports::Rows::All).map(|d| d.raw).expect("decode");
    assert_eq!(raw.into_bars(Default::default()).expect("sorted").0, bars);
    eprintln!("parquet/daily_5k: {} bytes ({:.1} per row)", out.len(), out.len() as f64 / rows as f64);
    let bytes = out.clone();
    let mut group = c.benchmark_group("parquet/daily_5k");
    tune(&mut group, rows);
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(black_box(&bars), &series, &mut out).expect("encode");
            out.len()
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            codec
                .decode(CodecInput::Bytes(black_box(&bytes)), barvault_ports::Rows::All)
                .map(|d| d.raw)
                .expect("decode")
        })
    });
    // What a nightly merge reads: the rows from its second-to-last bar on (the last group).
    let from = bars.timestamps()[rows - 2];
    group.bench_function("decode_tail", |b| {
        b.iter(|| codec.decode(CodecInput::Bytes(black_box(&bytes)), barvault_ports::Rows::From(from)).expect("decode"))
    });
    group.finish();
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
        let raw = codec.decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::All).map(|d| d.raw).expect("decode");
        assert_eq!(raw.into_bars(Default::default()).expect("sorted").0, minute_bars(rows, START_NS, 1));
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bytes, |b, bytes| {
            b.iter(|| {
                codec
                    .decode(CodecInput::Bytes(black_box(bytes)), barvault_ports::Rows::All)
                    .map(|d| d.raw)
                    .expect("decode")
            })
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
        b.iter(|| {
            codec
                .decode(CodecInput::Bytes(black_box(&bytes)), barvault_ports::Rows::Range(day))
                .map(|d| d.raw)
                .expect("decode")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_daily, bench_encode, bench_encode_compressions, bench_decode, bench_range);
criterion_main!(benches);

//! CSV encode and decode throughput on realistic minute bars (two-decimal prices, whole volumes).
//!
//! Run with `cargo bench -p barvault-csv --bench codec`.

#[path = "../../barvault-domain/benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use barvault_csv::CsvCodec;
use barvault_domain::{Instrument, Period, SeriesKey};
use barvault_ports::BarCodec;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use common::{SIZES, START_NS, label, minute_bars, tune};

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("AAPL").expect("valid symbol"), Period::M1)
}

/// `CsvCodec::encode` into a reused `Vec` (the buffer's growth is paid once, as with the
/// store's 64 KiB `BufWriter`).
fn bench_encode(c: &mut Criterion) {
    let codec = CsvCodec::new();
    let series = series();
    let mut group = c.benchmark_group("csv/encode");
    for rows in SIZES {
        let bars = minute_bars(rows, START_NS, 1);
        let mut out = Vec::new();
        codec.encode(&bars, &series, &mut out).expect("encode");
        eprintln!("csv/encode/{}: {} bytes ({:.1} per row)", label(rows), out.len(), out.len() as f64 / rows as f64);
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

/// `CsvCodec::decode_bytes` of a file held in memory, without a range.
fn bench_decode(c: &mut Criterion) {
    let codec = CsvCodec::new();
    let series = series();
    let mut group = c.benchmark_group("csv/decode");
    for rows in SIZES {
        let bars = minute_bars(rows, START_NS, 1);
        let mut bytes = Vec::new();
        codec.encode(&bars, &series, &mut bytes).expect("encode");
        let raw = codec.decode_bytes(&bytes, None).expect("decode");
        assert_eq!(raw.into_bars(Default::default()).expect("sorted").0, bars, "CSV must round-trip exactly");
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bytes, |b, bytes| {
            b.iter(|| codec.decode_bytes(black_box(bytes), None).expect("decode"))
        });
    }
    group.finish();
}

/// `CsvCodec::decode_reader` of the same bytes, the path of an imported file (read in pieces).
fn bench_decode_reader(c: &mut Criterion) {
    let codec = CsvCodec::new();
    let series = series();
    let mut group = c.benchmark_group("csv/decode_reader");
    for rows in SIZES {
        let mut bytes = Vec::new();
        codec.encode(&minute_bars(rows, START_NS, 1), &series, &mut bytes).expect("encode");
        tune(&mut group, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(rows)), &bytes, |b, bytes| {
            b.iter(|| codec.decode_reader(black_box(bytes.as_slice()), bytes.len(), None).expect("decode"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode, bench_decode_reader);
criterion_main!(benches);

//! Encode/decode time and size of 1M one-minute bars per compression and row-group size.
//! Run with `cargo run --release -p barvault-parquet --example parquet_throughput [noisy]`.

use std::time::Instant;

use barvault_domain::{Bars, ExtraColumn, Instrument, Period, SeriesKey, TimeRange};
use barvault_parquet::{ParquetCodec, ParquetCompression};
use barvault_ports::{BarCodec, CodecInput};

fn bars(n: usize, noisy: bool) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_600_000_000_000_000_000 + i * 60_000_000_000).collect();
    // A deterministic random walk with realistic two-decimal prices.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut price = 100.0f64;
    let mut close = Vec::with_capacity(n);
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        price = ((price + ((state % 21) as f64 - 10.0) * 0.01) * 100.0).round() / 100.0;
        if noisy {
            // Off-grid prices: every value distinct, the worst case for dictionary encoding.
            price += (state >> 11) as f64 / (1u64 << 53) as f64 * 1e-3;
        }
        close.push(price);
    }
    let open: Vec<f64> = close.iter().map(|c| c - 0.01).collect();
    let high: Vec<f64> = close.iter().map(|c| c + 0.05).collect();
    let low: Vec<f64> = close.iter().map(|c| c - 0.06).collect();
    let volume: Vec<f64> = (0..n).map(|i| ((i * 7919) % 10_000) as f64).collect();
    let adj = ExtraColumn::new("adj_close", close.iter().map(|c| Some(c * 0.98)).collect()).expect("valid name");
    Bars::new(ts, open, high, low, close, volume, vec![adj]).expect("sorted")
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        out = Some(v);
    }
    (best, out.expect("runs > 0"))
}

fn main() {
    let n = 1_000_000;
    // `noisy` as the first argument: prices off the tick grid.
    let noisy = std::env::args().nth(1).is_some_and(|a| a == "noisy");
    let data = bars(n, noisy);
    let series = SeriesKey::new(Instrument::stock("AAPL").expect("valid"), Period::M1);
    println!("{n} rows, 6 core columns + 1 extra; best of 5 runs");
    let mut configs: Vec<ParquetCodec> = ParquetCompression::ALL.into_iter().map(ParquetCodec::new).collect();
    for rows in [65_536, 1 << 20] {
        configs.push(ParquetCodec::new(ParquetCompression::Snappy).with_row_group_rows(rows));
    }
    for codec in configs {
        let (enc_ms, bytes) = best_of(5, || {
            let mut out = Vec::with_capacity(64 << 20);
            codec.encode(&data, &series, &mut out).expect("encode");
            out
        });
        let (dec_ms, raw) = best_of(5, || {
            codec.decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::All).map(|d| d.raw).expect("decode")
        });
        assert_eq!(raw.len(), n);
        let day = TimeRange::new(Some(data.timestamps()[500_000]), Some(data.timestamps()[501_439])).expect("range");
        let (range_ms, (_, stats)) =
            best_of(5, || codec.decode_with_stats(CodecInput::Bytes(&bytes), Some(day)).expect("decode"));
        println!(
            "{:>6} rg={:>7}: encode {enc_ms:7.1} ms, decode {dec_ms:6.1} ms, one-day range {range_ms:5.1} ms ({}/{} groups), {:6.1} MiB",
            codec.compression().to_string(),
            codec.row_group_rows(),
            stats.row_groups_read,
            stats.row_groups_total,
            bytes.len() as f64 / (1 << 20) as f64
        );
    }
}

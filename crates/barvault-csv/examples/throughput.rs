//! Measures encode and decode of 1M one-minute bars.
//! Run: `cargo run --release -p barvault-csv --example throughput`

use std::hint::black_box;
use std::time::{Duration, Instant};

use barvault_csv::{CsvCodec, encode_to_vec};
use barvault_domain::{Bars, ExtraColumn};

const ROWS: usize = 1_000_000;

fn sample() -> Bars {
    let start = 1_704_067_200_000_000_000i64; // 2024-01-01
    let ts: Vec<i64> = (0..ROWS as i64).map(|i| start + i * 60_000_000_000).collect();
    // Prices on a 0.25 tick with drift, like an index future; integral volumes.
    let mut price = 4500.0f64;
    let mut open = Vec::with_capacity(ROWS);
    let mut high = Vec::with_capacity(ROWS);
    let mut low = Vec::with_capacity(ROWS);
    let mut close = Vec::with_capacity(ROWS);
    let mut volume = Vec::with_capacity(ROWS);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..ROWS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let step = (state % 9) as f64 - 4.0;
        let o = price;
        let c = price + step * 0.25;
        open.push(o);
        close.push(c);
        high.push(o.max(c) + 0.5);
        low.push(o.min(c) - 0.25);
        volume.push((state % 5000) as f64);
        price = c;
    }
    Bars::new(ts, open, high, low, close, volume, vec![]).unwrap()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    for (label, bars) in [
        ("OHLCV", sample()),
        ("OHLCV + extra with gaps, ms timestamps", {
            let b = sample();
            let ts: Vec<i64> = b.timestamps().iter().map(|t| t + 123_000_000).collect();
            let oi: Vec<Option<f64>> = (0..ROWS).map(|i| (i % 3 != 0).then_some(i as f64 * 0.5)).collect();
            Bars::new(
                ts,
                b.open().to_vec(),
                b.high().to_vec(),
                b.low().to_vec(),
                b.close().to_vec(),
                b.volume().to_vec(),
                vec![ExtraColumn::new("open_interest", oi).unwrap()],
            )
            .unwrap()
        }),
    ] {
        let bytes = encode_to_vec(&bars);
        let enc = best_of(5, || encode_to_vec(&bars));
        let dec = best_of(5, || CsvCodec.decode_bytes(&bytes, None).unwrap());
        let back = CsvCodec.decode_bytes(&bytes, None).unwrap();
        assert_eq!(back.len(), ROWS);
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{label}: {ROWS} rows, {mb:.1} MB: encode {:.0} ms ({:.0} MB/s), decode {:.0} ms ({:.0} MB/s)",
            enc.as_secs_f64() * 1e3,
            mb / enc.as_secs_f64(),
            dec.as_secs_f64() * 1e3,
            mb / dec.as_secs_f64(),
        );
    }
}

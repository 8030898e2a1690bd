//! Realistic one-minute bars for the benches of every barvault crate.
//!
//! The other crates include this file with `#[path = "../../barvault-domain/benches/common/mod.rs"]`,
//! so every bench measures the same data. Prices are a deterministic random walk on a
//! one-cent grid (two decimals, as exchanges quote them) and volumes are whole numbers:
//! that is what CSV and Parquet files of real minute bars hold, and what the number
//! formatting and dictionary encoding are tuned for. `sample_bars` of the conformance suite
//! uses full-precision floats instead, which is right for round-trip tests but not for
//! throughput figures.
#![allow(dead_code)] // each bench uses a different subset

use std::time::Duration;

use barvault_domain::Bars;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

/// 2024-01-02T00:00:00Z in nanoseconds.
pub const START_NS: i64 = 1_704_153_600_000_000_000;
/// One minute in nanoseconds.
pub const MINUTE_NS: i64 = 60_000_000_000;
/// One day of one-minute bars.
pub const BARS_PER_DAY: usize = 1_440;
/// The row counts every size-dependent bench runs at.
pub const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// xorshift64*: deterministic and fast enough that generating 1M bars costs milliseconds.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` valid one-minute bars starting at `start_ns`; equal arguments give equal bars and
/// different seeds give different prices.
pub fn minute_bars(n: usize, start_ns: i64, seed: u64) -> Bars {
    bars_every(n, start_ns, MINUTE_NS, seed)
}

/// Like [`minute_bars`], `step_ns` apart (`86_400_000_000_000` for daily bars).
pub fn bars_every(n: usize, start_ns: i64, step_ns: i64, seed: u64) -> Bars {
    let mut rng = Rng::new(seed);
    // Prices in cents: a walk around $100-$200 that never drops below $1.
    let mut price = 10_000 + rng.below(10_000) as i64;
    let cents = |c: i64| c as f64 / 100.0;
    let mut ts = Vec::with_capacity(n);
    let (mut open, mut high, mut low, mut close, mut volume) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let o = price;
        let c = (o + rng.below(51) as i64 - 25).max(100);
        let h = o.max(c) + rng.below(16) as i64;
        let l = (o.min(c) - rng.below(16) as i64).max(1);
        ts.push(start_ns + i as i64 * step_ns);
        open.push(cents(o));
        high.push(cents(h));
        low.push(cents(l));
        close.push(cents(c));
        volume.push((100 + rng.below(50_000)) as f64);
        price = c;
    }
    Bars::new(ts, open, high, low, close, volume, vec![]).expect("timestamps are strictly increasing")
}

/// A human label for a row count: `10k`, `100k`, `1M`.
pub fn label(rows: usize) -> String {
    match rows {
        r if r >= 1_000_000 && r % 1_000_000 == 0 => format!("{}M", r / 1_000_000),
        r if r >= 1_000 && r % 1_000 == 0 => format!("{}k", r / 1_000),
        r => r.to_string(),
    }
}

/// Keeps a full `cargo bench` short on a shared 2-core machine: 10 samples (criterion's
/// minimum), 1 s of warm-up, and 3 s of measurement (5 s from 1M rows up).
pub fn tune(group: &mut BenchmarkGroup<'_, WallTime>, rows: usize) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(if rows >= 1_000_000 { 5 } else { 3 }));
}

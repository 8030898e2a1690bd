//! The behavioural contract of the ports, as plain async functions every adapter's tests call.
//!
//! A trait signature says what can be called, not what must happen: that a merge keeps
//! every row, that an unchanged write touches nothing, that `1m` and `1M` never share a
//! file, that `-0.0` comes back as `-0.0`. Writing those promises down once, as
//! executable cases, keeps the memory, CSV, Parquet and dual stores from each growing
//! their own idea of them. Cases panic with a message naming the broken promise, so they
//! read like assertions inside any `#[tokio::test]`, and need no harness.
//!
//! Every case uses its own symbols (all starting with `CF`), so the cases can share one
//! store and run in any order; the store must start without any of those series.
//!
//! The `core` cases hold for every store; the `capability` cases read
//! [`Capabilities`](crate::Capabilities) and check both directions: what a store declares
//! works exactly, what it does not declare is refused with
//! [`StorageError::Unsupported`](crate::StorageError::Unsupported) — never silently skipped.

use barvault_domain::{
    Bars, CORE_COLUMNS, ExtraColumn, Instrument, InstrumentKind, Period, SeriesKey, nanos_to_datetime,
};

use crate::context::OpContext;
use crate::metadata::{DateRange, FileMetadata};

mod capability;
mod core;
mod locks;
mod metadata;

pub use self::capability::*;
pub use self::core::*;
pub use self::locks::*;
pub use self::metadata::*;

/// One bar: timestamp, open, high, low, close, volume.
pub type Row = (i64, f64, f64, f64, f64, f64);

/// 2024-01-02T00:00:00Z in nanoseconds, the default start of fixtures.
pub const BASE_NS: i64 = 1_704_153_600_000_000_000;
/// One day in nanoseconds.
pub const DAY_NS: i64 = 86_400_000_000_000;

/// Floats that text and binary formats commonly fail to round-trip bit-exactly. The last is
/// `123456789.123456789` as the nearest f64 (written shorter so clippy accepts it).
pub const EXTREME_FLOATS: [f64; 8] =
    [1e-12, 1e300, -37.63, 0.1 + 0.2, 0.000_008_71, 5e-324, -0.0, 123_456_789.123_456_79];

/// SplitMix64: tiny, deterministic and good enough to make every float distinct.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with all 53 mantissa bits used.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` valid bars (high ≥ max(open, close), low ≤ min(open, close), volume ≥ 0) at
/// `start_ns + i * step_ns`. Equal arguments give equal bars; different seeds give
/// different values at every row. Prices use full-precision floats so lossy formats show.
///
/// # Panics
/// If `step_ns < 1` or a timestamp overflows `i64` (a misuse of the fixture).
pub fn sample_bars(n: usize, start_ns: i64, step_ns: i64, seed: u64) -> Bars {
    assert!(step_ns >= 1, "sample_bars: step_ns must be positive, got {step_ns}");
    let mut rng = SplitMix(seed ^ 0x5EED_F0BA_2500);
    let mut price = 50.0 + 100.0 * rng.unit();
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let ts = i64::try_from(i)
                .ok()
                .and_then(|i| i.checked_mul(step_ns))
                .and_then(|off| start_ns.checked_add(off))
                .expect("sample_bars: timestamp overflows i64");
            let open = price;
            let close = (open * (0.97 + 0.06 * rng.unit())).max(0.01);
            let high = open.max(close) * (1.0 + 0.02 * rng.unit());
            let low = open.min(close) * (1.0 - 0.02 * rng.unit());
            let volume = (1_000_000.0 * rng.unit()).floor() + rng.unit();
            price = close;
            (ts, open, high, low, close, volume)
        })
        .collect();
    bars_from_rows(&rows)
}

/// Bars from rows given in strictly increasing timestamp order.
///
/// # Panics
/// If the timestamps are not strictly increasing.
pub fn bars_from_rows(rows: &[Row]) -> Bars {
    Bars::new(
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
        rows.iter().map(|r| r.3).collect(),
        rows.iter().map(|r| r.4).collect(),
        rows.iter().map(|r| r.5).collect(),
        vec![],
    )
    .expect("bars_from_rows: timestamps must be strictly increasing")
}

/// The core rows of `bars` (extras left out).
pub fn rows_of(bars: &Bars) -> Vec<Row> {
    (0..bars.len())
        .map(|i| {
            (bars.timestamps()[i], bars.open()[i], bars.high()[i], bars.low()[i], bars.close()[i], bars.volume()[i])
        })
        .collect()
}

/// `bars` with one more extra column.
///
/// # Panics
/// If the name is invalid or taken, or `values` has the wrong length.
pub fn with_extra(bars: &Bars, name: &str, values: Vec<Option<f64>>) -> Bars {
    let mut extras = bars.extras().to_vec();
    extras.push(ExtraColumn::new(name, values).expect("with_extra: invalid column name"));
    Bars::new(
        bars.timestamps().to_vec(),
        bars.open().to_vec(),
        bars.high().to_vec(),
        bars.low().to_vec(),
        bars.close().to_vec(),
        bars.volume().to_vec(),
        extras,
    )
    .expect("with_extra: column length or name clash")
}

/// A series key from parts.
///
/// # Panics
/// If the symbol is invalid for `kind`.
pub fn series(kind: InstrumentKind, symbol: &str, period: Period) -> SeriesKey {
    SeriesKey::new(Instrument::new(kind, symbol).expect("series: invalid symbol"), period)
}

/// A daily stock series.
pub fn stock(symbol: &str) -> SeriesKey {
    series(InstrumentKind::Stock, symbol, Period::D1)
}

/// Bars whose every column (and an `adj_close` extra) cycles through [`EXTREME_FLOATS`].
pub fn extreme_bars(start_ns: i64) -> Bars {
    let n = EXTREME_FLOATS.len();
    let col = |shift: usize| (0..n).map(|i| EXTREME_FLOATS[(i + shift) % n]).collect::<Vec<f64>>();
    let bars = Bars::new(
        (0..n as i64).map(|i| start_ns + i * DAY_NS).collect(),
        col(0),
        col(1),
        col(2),
        col(3),
        col(4),
        vec![],
    )
    .expect("extreme_bars: fixed timestamps are increasing");
    with_extra(&bars, "adj_close", col(5).into_iter().map(Some).collect())
}

/// A metadata record for `series` in `format`; `generation` varies every derived field.
pub fn sample_metadata(series: &SeriesKey, format: &str, generation: u64) -> FileMetadata {
    let g = i64::try_from(generation % 1_000_000).unwrap_or(0);
    FileMetadata {
        file_path: format!("{}.{format}", series.relative_stem()),
        instrument_symbol: series.instrument.symbol().clone(),
        instrument_type: series.instrument.kind(),
        period: series.period,
        format: format.to_string(),
        row_count: 100 + generation,
        columns: CORE_COLUMNS.iter().map(|c| c.to_string()).chain(["adj_close".to_string()]).collect(),
        date_range: DateRange {
            start: Some(nanos_to_datetime(BASE_NS + g)),
            end: Some(nanos_to_datetime(1_700_000_000_123_456_789 + g)),
        },
        file_size: 4096 + generation,
        last_updated: nanos_to_datetime(1_700_000_000_123_456_789 + g * 1_000_000_007),
        checksum: format!("{:032x}", u128::from(generation).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834)),
        generation,
        backup_checksum: None,
        fingerprint: None,
        appended: None,
    }
}

pub(crate) fn ctx() -> OpContext {
    OpContext::with_correlation_id(Some("conformance"))
}

/// Every [`BarStore`](crate::BarStore) case, core then capability cases.
pub async fn run_all(store: &dyn crate::BarStore) {
    run_core(store).await;
    run_capabilities(store).await;
}

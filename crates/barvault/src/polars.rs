//! Bars ↔ polars `DataFrame` (feature `polars`).
//!
//! A frame has a `timestamp` column of type `Datetime(ns, "UTC")`, the core columns `open`,
//! `high`, `low`, `close`, `volume` as `Float64` without nulls, and one nullable `Float64`
//! column per extra column, in the order [`Bars::column_names`] gives. Values are copied bit
//! for bit (`-0.0`, NaN and subnormals survive), a missing extra value is a null.

use barvault_domain::{Bars, CORE_COLUMNS, DomainError, ExtraColumn, MergePolicy, RawBars, SeriesKey, TimeRange};
use barvault_ports::{OpContext, StorageError};

use crate::dual::DualStorageManager;
use polars::prelude::{
    Column, DataFrame, DataType, Float64Chunked, Int64Chunked, IntoColumn, IntoSeries, NewChunkedArray, PolarsError,
    TimeUnit, TimeZone,
};
use thiserror::Error;

/// Why a `DataFrame` cannot be turned into [`Bars`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataFrameError {
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("column {0:?} is missing")]
    MissingColumn(String),
    #[error("column {column:?} has type {dtype}, expected {expected}")]
    WrongType { column: String, dtype: String, expected: &'static str },
    #[error("column {column:?} row {row}: missing value (only extra columns may have nulls)")]
    Null { column: String, row: usize },
    #[error(transparent)]
    Domain(#[from] DomainError),
}

const TIMESTAMP: &str = CORE_COLUMNS[0];

/// The bars as a frame: `timestamp` as `Datetime(ns, UTC)`, every other column `Float64`.
pub fn bars_to_dataframe(bars: &Bars) -> Result<DataFrame, PolarsError> {
    let mut columns: Vec<Column> = Vec::with_capacity(6 + bars.extras().len());
    let ts = Int64Chunked::from_vec(TIMESTAMP.into(), bars.timestamps().to_vec())
        .into_datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC));
    columns.push(ts.into_series().into_column());
    let core = [bars.open(), bars.high(), bars.low(), bars.close(), bars.volume()];
    for (name, values) in CORE_COLUMNS[1..].iter().zip(core) {
        columns.push(Float64Chunked::from_vec((*name).into(), values.to_vec()).into_series().into_column());
    }
    for extra in bars.extras() {
        let values = Float64Chunked::from_iter_options(extra.name().into(), extra.values().iter().copied());
        columns.push(values.into_series().into_column());
    }
    DataFrame::new(bars.len(), columns)
}

/// The nanosecond timestamps of `col`: a `Datetime` of any unit and zone (converted to
/// nanoseconds, overflow refused) or an `Int64` of nanoseconds.
fn timestamps(col: &Column) -> Result<Vec<i64>, DataFrameError> {
    let ns = match col.dtype() {
        DataType::Datetime(_, tz) => {
            let cast = col.cast(&DataType::Datetime(TimeUnit::Nanoseconds, tz.clone()))?;
            cast.datetime()?.physical().clone()
        }
        DataType::Int64 => col.i64()?.clone(),
        other => {
            return Err(DataFrameError::WrongType {
                column: TIMESTAMP.into(),
                dtype: other.to_string(),
                expected: "Datetime or Int64 nanoseconds",
            });
        }
    };
    // A unit conversion that overflows yields a null, reported like any missing value.
    ns.iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| DataFrameError::Null { column: TIMESTAMP.into(), row }))
        .collect()
}

/// The values of a numeric column as `f64` (nulls as `None`).
fn floats(col: &Column) -> Result<Vec<Option<f64>>, DataFrameError> {
    if !col.dtype().is_primitive_numeric() {
        return Err(DataFrameError::WrongType {
            column: col.name().to_string(),
            dtype: col.dtype().to_string(),
            expected: "a numeric type",
        });
    }
    let cast = col.cast(&DataType::Float64)?;
    Ok(cast.f64()?.iter().collect())
}

fn required(col: &Column) -> Result<Vec<f64>, DataFrameError> {
    floats(col)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| DataFrameError::Null { column: col.name().to_string(), row }))
        .collect()
}

/// The frame as bars. Rows may come in any order; a timestamp repeated with different
/// values is refused (identical repeats fold). Every column besides the core ones becomes
/// an extra column and must be numeric, with a valid extra-column name.
pub fn dataframe_to_bars(df: &DataFrame) -> Result<Bars, DataFrameError> {
    let column = |name: &str| df.column(name).map_err(|_| DataFrameError::MissingColumn(name.to_string()));
    let mut raw = RawBars {
        ts: timestamps(column(TIMESTAMP)?)?,
        open: required(column("open")?)?,
        high: required(column("high")?)?,
        low: required(column("low")?)?,
        close: required(column("close")?)?,
        volume: required(column("volume")?)?,
        extras: Vec::new(),
    };
    for col in df.columns() {
        if CORE_COLUMNS.contains(&col.name().as_str()) {
            continue;
        }
        raw.extras.push(ExtraColumn::new(col.name().as_str(), floats(col)?)?);
    }
    Ok(raw.into_bars(MergePolicy::ErrorOnConflict)?.0)
}

/// Loads `series` (within `range`) through `manager` (with its fallback to the other copy)
/// as a frame; `None` if nothing is stored.
pub async fn load_dataframe(
    manager: &DualStorageManager,
    series: &SeriesKey,
    range: Option<TimeRange>,
    ctx: &OpContext,
) -> Result<Option<DataFrame>, StorageError> {
    let Some(bars) = manager.load_with_fallback(series, range, ctx).await? else {
        return Ok(None);
    };
    bars_to_dataframe(&bars)
        .map(Some)
        .map_err(|e| StorageError::invalid(format!("{series}: cannot build a DataFrame of {} rows: {e}", bars.len())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use barvault_domain::{Instrument, Period};
    use barvault_ports::memory::{InMemoryBarStore, InMemoryLocks, InMemoryMetadataStore};

    use crate::dual::DualSettings;
    use crate::receipt::PersistOptions;

    use super::*;

    const FLOATS: [f64; 8] = [1e-12, 1e300, -37.63, 0.1 + 0.2, 0.000_008_71, 5e-324, -0.0, 123_456_789.123_456_79];

    fn sample() -> Bars {
        let n = FLOATS.len();
        let col = |shift: usize| (0..n).map(|i| FLOATS[(i + shift) % n]).collect::<Vec<f64>>();
        let adj: Vec<Option<f64>> = (0..n).map(|i| (i % 3 != 1).then_some(FLOATS[(i + 5) % n])).collect();
        let oi: Vec<Option<f64>> = (0..n).map(|i| (i % 2 == 0).then_some(i as f64 * 1000.0)).collect();
        Bars::new(
            // Before 1970, at the epoch, and with nanosecond precision.
            vec![
                -86_400_000_000_001,
                -1,
                0,
                1,
                1_704_153_600_000_000_007,
                1_704_153_600_123_456_789,
                i64::MAX - 1,
                i64::MAX,
            ],
            col(0),
            col(1),
            col(2),
            col(3),
            col(4),
            vec![ExtraColumn::new("adj_close", adj).unwrap(), ExtraColumn::new("open_interest", oi).unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_extras_missing_values_and_exact_floats() {
        let bars = sample();
        let df = bars_to_dataframe(&bars).unwrap();
        assert_eq!(df.height(), bars.len());
        let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, bars.column_names());
        assert_eq!(
            df.column("timestamp").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC))
        );
        assert_eq!(df.column("adj_close").unwrap().null_count(), 3);
        assert_eq!(df.column("open").unwrap().null_count(), 0);
        let back = dataframe_to_bars(&df).unwrap();
        // Bars equality is bit-exact: -0.0, 5e-324 and 0.1 + 0.2 all come back unchanged.
        assert_eq!(back, bars);
        assert_eq!(back.open()[6].to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn nan_is_a_value_not_a_null() {
        let bars =
            Bars::new(vec![1, 2], vec![f64::NAN, 1.0], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![0.0; 2], vec![])
                .unwrap();
        let df = bars_to_dataframe(&bars).unwrap();
        assert_eq!(df.column("open").unwrap().null_count(), 0);
        assert_eq!(dataframe_to_bars(&df).unwrap(), bars);
    }

    #[test]
    fn empty_bars_make_an_empty_frame_with_every_core_column() {
        let df = bars_to_dataframe(&Bars::empty()).unwrap();
        assert_eq!(df.height(), 0);
        assert_eq!(df.width(), CORE_COLUMNS.len());
        assert_eq!(dataframe_to_bars(&df).unwrap(), Bars::empty());
    }

    fn frame(ts: Column, open: Vec<Option<f64>>) -> DataFrame {
        let n = open.len();
        let f = |name: &str, v: Vec<f64>| Float64Chunked::from_vec(name.into(), v).into_series().into_column();
        DataFrame::new(
            n,
            vec![
                ts,
                Float64Chunked::from_iter_options("open".into(), open.into_iter()).into_series().into_column(),
                f("high", vec![2.0; n]),
                f("low", vec![0.5; n]),
                f("close", vec![1.5; n]),
                f("volume", vec![10.0; n]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn other_units_integers_and_row_order_are_accepted() {
        let ms = Int64Chunked::from_vec("timestamp".into(), vec![3_000, 1_000, 2_000])
            .into_datetime(TimeUnit::Milliseconds, None)
            .into_series()
            .into_column();
        let bars = dataframe_to_bars(&frame(ms, vec![Some(3.0), Some(1.0), Some(2.0)])).unwrap();
        assert_eq!(bars.timestamps(), &[1_000_000_000, 2_000_000_000, 3_000_000_000]);
        assert_eq!(bars.open(), &[1.0, 2.0, 3.0]);
        let ints = Int64Chunked::from_vec("timestamp".into(), vec![5, 6]).into_series().into_column();
        assert_eq!(dataframe_to_bars(&frame(ints, vec![Some(1.0), Some(1.0)])).unwrap().timestamps(), &[5, 6]);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let ts = || Int64Chunked::from_vec("timestamp".into(), vec![1, 2]).into_series().into_column();
        let err = dataframe_to_bars(&frame(ts(), vec![Some(1.0), None])).unwrap_err();
        assert!(matches!(&err, DataFrameError::Null { column, row: 1 } if column == "open"), "{err}");

        let dup = Int64Chunked::from_vec("timestamp".into(), vec![1, 1]).into_series().into_column();
        let err = dataframe_to_bars(&frame(dup, vec![Some(1.0), Some(2.0)])).unwrap_err();
        assert!(matches!(err, DataFrameError::Domain(DomainError::Conflict { .. })), "{err}");

        let mut df = frame(ts(), vec![Some(1.0), Some(1.0)]);
        df.drop_in_place("volume").unwrap();
        assert!(matches!(dataframe_to_bars(&df), Err(DataFrameError::MissingColumn(c)) if c == "volume"));

        let floats_ts = Float64Chunked::from_vec("timestamp".into(), vec![1.0, 2.0]).into_series().into_column();
        let err = dataframe_to_bars(&frame(floats_ts, vec![Some(1.0), Some(1.0)])).unwrap_err();
        assert!(matches!(err, DataFrameError::WrongType { .. }), "{err}");

        let overflow = Int64Chunked::from_vec("timestamp".into(), vec![i64::MAX / 100])
            .into_datetime(TimeUnit::Microseconds, None)
            .into_series()
            .into_column();
        let err = dataframe_to_bars(&frame(overflow, vec![Some(1.0)])).unwrap_err();
        assert!(matches!(err, DataFrameError::Null { row: 0, .. }), "{err}");
    }

    #[tokio::test]
    async fn loads_a_stored_series_as_a_frame() {
        let manager = DualStorageManager::new(
            Arc::new(InMemoryBarStore::new()),
            None,
            Arc::new(InMemoryMetadataStore::new()),
            Arc::new(InMemoryLocks::new()),
            DualSettings { validation: barvault_domain::ValidationPolicy::Off, ..DualSettings::default() },
        );
        let series = SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1);
        let ctx = OpContext::new();
        assert!(load_dataframe(&manager, &series, None, &ctx).await.unwrap().is_none());
        let bars = sample();
        manager.persist(&bars, &series, PersistOptions::default(), &ctx).await.unwrap();
        let df = load_dataframe(&manager, &series, None, &ctx).await.unwrap().unwrap();
        assert_eq!(dataframe_to_bars(&df).unwrap(), bars);
        let range = TimeRange::new(Some(0), Some(1)).unwrap();
        let df = load_dataframe(&manager, &series, Some(range), &ctx).await.unwrap().unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(dataframe_to_bars(&df).unwrap(), bars.slice(&range));
    }
}

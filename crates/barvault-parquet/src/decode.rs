use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use barvault_domain::{ExtraColumn, RawBars, TimeRange};
use barvault_ports::CodecError;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::statistics::Statistics;

use crate::error::{from_arrow_on_read, from_parquet_on_read};

/// Rows per decoded Arrow batch: large enough that per-batch overhead vanishes, small
/// enough that a pruned read of one row group does not over-allocate. A read of fewer rows
/// gets one batch of exactly its size: the column readers reserve a whole batch per column
/// up front (512 KiB at 65,536 rows), and the single batch's columns are then taken over
/// as the bar columns instead of being copied (`take_values`). Together: decode of a
/// 5,000-row daily file ~−8% with a warmed-up allocator, ~−28% where freed memory goes
/// back to the kernel between decodes (glibc's defaults in a fresh process).
const BATCH_ROWS: usize = 65_536;

/// Cap on the values (8 bytes each, over all columns read) reserved up front from the
/// footer's (untrusted) row counts: 64 MiB, 1.2 million rows of bars with one extra column.
/// Longer reads grow their columns as the rows arrive, so a footer claiming 10^9 rows costs
/// no more than this before it is refused.
const MAX_RESERVE_VALUES: usize = 1 << 23;

/// Rows from which a read held in memory decodes half its columns on a second thread: one
/// row group of the default size. Below it the thread costs more than it saves.
const TWO_THREADS_FROM_ROWS: usize = crate::ParquetCodec::DEFAULT_ROW_GROUP_ROWS;

/// An input a second decoder can read independently of the first. Bytes clone cheaply and
/// share nothing mutable; a `File`'s clones share one offset, so two decoders on one file
/// would read each other's positions: files are decoded on one thread.
pub(crate) trait Fork: ChunkReader + Send + Sized + 'static {
    fn fork(&self) -> Option<Self>;
}

impl Fork for Bytes {
    fn fork(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl Fork for std::fs::File {
    fn fork(&self) -> Option<Self> {
        None
    }
}

/// What one decode did, for logs and for checking that row-group pruning works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeStats {
    /// Row groups in the file.
    pub row_groups_total: usize,
    /// Row groups whose timestamp statistics overlapped the range (all of them without a range).
    pub row_groups_read: usize,
    /// Rows decoded from those row groups (in a read of proven blocks with a range, only
    /// the rows the timestamps put in the range are decoded).
    pub rows_read: usize,
    /// Rows returned after trimming to the range.
    pub rows_returned: usize,
}

/// Which rows a decode reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Select {
    /// The row groups whose timestamp statistics overlap the range (all without one),
    /// trimmed to it.
    Range(Option<TimeRange>),
    /// Every row from the first row group that may hold a timestamp at or after this one.
    From(i64),
}

/// The leading row groups a [`Select::From`] read left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Skipped {
    pub(crate) rows: usize,
    /// The smallest and the largest timestamp the skipped groups' statistics promise.
    pub(crate) bounds: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    /// An i64 count of `factor` nanoseconds (timestamps of any unit, Date64 in ms).
    I64 { factor: i64 },
    /// Days since the epoch as i32 (Date32).
    Days,
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

impl TimeKind {
    fn of(dt: &DataType) -> Option<Self> {
        match dt {
            DataType::Timestamp(unit, _) => Some(TimeKind::I64 {
                factor: match unit {
                    TimeUnit::Second => 1_000_000_000,
                    TimeUnit::Millisecond => 1_000_000,
                    TimeUnit::Microsecond => 1_000,
                    TimeUnit::Nanosecond => 1,
                },
            }),
            DataType::Date64 => Some(TimeKind::I64 { factor: 1_000_000 }),
            DataType::Date32 => Some(TimeKind::Days),
            _ => None,
        }
    }

    fn factor(self) -> i64 {
        match self {
            TimeKind::I64 { factor } => factor,
            TimeKind::Days => NANOS_PER_DAY,
        }
    }
}

fn is_numeric(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float64
            | DataType::Float32
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// A column of the file we read: its top-level index and its name as written.
#[derive(Debug, Clone)]
struct Source {
    root: usize,
    name: String,
}

/// Which file column feeds which bar column.
#[derive(Debug)]
struct Plan {
    ts: Source,
    ts_kind: TimeKind,
    /// open, high, low, close, volume.
    core: [Source; 5],
    /// Numeric extras with their normalized names.
    extras: Vec<(Source, String)>,
}

const CORE_ROLES: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// The role a normalized column name plays and its priority (0 = canonical name, then aliases).
fn role_of(normalized: &str) -> Option<(usize, u8)> {
    Some(match normalized {
        "timestamp" => (0, 0),
        "datetime" => (0, 1),
        "date" => (0, 2),
        "time" => (0, 3),
        "open" => (1, 0),
        "high" => (2, 0),
        "low" => (3, 0),
        "close" => (4, 0),
        "last" => (4, 1),
        "volume" => (5, 0),
        "vol" => (5, 1),
        _ => return None,
    })
}

const ALIASES: [&str; 6] = ["datetime, date, time", "", "", "", "last", "vol"];

/// pandas writes a non-trivial index as `__index_level_N__`; it is not a bar column.
fn is_pandas_index(name: &str) -> bool {
    name.strip_prefix("__index_level_")
        .and_then(|r| r.strip_suffix("__"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn schema_error(column: &str, reason: String) -> CodecError {
    CodecError::parse(None, Some(column), None, reason)
}

impl Plan {
    fn from_schema(schema: &Schema) -> Result<Self, CodecError> {
        let fields = schema.fields();
        let normalized: Vec<String> = fields.iter().map(|f| ExtraColumn::normalize_name(f.name())).collect();

        // The best candidate of every role; a tie at the best priority is ambiguous.
        let mut chosen: [Option<(usize, u8)>; 6] = [None; 6];
        for (i, norm) in normalized.iter().enumerate() {
            let Some((role, prio)) = role_of(norm) else { continue };
            match chosen[role] {
                Some((j, p)) if p == prio => {
                    return Err(schema_error(
                        fields[i].name(),
                        format!(
                            "columns {:?} and {:?} both read as {}; rename one",
                            fields[j].name(),
                            fields[i].name(),
                            CORE_ROLES[role]
                        ),
                    ));
                }
                Some((_, p)) if p < prio => {}
                _ => chosen[role] = Some((i, prio)),
            }
        }
        if chosen[0].is_none() {
            // A DatetimeIndex without a name, written by pandas.
            chosen[0] = fields
                .iter()
                .position(|f| is_pandas_index(f.name()) && TimeKind::of(f.data_type()).is_some())
                .map(|i| (i, u8::MAX));
        }

        let found = || fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let mut roles = [0usize; 6];
        for (role, pick) in chosen.iter().enumerate() {
            let Some((i, _)) = *pick else {
                let also = if ALIASES[role].is_empty() { String::new() } else { format!(" (or {})", ALIASES[role]) };
                return Err(schema_error(
                    CORE_ROLES[role],
                    format!("required column {}{also} is missing; the file has: {}", CORE_ROLES[role], found()),
                ));
            };
            let field = &fields[i];
            let ok = if role == 0 { TimeKind::of(field.data_type()).is_some() } else { is_numeric(field.data_type()) };
            if !ok {
                let expected = if role == 0 {
                    "a timestamp (s, ms, us or ns; UTC or naive) or a date"
                } else {
                    "a number (float or integer)"
                };
                return Err(schema_error(
                    field.name(),
                    format!("used as {} but has type {}; expected {expected}", CORE_ROLES[role], field.data_type()),
                ));
            }
            roles[role] = i;
        }

        let mut extras: Vec<(Source, String)> = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (i, field) in fields.iter().enumerate() {
            // Non-numeric columns (strings, booleans, nested, decimals) are skipped: user
            // exports often carry a symbol or exchange column that is not part of the bars.
            if roles.contains(&i) || is_pandas_index(field.name()) || !is_numeric(field.data_type()) {
                continue;
            }
            let name = normalized[i].clone();
            ExtraColumn::check_name(&name).map_err(|e| {
                schema_error(field.name(), format!("numeric column cannot be kept as an extra column: {e}"))
            })?;
            if let Some(first) = seen.insert(name.clone(), field.name().clone()) {
                return Err(schema_error(
                    field.name(),
                    format!("columns {first:?} and {:?} both normalize to {name:?}; rename one", field.name()),
                ));
            }
            extras.push((Source { root: i, name: field.name().clone() }, name));
        }

        let src = |role: usize| Source { root: roles[role], name: fields[roles[role]].name().clone() };
        Ok(Plan {
            ts: src(0),
            ts_kind: TimeKind::of(fields[roles[0]].data_type())
                .ok_or_else(|| schema_error("timestamp", "no type".into()))?,
            core: [src(1), src(2), src(3), src(4), src(5)],
            extras,
        })
    }

    /// Top-level columns to read, ascending: the order of a projected batch's columns.
    fn roots(&self) -> Vec<usize> {
        let mut r: Vec<usize> = std::iter::once(self.ts.root)
            .chain(self.core.iter().map(|s| s.root))
            .chain(self.extras.iter().map(|(s, _)| s.root))
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// The `[min, max]` timestamps (ns) a row group's statistics promise, if it has usable ones.
fn group_bounds(meta: &ParquetMetaData, group: usize, leaf: usize, kind: TimeKind) -> Option<(i64, i64)> {
    let stats = meta.row_groups().get(group)?.columns().get(leaf)?.statistics()?;
    let (min, max) = match stats {
        Statistics::Int64(s) => (*s.min_opt()?, *s.max_opt()?),
        Statistics::Int32(s) => (i64::from(*s.min_opt()?), i64::from(*s.max_opt()?)),
        _ => return None,
    };
    // Saturation keeps the order, which is all an overlap test needs.
    Some((min.saturating_mul(kind.factor()), max.saturating_mul(kind.factor())))
}

/// Refuses footers whose chunk offsets point outside the file: the parquet reader trusts
/// them (and asserts on negative ones), so a damaged footer must be caught here.
pub(crate) fn check_layout(meta: &ParquetMetaData, file_len: u64) -> Result<(), CodecError> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(CodecError::Corrupt(format!("row group {} claims {} rows", g + 1, group.num_rows())));
        }
        for chunk in group.columns() {
            let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
            let len = chunk.compressed_size();
            let end = u64::try_from(start).ok().zip(u64::try_from(len).ok()).and_then(|(s, l)| s.checked_add(l));
            if end.is_none_or(|end| end > file_len) {
                return Err(CodecError::Corrupt(format!(
                    "row group {} column {}: chunk at offset {start} with {len} bytes lies outside the {file_len}-byte file",
                    g + 1,
                    chunk.column_path()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses footers whose claims the reader would believe although no valid writer makes
/// them: a row count that a flat column chunk of the group contradicts (the reader then
/// decodes what the pages hold, so the lie would pass), and column chunks whose byte
/// ranges overlap (row groups sharing bytes would decode the same rows again and again,
/// multiplying a small file into any number of rows).
pub(crate) fn check_claims(meta: &ParquetMetaData) -> Result<(), CodecError> {
    let mut ranges = Vec::new();
    for (g, group) in meta.row_groups().iter().enumerate() {
        for chunk in group.columns() {
            if chunk.column_descr().max_rep_level() == 0 && chunk.num_values() != group.num_rows() {
                return Err(CodecError::Corrupt(format!(
                    "row group {} claims {} rows but its column {} holds {} values",
                    g + 1,
                    group.num_rows(),
                    chunk.column_path(),
                    chunk.num_values()
                )));
            }
            // Offsets and lengths were checked against the file by `check_layout`.
            let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset()).unsigned_abs();
            let len = chunk.compressed_size().unsigned_abs();
            if len > 0 {
                ranges.push((start, start + len, g, chunk.column_path().to_string()));
            }
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((_, end, g0, c0), (start, _, g1, c1)) = (&pair[0], &pair[1]);
        if start < end {
            return Err(CodecError::Corrupt(format!(
                "row group {} column {c1}: chunk at offset {start} overlaps the chunk of row group {} column {c0}",
                g1 + 1,
                g0 + 1
            )));
        }
    }
    Ok(())
}

/// Refuses a read whose pages held a different number of rows than the footer declared
/// for the row groups read (a lie `check_claims` cannot see, such as a column's value
/// count changed together with the row count).
fn check_rows_read(declared: usize, read: usize) -> Result<(), CodecError> {
    if declared != read {
        return Err(CodecError::Corrupt(format!(
            "the footer declares {declared} rows in the row groups read but their pages hold {read}"
        )));
    }
    Ok(())
}

/// Maps a row of the decoded stream back to its row group, for error messages.
struct GroupIndex {
    /// (first row in the stream, row group index), ascending.
    starts: Vec<(usize, usize)>,
    total: usize,
    /// Rows of the groups read.
    rows: usize,
}

impl GroupIndex {
    /// The index of a read of `groups` (of `total` in the file).
    fn of(meta: &ParquetMetaData, groups: &[usize], total: usize) -> Self {
        let mut starts = Vec::with_capacity(groups.len());
        let mut rows = 0usize;
        for &g in groups {
            starts.push((rows, g));
            rows = rows.saturating_add(usize::try_from(meta.row_group(g).num_rows()).unwrap_or(0));
        }
        GroupIndex { starts, total, rows }
    }

    fn locate(&self, row: usize) -> (usize, usize) {
        let k = self.starts.partition_point(|&(s, _)| s <= row).saturating_sub(1);
        self.starts.get(k).map_or((0, row), |&(s, g)| (g, row - s))
    }

    fn null_error(&self, column: &str, stream_row: usize) -> CodecError {
        let (group, row) = self.locate(stream_row);
        CodecError::Parse {
            line: Some(group as u64 + 1),
            column: Some(column.to_string()),
            value: None,
            reason: format!(
                "null value in row group {} of {} (row {} within it); this column must not be null",
                group + 1,
                self.total,
                row + 1
            ),
        }
    }
}

fn extend_required<T: ArrowPrimitiveType>(
    arr: &dyn Array,
    out: &mut Vec<f64>,
    f: impl Fn(T::Native) -> f64,
) -> Option<()> {
    out.extend(arr.as_primitive_opt::<T>()?.values().iter().map(|&v| f(v)));
    Some(())
}

fn extend_optional<T: ArrowPrimitiveType>(
    arr: &dyn Array,
    out: &mut Vec<Option<f64>>,
    f: impl Fn(T::Native) -> f64,
) -> Option<()> {
    let a = arr.as_primitive_opt::<T>()?;
    match a.nulls() {
        None => out.extend(a.values().iter().map(|&v| Some(f(v)))),
        Some(nulls) => out.extend(a.values().iter().zip(nulls.iter()).map(|(&v, valid)| valid.then(|| f(v)))),
    }
    Some(())
}

/// Converts any supported numeric array to f64 (integers above 2^53 round to the nearest f64).
macro_rules! numeric_dispatch {
    ($arr:expr, $out:expr, $extend:ident) => {
        match $arr.data_type() {
            DataType::Float64 => $extend::<Float64Type>($arr, $out, |v| v),
            DataType::Float32 => $extend::<Float32Type>($arr, $out, f64::from),
            DataType::Int8 => $extend::<Int8Type>($arr, $out, f64::from),
            DataType::Int16 => $extend::<Int16Type>($arr, $out, f64::from),
            DataType::Int32 => $extend::<Int32Type>($arr, $out, f64::from),
            DataType::Int64 => $extend::<Int64Type>($arr, $out, |v| v as f64),
            DataType::UInt8 => $extend::<UInt8Type>($arr, $out, f64::from),
            DataType::UInt16 => $extend::<UInt16Type>($arr, $out, f64::from),
            DataType::UInt32 => $extend::<UInt32Type>($arr, $out, f64::from),
            DataType::UInt64 => $extend::<UInt64Type>($arr, $out, |v| v as f64),
            _ => None,
        }
    };
}

fn append_required(arr: &dyn Array, out: &mut Vec<f64>) -> Option<()> {
    if let Some(a) = arr.as_primitive_opt::<Float64Type>() {
        out.extend_from_slice(a.values());
        return Some(());
    }
    numeric_dispatch!(arr, out, extend_required)
}

fn append_optional(arr: &dyn Array, out: &mut Vec<Option<f64>>) -> Option<()> {
    numeric_dispatch!(arr, out, extend_optional)
}

fn i64_values(arr: &dyn Array) -> Option<&[i64]> {
    Some(match arr.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => arr.as_primitive_opt::<TimestampSecondType>()?.values(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => arr.as_primitive_opt::<TimestampMillisecondType>()?.values(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => arr.as_primitive_opt::<TimestampMicrosecondType>()?.values(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => arr.as_primitive_opt::<TimestampNanosecondType>()?.values(),
        DataType::Date64 => arr.as_primitive_opt::<Date64Type>()?.values(),
        _ => return None,
    })
}

/// Appends timestamps as ns; returns the stream offset of a value outside the ns range.
fn append_time(arr: &dyn Array, kind: TimeKind, out: &mut Vec<i64>) -> Option<Result<(), (usize, i64)>> {
    let scale = |i: usize, v: i64, factor: i64| v.checked_mul(factor).ok_or((i, v));
    match kind {
        TimeKind::I64 { factor: 1 } => {
            out.extend_from_slice(i64_values(arr)?);
            Some(Ok(()))
        }
        TimeKind::I64 { factor } => {
            let values = i64_values(arr)?;
            out.reserve(values.len());
            for (i, &v) in values.iter().enumerate() {
                match scale(i, v, factor) {
                    Ok(ns) => out.push(ns),
                    Err(bad) => return Some(Err(bad)),
                }
            }
            Some(Ok(()))
        }
        TimeKind::Days => {
            let values = arr.as_primitive_opt::<Date32Type>()?.values();
            out.reserve(values.len());
            for (i, &v) in values.iter().enumerate() {
                match scale(i, i64::from(v), NANOS_PER_DAY) {
                    Ok(ns) => out.push(ns),
                    Err(bad) => return Some(Err(bad)),
                }
            }
            Some(Ok(()))
        }
    }
}

/// The values of `arr` as a `Vec`, moved out without a copy when the array is the only
/// owner of its buffer (the parquet reader builds each column's array from a `Vec` of
/// exactly the batch's values, so it is, and the `Vec` comes back as it was allocated);
/// copied otherwise. `Err(arr)` if `arr` is not an array of `T`.
fn take_values<T: ArrowPrimitiveType>(arr: ArrayRef) -> Result<Vec<T::Native>, ArrayRef> {
    let values = match arr.as_primitive_opt::<T>() {
        Some(a) => a.values().clone(),
        None => return Err(arr),
    };
    drop(arr);
    Ok(values.into_inner().into_vec().unwrap_or_else(|shared| shared.typed_data::<T::Native>().to_vec()))
}

fn first_null(arr: &dyn Array) -> Option<usize> {
    arr.logical_nulls().filter(|n| n.null_count() > 0).and_then(|n| n.iter().position(|valid| !valid))
}

fn unexpected_type(column: &str, arr: &dyn Array) -> CodecError {
    CodecError::Corrupt(format!("column {column}: decoded as {} although the schema says otherwise", arr.data_type()))
}

/// Reads the bar columns from `input`, pruning row groups by timestamp statistics and
/// trimming rows to `range`.
pub(crate) fn decode_chunks<R: Fork>(input: R, select: Select) -> Result<(RawBars, DecodeStats, Skipped), CodecError> {
    decode_groups(input, select, None)
}

/// The `[min, max]` timestamps (ns) of each row group's statistics, if it has usable ones.
pub(crate) type GroupBounds = Vec<Option<(i64, i64)>>;

/// The `[min, max]` timestamps (ns) of every row group by its statistics, in order, for
/// the timestamp column the decode would read; `None` when the file has no such column
/// statistics at all.
pub(crate) fn timestamp_bounds(meta: &ParquetMetaData) -> Result<Option<GroupBounds>, CodecError> {
    let file = meta.file_metadata();
    let schema = parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map_err(from_parquet_on_read)?;
    let plan = Plan::from_schema(&schema)?;
    let descr = file.schema_descr();
    let Some(leaf) = (0..descr.num_columns()).find(|&leaf| descr.get_column_root_idx(leaf) == plan.ts.root) else {
        return Ok(None);
    };
    Ok(Some((0..meta.num_row_groups()).map(|g| group_bounds(meta, g, leaf, plan.ts_kind)).collect()))
}

/// [`decode_chunks`], of the row groups `only` (ascending) among those it would read when
/// given: a decode of some proven blocks of a file, which must touch no other group.
pub(crate) fn decode_groups<R: Fork>(
    input: R,
    select: Select,
    only: Option<&[usize]>,
) -> Result<(RawBars, DecodeStats, Skipped), CodecError> {
    let range = match select {
        Select::Range(range) => range,
        Select::From(_) => None,
    };
    let file_len = input.len();
    let reader_meta = ArrowReaderMetadata::load(&input, ArrowReaderOptions::new()).map_err(from_parquet_on_read)?;
    let plan = Plan::from_schema(reader_meta.schema())?;
    let meta = reader_meta.metadata().clone();
    check_layout(&meta, file_len)?;
    check_claims(&meta)?;
    let descr = reader_meta.parquet_schema();
    let ts_leaf = (0..descr.num_columns()).find(|&leaf| descr.get_column_root_idx(leaf) == plan.ts.root);
    let bounds = |g: usize| ts_leaf.and_then(|leaf| group_bounds(&meta, g, leaf, plan.ts_kind));
    let total = meta.num_row_groups();
    let (skipped_groups, skipped) = match select {
        Select::From(from) if ts_leaf.is_some() => leading_groups_before(&meta, from, bounds),
        _ => (0, Skipped::default()),
    };
    let groups: Vec<usize> = (skipped_groups..total)
        .filter(|&g| match range {
            Some(r) => bounds(g).is_none_or(|(lo, hi)| r.overlaps(lo, hi)),
            None => true,
        })
        .filter(|g| only.is_none_or(|only| only.binary_search(g).is_ok()))
        .collect();
    let index = GroupIndex::of(&meta, &groups, total);
    let expected = index.rows;

    // A read whose columns fit the reserve cap is decoded as one batch, whose arrays then
    // become the bar columns without a copy (`take_values`); longer reads are appended
    // batch by batch into columns reserved up to the cap.
    let capped = expected.min(MAX_RESERVE_VALUES / (6 + plan.extras.len()));
    let one_batch = expected <= capped;
    let batch_rows = if one_batch { expected } else { BATCH_ROWS }.max(1);
    let roots = plan.roots();
    // A read of proven blocks with a range (one day out of a row group of three months)
    // decodes the timestamps first and the other columns only at the rows in the range
    // (a row filter): the rest of each page is skipped instead of decoded, allocated and
    // trimmed away. Row positions in error messages then count the rows selected.
    let filter = match (only, range) {
        (Some(_), Some(r)) => Some(r),
        _ => None,
    };
    let (ts_root, ts_kind) = (plan.ts.root, plan.ts_kind);
    let read = |input: R, roots: &[usize]| -> Result<Vec<RecordBatch>, CodecError> {
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(input, reader_meta.clone())
            .with_projection(ProjectionMask::roots(descr, roots.iter().copied()))
            .with_row_groups(groups.clone())
            .with_batch_size(batch_rows);
        if let Some(r) = filter {
            let in_range = move |batch: RecordBatch| {
                let ts = batch.column(0);
                let mut ns = Vec::with_capacity(ts.len());
                // Timestamps that do not convert are all selected: the decode then
                // reports them as it would without the filter.
                Ok(match append_time(ts.as_ref(), ts_kind, &mut ns) {
                    Some(Ok(())) => ns.iter().map(|&t| Some(r.contains(t))).collect::<BooleanArray>(),
                    _ => BooleanArray::from(vec![true; ts.len()]),
                })
            };
            let predicate = ArrowPredicateFn::new(ProjectionMask::roots(descr, [ts_root]), in_range);
            builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
        }
        builder.build().map_err(from_parquet_on_read)?.map(|b| b.map_err(from_arrow_on_read)).collect()
    };
    let second =
        if filter.is_none() && expected >= TWO_THREADS_FROM_ROWS && roots.len() > 1 { input.fork() } else { None };
    let batches = match second {
        Some(other) => {
            let (left, right) = roots.split_at(roots.len() / 2);
            let (a, b) = std::thread::scope(|scope| {
                let b = scope.spawn(|| read(other, right));
                let a = read(input, left);
                (a, b.join())
            });
            let b = b.unwrap_or_else(|payload| Err(decoder_panic(payload.as_ref())));
            joined(a?, b?)?
        }
        None => read(input, &roots)?,
    };

    let reserve = if one_batch { 0 } else { capped };
    let mut out = Decoding {
        raw: RawBars::with_capacity(reserve),
        extras: plan.extras.iter().map(|_| Vec::with_capacity(capped)).collect(),
        offset: 0,
    };
    for batch in batches {
        out.batch(&plan, &index, batch)?;
    }
    let rows_read = out.raw.ts.len();
    match filter {
        None => check_rows_read(expected, rows_read)?,
        // The footer was proven against the record; the filter returns at most its rows.
        Some(_) if rows_read > expected => check_rows_read(expected, rows_read)?,
        Some(_) => {}
    }
    let Decoding { mut raw, mut extras, .. } = out;
    if let Some(r) = range {
        trim_to(&mut raw, &mut extras, &r);
    }
    for ((_, name), values) in plan.extras.iter().zip(extras) {
        raw.extras.push(ExtraColumn::new(name, values)?);
    }
    let stats =
        DecodeStats { row_groups_total: total, row_groups_read: groups.len(), rows_read, rows_returned: raw.ts.len() };
    Ok((raw, stats, skipped))
}

/// The message of a decoder's panic, as the corruption error it stands for (see `guarded`
/// in lib.rs: the parquet decoder panics on some damaged pages).
pub(crate) fn decoder_panic(payload: &(dyn std::any::Any + Send)) -> CodecError {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown failure".to_string());
    CodecError::Corrupt(format!("damaged Parquet data (decoder failed: {detail})"))
}

/// The batches of two decoders of the same rows, each of some of the columns (`a` of the
/// lower roots, `b` of the higher ones), as batches of all the columns in root order.
fn joined(a: Vec<RecordBatch>, b: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, CodecError> {
    if a.len() != b.len() {
        return Err(CodecError::Corrupt(format!(
            "the column halves of one read decoded into {} and {} batches",
            a.len(),
            b.len()
        )));
    }
    a.into_iter()
        .zip(b)
        .map(|(a, b)| {
            if a.num_rows() != b.num_rows() {
                return Err(CodecError::Corrupt(format!(
                    "the column halves of one read hold {} and {} rows",
                    a.num_rows(),
                    b.num_rows()
                )));
            }
            let (sa, ca, _) = a.into_parts();
            let (sb, cb, _) = b.into_parts();
            let fields: Vec<Arc<Field>> = sa.fields().iter().chain(sb.fields().iter()).cloned().collect();
            let columns: Vec<ArrayRef> = ca.into_iter().chain(cb).collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(from_arrow_on_read)
        })
        .collect()
}

/// For a tail read from `from`: how many leading groups can be left out (those whose
/// statistics show every timestamp before `from`; the first group without statistics ends
/// the run), keeping one row before `from` when there is one — the last skippable group
/// is read when the next group starts at or after `from`, or when there is no next group,
/// so a writer always has an unchanged row to check the stored bytes against.
fn leading_groups_before(
    meta: &ParquetMetaData,
    from: i64,
    bounds: impl Fn(usize) -> Option<(i64, i64)>,
) -> (usize, Skipped) {
    let total = meta.num_row_groups();
    let mut groups = (0..total).take_while(|&g| bounds(g).is_some_and(|(_, hi)| hi < from)).count();
    if groups > 0 && (groups == total || bounds(groups).is_none_or(|(lo, _)| lo >= from)) {
        groups -= 1;
    }
    let mut skipped = Skipped::default();
    for g in 0..groups {
        let rows = usize::try_from(meta.row_group(g).num_rows()).unwrap_or(0);
        skipped.rows = skipped.rows.saturating_add(rows);
        let (lo, hi) = bounds(g).unwrap_or_default();
        skipped.bounds = Some(skipped.bounds.map_or((lo, hi), |(first, _)| (first, hi)));
    }
    (groups, skipped)
}

/// Removes the rows outside `range` (row groups are pruned, not their rows).
fn trim_to(raw: &mut RawBars, extras: &mut [Vec<Option<f64>>], range: &TimeRange) {
    if raw.ts.iter().all(|&t| range.contains(t)) {
        return;
    }
    let keep: Vec<bool> = raw.ts.iter().map(|&t| range.contains(t)).collect();
    retain(&mut raw.ts, &keep);
    for col in [&mut raw.open, &mut raw.high, &mut raw.low, &mut raw.close, &mut raw.volume] {
        retain(col, &keep);
    }
    for col in extras {
        retain(col, &keep);
    }
}

/// The columns decoded so far, and the rows of the stream they hold.
struct Decoding {
    raw: RawBars,
    extras: Vec<Vec<Option<f64>>>,
    offset: usize,
}

impl Decoding {
    /// Appends one decoded batch: its timestamps, core columns and extras.
    fn batch(&mut self, plan: &Plan, index: &GroupIndex, batch: RecordBatch) -> Result<(), CodecError> {
        // The whole read in this one batch: nanosecond timestamps and Float64 core columns
        // become the bar columns as they are.
        let whole = self.offset == 0 && batch.num_rows() == index.rows;
        let batch_rows = batch.num_rows();
        let roots = plan.roots();
        let position = |root: usize| roots.binary_search(&root).unwrap_or(0);
        let mut columns: Vec<Option<ArrayRef>> = batch.into_parts().1.into_iter().map(Some).collect();
        let mut column = |src: &Source| {
            columns
                .get_mut(position(src.root))
                .and_then(Option::take)
                .ok_or_else(|| CodecError::Corrupt(format!("column {}: missing from a decoded batch", src.name)))
        };
        self.timestamps(plan, index, column(&plan.ts)?, whole)?;
        let raw = &mut self.raw;
        let core_out = [&mut raw.open, &mut raw.high, &mut raw.low, &mut raw.close, &mut raw.volume];
        for (src, out) in plan.core.iter().zip(core_out) {
            let mut arr = column(src)?;
            if let Some(row) = first_null(arr.as_ref()) {
                return Err(index.null_error(&src.name, self.offset + row));
            }
            if whole && *arr.data_type() == DataType::Float64 {
                match take_values::<Float64Type>(arr) {
                    Ok(values) => {
                        *out = values;
                        continue;
                    }
                    Err(back) => arr = back,
                }
            }
            append_required(arr.as_ref(), out).ok_or_else(|| unexpected_type(&src.name, arr.as_ref()))?;
        }
        for ((src, _), out) in plan.extras.iter().zip(&mut self.extras) {
            let arr = column(src)?;
            append_optional(arr.as_ref(), out).ok_or_else(|| unexpected_type(&src.name, arr.as_ref()))?;
        }
        self.offset += batch_rows;
        Ok(())
    }

    /// Appends a batch's timestamps as nanoseconds (taken over as they are when the whole
    /// read is this one batch of nanoseconds), refusing nulls and values out of range.
    fn timestamps(&mut self, plan: &Plan, index: &GroupIndex, ts: ArrayRef, whole: bool) -> Result<(), CodecError> {
        if let Some(row) = first_null(ts.as_ref()) {
            return Err(index.null_error(&plan.ts.name, self.offset + row));
        }
        let ts = if whole && plan.ts_kind == (TimeKind::I64 { factor: 1 }) {
            match take_values::<TimestampNanosecondType>(ts) {
                Ok(values) => {
                    self.raw.ts = values;
                    return Ok(());
                }
                Err(other) => other,
            }
        } else {
            ts
        };
        match append_time(ts.as_ref(), plan.ts_kind, &mut self.raw.ts) {
            Some(Ok(())) => Ok(()),
            None => Err(unexpected_type(&plan.ts.name, ts.as_ref())),
            Some(Err((i, v))) => {
                let (group, row) = index.locate(self.offset + i);
                Err(CodecError::Parse {
                    line: Some(group as u64 + 1),
                    column: Some(plan.ts.name.clone()),
                    value: Some(v.to_string()),
                    reason: format!(
                        "timestamp at row {} of row group {} ({}) is outside the nanosecond range (years 1677 to 2262)",
                        row + 1,
                        group + 1,
                        ts.data_type()
                    ),
                })
            }
        }
    }
}

fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    v.retain(|_| flags.next().copied().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cols: &[(&str, DataType)]) -> Schema {
        Schema::new(cols.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())
    }

    fn ts_ns() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    }

    #[test]
    fn aliases_and_case_map_to_core_columns() {
        let s = schema(&[
            ("Date", DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))),
            ("OPEN", DataType::Float32),
            ("High", DataType::Int64),
            ("low", DataType::Int32),
            ("Last", DataType::Float64),
            ("Vol", DataType::UInt64),
            ("Adj Close", DataType::Float64),
            ("Open Interest", DataType::Int64),
            ("symbol", DataType::Utf8),
            ("__index_level_0__", DataType::Int64),
        ]);
        let p = Plan::from_schema(&s).unwrap();
        assert_eq!(p.ts.name, "Date");
        assert_eq!(p.ts_kind, TimeKind::I64 { factor: 1_000_000_000 });
        let core: Vec<&str> = p.core.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(core, ["OPEN", "High", "low", "Last", "Vol"]);
        let extras: Vec<&str> = p.extras.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(extras, ["adj_close", "open_interest"]);
    }

    #[test]
    fn canonical_name_beats_alias_which_becomes_an_extra() {
        let s = schema(&[
            ("timestamp", ts_ns()),
            ("open", DataType::Float64),
            ("high", DataType::Float64),
            ("low", DataType::Float64),
            ("last", DataType::Float64),
            ("close", DataType::Float64),
            ("volume", DataType::Float64),
        ]);
        let p = Plan::from_schema(&s).unwrap();
        assert_eq!(p.core[3].name, "close");
        assert_eq!(p.extras.len(), 1);
        assert_eq!(p.extras[0].1, "last");
    }

    #[test]
    fn ambiguous_and_unnamable_columns_are_refused() {
        let base = [
            ("timestamp", ts_ns()),
            ("open", DataType::Float64),
            ("high", DataType::Float64),
            ("low", DataType::Float64),
            ("volume", DataType::Float64),
        ];
        let mut cols = base.to_vec();
        cols.extend([("close", DataType::Float64), ("Close", DataType::Float64)]);
        let err = Plan::from_schema(&schema(&cols)).unwrap_err().to_string();
        assert!(err.contains("both read as close"), "{err}");

        let mut cols = base.to_vec();
        cols.extend([("close", DataType::Float64), ("Adj Close", DataType::Float64), ("adj_close", DataType::Int32)]);
        let err = Plan::from_schema(&schema(&cols)).unwrap_err().to_string();
        assert!(err.contains("adj_close"), "{err}");

        let mut cols = base.to_vec();
        cols.extend([("close", DataType::Float64), ("1d return", DataType::Float64)]);
        let err = Plan::from_schema(&schema(&cols)).unwrap_err().to_string();
        assert!(err.contains("1d return"), "{err}");
    }

    #[test]
    fn unnamed_pandas_datetime_index_is_the_timestamp() {
        let s = schema(&[
            ("open", DataType::Float64),
            ("high", DataType::Float64),
            ("low", DataType::Float64),
            ("close", DataType::Float64),
            ("volume", DataType::Float64),
            ("__index_level_0__", ts_ns()),
        ]);
        let p = Plan::from_schema(&s).unwrap();
        assert_eq!(p.ts.name, "__index_level_0__");
        assert!(p.extras.is_empty());
        assert_eq!(p.roots(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn group_index_locates_rows() {
        let idx = GroupIndex { starts: vec![(0, 1), (10, 3), (25, 4)], total: 5, rows: 40 };
        assert_eq!(idx.locate(0), (1, 0));
        assert_eq!(idx.locate(9), (1, 9));
        assert_eq!(idx.locate(10), (3, 0));
        assert_eq!(idx.locate(30), (4, 5));
    }
}

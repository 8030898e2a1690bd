//! What an import reads: a file or standard input (`-`), plain or compressed (gzip,
//! zstd, told by their magic bytes), CSV or Parquet; naive timestamps taken in a zone
//! (`--tz`); the bytes read so far (for progress); and, for messages, where a bar came
//! from in its input (a file line, or a Parquet row).
//!
//! Nothing here writes: an input that is not what it claims (binary data named `.csv`,
//! UTF-16 text, offsets under `--tz`) is refused before the store is touched, with an error
//! that names the file and never repeats its raw bytes.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use barvault_csv::CsvCodec;
use barvault_domain::{Bars, DomainError, Period, RawBars, Rule, RuleViolation, format_timestamp};
use barvault_fs::Fs;
use barvault_parquet::ParquetCodec;
use barvault_ports::{BarCodec, CodecInput, IoStep, Rows, StorageError};
use chrono::TimeZone as _;

pub use chrono_tz::Tz;

/// The path that names standard input.
pub const STDIN: &str = "-";

/// How an import reads its inputs (besides what it does with the bars).
#[derive(Debug, Clone, Copy, Default)]
pub struct InputOptions {
    /// The zone naive input timestamps are in (`None`: UTC). An input whose timestamps
    /// carry offsets is refused under a zone, as is a Parquet input.
    pub tz: Option<Tz>,
    /// Bytes read from input files and standard input (compressed bytes for compressed
    /// files) are added here as they are read, for a progress display.
    pub progress: Option<&'static AtomicU64>,
}

impl PartialEq for InputOptions {
    fn eq(&self, other: &Self) -> bool {
        let same_counter = match (self.progress, other.progress) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        self.tz == other.tz && same_counter
    }
}

/// An IANA zone name (`America/New_York`, `Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}: expected an IANA name such as America/New_York, Europe/London or UTC")
    })
}

/// Whether `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// The symbol a file name gives: the name without its compression suffix (`.gz`,
/// `.zst`) and extension, and without a trailing period suffix that names `period`
/// (`NVDA-1d.csv`, `NVDA_1d.csv` and `NVDA.1d.csv` are `NVDA` for `--period 1d`; `1D` and
/// `daily` name it too, `1M` does not name `1m`). `None` when the name gives no text.
pub fn symbol_from_file_name(file: &Path, period: Period) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let name = strip_suffix_ci(name, ".gz").or_else(|| strip_suffix_ci(name, ".zst")).unwrap_or(name);
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    let stripped = stem.rfind(['-', '_', '.']).and_then(|i| {
        let (symbol, suffix) = (&stem[..i], &stem[i + 1..]);
        let names_period = Period::parse_lenient(suffix).is_ok_and(|p| p == period);
        (names_period && !symbol.is_empty()).then_some(symbol)
    });
    Some(stripped.unwrap_or(stem).to_string()).filter(|s| !s.is_empty())
}

fn strip_suffix_ci<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = name.len().checked_sub(suffix.len())?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(suffix)).then(|| &name[..cut])
}

/// The format and compression of an input, from its first bytes (and name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const PARQUET_MAGIC: &[u8] = b"PAR1";
/// How much of a CSV input is looked at to tell text from binary data.
const SNIFF: usize = 8192;

fn compression_of(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Adds what it reads to a progress counter.
struct Counting<R> {
    inner: R,
    progress: Option<&'static AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Where the bars of an input came from, to name them in messages.
#[derive(Debug)]
pub(crate) struct Origin {
    /// The filesystem files are read (and read again) through.
    io: Arc<dyn Fs>,
    /// The path as given (`-` for standard input).
    path: PathBuf,
    parquet: bool,
    /// The input's bytes, kept when it cannot be read again (standard input).
    kept: Option<Vec<u8>>,
    /// Timestamps in input order, kept when the decoder's order was not sorted and unique
    /// (otherwise the sorted bars are the input order).
    input_order: Option<Vec<i64>>,
}

/// What reading one input gives.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) raw: RawBars,
    pub(crate) origin: Origin,
}

fn read_error(path: &Path, e: io::Error) -> StorageError {
    StorageError::io(IoStep::Read, path, e)
}

fn refused(path: &Path, line: Option<u64>, reason: impl Into<String>) -> StorageError {
    StorageError::Decode { path: path.to_path_buf(), line, column: None, value: None, reason: reason.into() }
}

/// Reads one input: `-` is standard input (read whole), anything else a file, opened
/// through `io` (the vault's filesystem seam, where faults are injected in tests).
pub(crate) fn read(io: Arc<dyn Fs>, path: &Path, options: InputOptions) -> Result<Input, StorageError> {
    let (mut raw, origin) = if is_stdin(path) {
        let mut bytes = Vec::new();
        let stdin = io::stdin().lock();
        Counting { inner: stdin, progress: options.progress }
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(path, e))?;
        let bytes = decompress_all(path, bytes)?;
        let parquet = bytes.starts_with(PARQUET_MAGIC);
        let raw = if parquet { decode_parquet(path, &bytes)? } else { decode_csv_bytes(path, &bytes)? };
        (raw, Origin { io, path: path.to_path_buf(), parquet, kept: Some(bytes), input_order: None })
    } else {
        read_file(io, path, options.progress)?
    };
    if let Some(tz) = options.tz {
        if origin.parquet {
            return Err(refused(
                path,
                None,
                "--tz applies to naive CSV timestamps; a Parquet file's timestamps are instants already",
            ));
        }
        let bytes = origin.bytes()?;
        if let Some((line, cell)) = barvault_csv::first_utc_offset(&bytes) {
            return Err(StorageError::Decode {
                path: path.to_path_buf(),
                line: Some(line),
                column: None,
                value: Some(cell),
                reason: format!(
                    "--tz {tz} applies to naive timestamps, but this one carries its UTC offset (leave out --tz)"
                ),
            });
        }
        localize(&mut raw.ts, tz).map_err(|(row, why)| {
            let line = origin.lines_of_input_rows(&[row]).first().copied().flatten();
            refused(path, line, why)
        })?;
    }
    Ok(Input { raw, origin })
}

fn read_file(
    io: Arc<dyn Fs>,
    path: &Path,
    progress: Option<&'static AtomicU64>,
) -> Result<(RawBars, Origin), StorageError> {
    let file = io.open_read(path).map_err(|e| read_error(path, e))?;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut reader = BufReader::with_capacity(1 << 16, Counting { inner: file, progress });
    let head = reader.fill_buf().map_err(|e| read_error(path, e))?.to_vec();
    let origin =
        |parquet| Origin { io: Arc::clone(&io), path: path.to_path_buf(), parquet, kept: None, input_order: None };
    let named_parquet = has_extension(path, "parquet");
    let raw = match compression_of(&head) {
        Compression::None if named_parquet || head.starts_with(PARQUET_MAGIC) => {
            // The Parquet reader reads the footer and the column chunks where they are,
            // through the open file, instead of a copy of it in memory.
            let file = reader.into_inner().inner;
            let raw = ParquetCodec::default().decode(CodecInput::File(file), Rows::All).map_err(|e| e.at(path))?;
            if let Some(p) = progress {
                p.fetch_add(size.saturating_sub(head.len() as u64), Ordering::Relaxed);
            }
            return Ok((raw.raw, origin(true)));
        }
        Compression::None => {
            sniff_text(path, &head)?;
            CsvCodec.decode_reader(reader, usize::try_from(size).unwrap_or(0), None).map_err(|e| e.at(path))?
        }
        compression => {
            let mut stream = decompressor(path, compression, reader)?;
            let head = peek(&mut stream).map_err(|e| read_error(path, e))?;
            if head.starts_with(PARQUET_MAGIC) {
                let mut bytes = Vec::new();
                stream.read_to_end(&mut bytes).map_err(|e| read_error(path, e))?;
                return Ok((decode_parquet(path, &bytes)?, origin(true)));
            }
            sniff_text(path, &head)?;
            CsvCodec.decode_reader(stream, 0, None).map_err(|e| e.at(path))?
        }
    };
    Ok((raw, origin(false)))
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The first bytes of a buffered stream, without consuming them.
fn peek(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    Ok(reader.fill_buf()?.to_vec())
}

fn decompressor<'a>(
    path: &Path,
    compression: Compression,
    reader: impl BufRead + 'a,
) -> Result<BufReader<Box<dyn Read + 'a>>, StorageError> {
    let inner: Box<dyn Read + 'a> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| read_error(path, e))?)
        }
        Compression::None => Box::new(reader),
    };
    Ok(BufReader::with_capacity(1 << 16, inner))
}

/// `bytes`, decompressed when they are gzip or zstd.
fn decompress_all(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    let compression = compression_of(&bytes);
    if compression == Compression::None {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    decompressor(path, compression, bytes.as_slice())?.read_to_end(&mut out).map_err(|e| read_error(path, e))?;
    Ok(out)
}

fn decode_parquet(path: &Path, bytes: &[u8]) -> Result<RawBars, StorageError> {
    ParquetCodec::default().decode(CodecInput::Bytes(bytes), Rows::All).map(|d| d.raw).map_err(|e| e.at(path))
}

fn decode_csv_bytes(path: &Path, bytes: &[u8]) -> Result<RawBars, StorageError> {
    sniff_text(path, bytes.get(..SNIFF).unwrap_or(bytes))?;
    CsvCodec.decode_bytes(bytes, None).map_err(|e| e.at(path))
}

/// Refuses input whose first bytes are not UTF-8 text: a NUL byte, invalid UTF-8 or a
/// UTF-16 byte-order mark. The error says where and what, never the bytes themselves.
fn sniff_text(path: &Path, head: &[u8]) -> Result<(), StorageError> {
    let head = head.get(..SNIFF).unwrap_or(head);
    let line_at = |at: usize| Some(1 + head.iter().take(at).filter(|&&b| b == b'\n').count() as u64);
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Err(refused(path, Some(1), "UTF-16 text: barvault reads CSV in UTF-8 (save it as UTF-8)"));
    }
    if let Some(at) = head.iter().position(|&b| b == 0) {
        return Err(refused(
            path,
            line_at(at),
            format!(
                "binary data, not CSV text: a NUL byte at offset {at} (barvault reads UTF-8 CSV and Parquet files)"
            ),
        ));
    }
    if let Err(e) = std::str::from_utf8(head) {
        // A character cut at the end of the sample is not an error.
        if e.error_len().is_some() {
            let at = e.valid_up_to();
            return Err(refused(
                path,
                line_at(at),
                format!(
                    "binary data, not CSV text: invalid UTF-8 at offset {at} (barvault reads UTF-8 CSV and Parquet files)"
                ),
            ));
        }
    }
    Ok(())
}

/// Takes naive timestamps (`ts`, in input order, read as if UTC) as wall-clock times in
/// `tz`. A time that occurs twice (the hour clocks are turned back) is the earlier instant
/// unless the input already went past it, as pandas' `ambiguous="infer"` decides; a time
/// that does not occur (the hour clocks skip) is refused with its row.
fn localize(ts: &mut [i64], tz: Tz) -> Result<(), (usize, String)> {
    let mut last: Option<i64> = None;
    for (row, t) in ts.iter_mut().enumerate() {
        let naive = chrono::DateTime::from_timestamp_nanos(*t).naive_utc();
        let nanos = |dt: chrono::DateTime<Tz>| dt.timestamp_nanos_opt();
        let local = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(dt) => nanos(dt),
            chrono::LocalResult::Ambiguous(early, late) => match (nanos(early), last) {
                (Some(e), Some(l)) if e <= l => nanos(late),
                (e, _) => e,
            },
            chrono::LocalResult::None => {
                return Err((row, format!("{naive} does not exist in {tz} (the clocks skip it)")));
            }
        };
        let Some(utc) = local else {
            return Err((row, format!("{naive} in {tz} is outside the years 1677 to 2262")));
        };
        *t = utc;
        last = Some(utc);
    }
    Ok(())
}

impl Origin {
    /// Keeps the input order of the timestamps when it is not the sorted order (so that a
    /// bar can still be found by its timestamp after sorting).
    pub(crate) fn remember_order(&mut self, raw: &RawBars) {
        if !raw.ts.windows(2).all(|w| w[0] < w[1]) {
            self.input_order = Some(raw.ts.clone());
        }
    }

    /// The input's bytes (read again, and decompressed, for a file).
    fn bytes(&self) -> Result<Vec<u8>, StorageError> {
        if let Some(b) = &self.kept {
            return Ok(b.clone());
        }
        let mut bytes = Vec::new();
        let mut file = self.io.open_read(&self.path).map_err(|e| read_error(&self.path, e))?;
        file.read_to_end(&mut bytes).map_err(|e| read_error(&self.path, e))?;
        decompress_all(&self.path, bytes)
    }

    /// The 1-based physical lines of input rows `rows` (0-based, input order).
    fn lines_of_input_rows(&self, rows: &[usize]) -> Vec<Option<u64>> {
        // Nothing to find (an import that refused or dropped nothing) reads nothing again.
        if self.parquet || rows.is_empty() {
            return vec![None; rows.len()];
        }
        match self.bytes() {
            Ok(bytes) => barvault_csv::data_row_lines(&bytes, rows),
            Err(_) => vec![None; rows.len()],
        }
    }

    /// The input row (0-based) of the bar at `ts`: its last occurrence (the one that
    /// won, under keep-last), found in the sorted `bars` when the input was in order.
    fn input_row(&self, bars: &Bars, ts: i64, last: bool) -> Option<usize> {
        match &self.input_order {
            None => bars.timestamps().binary_search(&ts).ok(),
            Some(order) if last => order.iter().rposition(|&t| t == ts),
            Some(order) => order.iter().position(|&t| t == ts),
        }
    }

    /// Where each of `violations` is in the input: `line N at TIME` for a CSV line,
    /// `row N at TIME` for a Parquet row, `TIME` alone when neither is known.
    pub(crate) fn locate(&self, bars: &Bars, violations: &[RuleViolation], keep_last: bool) -> Vec<Located> {
        let rows: Vec<Option<usize>> =
            violations.iter().map(|v| self.input_row(bars, v.timestamp, keep_last)).collect();
        let wanted: Vec<usize> = rows.iter().flatten().copied().collect();
        let mut lines = self.lines_of_input_rows(&wanted).into_iter();
        violations
            .iter()
            .zip(rows)
            .map(|(v, row)| {
                let line = row.and_then(|_| lines.next().flatten());
                let at = format_timestamp(v.timestamp);
                let place = match (line, row) {
                    (Some(l), _) => format!("line {l} ({at})"),
                    (None, Some(r)) if self.parquet => format!("row {} ({at})", r + 1),
                    _ => at,
                };
                // Off-grid bars all break the one rule the message already names.
                let text = if v.rule == Rule::OnGrid { place } else { format!("{place}: {}", v.rule) };
                Located { line, text }
            })
            .collect()
    }
}

/// A refusal of `bars` (read from `file`) by validation or the grid check, rewritten to
/// name the input lines (or Parquet rows) of the bars it refused, as parse errors do:
/// `file:LINE: N bar(s) …: line L at TIME: rule; …`. Any other error is returned as it is.
pub(crate) fn located_refusal(
    e: StorageError,
    file: &Path,
    origin: &Origin,
    bars: &Bars,
    keep_last: bool,
) -> StorageError {
    let StorageError::Validation { series, source } = e else { return e };
    let (count, violations, what) = match &*source {
        DomainError::Validation { count, violations } => (*count, violations, "break validation rules".to_string()),
        DomainError::OffGrid { count, grid, violations } => {
            let hint = if grid.period.is_intraday() {
                "ticks, or bars of another period?"
            } else {
                "bars of another period, or times with a UTC offset such as -05:00?"
            };
            (*count, violations, format!("are off the time grid of {series} ({grid}; {hint})"))
        }
        _ => return StorageError::Validation { series, source },
    };
    let located = origin.locate(bars, violations, keep_last);
    let line = located.iter().find_map(|l| l.line);
    let shown: Vec<String> = located.into_iter().map(|l| l.text).collect();
    let more = if count > shown.len() { format!("; … ({} more)", count - shown.len()) } else { String::new() };
    let reason = format!(
        "{count} bar(s) {what}: {}{more}; --on-invalid drop imports the file without them, --on-invalid keep \
         stores them as they are",
        shown.join(", ")
    );
    StorageError::Decode { path: file.to_path_buf(), line, column: None, value: None, reason }
}

/// One bar named by its place in the input.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) line: Option<u64>,
    pub(crate) text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_drop_compression_extension_and_the_period_suffix() {
        let cases = [
            ("NVDA-1d.csv", Period::D1, "NVDA"),
            ("data/NVDA_1d.csv.gz", Period::D1, "NVDA"),
            ("NVDA.1D.csv.zst", Period::D1, "NVDA"),
            ("NVDA-daily.csv", Period::D1, "NVDA"),
            ("NVDA-1d.csv", Period::H1, "NVDA-1d"),
            ("ESTX50-2006-01-02-1m.txt", Period::M1, "ESTX50-2006-01-02"),
            ("ESTX50-1M.csv", Period::M1, "ESTX50-1M"),
            ("ES-1M.csv", Period::Mo1, "ES"),
            ("BRK.B.csv", Period::D1, "BRK.B"),
            ("-1d.csv", Period::D1, "-1d"),
            ("AAPL", Period::D1, "AAPL"),
        ];
        for (name, period, symbol) in cases {
            assert_eq!(symbol_from_file_name(Path::new(name), period).as_deref(), Some(symbol), "{name}");
        }
    }

    #[test]
    fn binary_input_is_refused_without_its_bytes() {
        let path = Path::new("x.csv");
        for (bytes, reason) in [
            (&b"timestamp,open\n1,\x00\x01\x02"[..], "NUL byte at offset 17"),
            (&b"\xff\xfet\x00i\x00"[..], "UTF-16"),
            (&b"time\xc3\x28stamp"[..], "invalid UTF-8 at offset 4"),
        ] {
            let e = sniff_text(path, bytes).unwrap_err().to_string();
            assert!(e.contains(reason), "{e}");
            assert!(!e.contains('\u{fffd}') && !e.contains('\u{1}'), "{e}");
        }
        assert!(sniff_text(path, "timestamp,é".as_bytes()).is_ok());
        assert!(sniff_text(path, &"é".as_bytes()[..1]).is_ok(), "a character cut at the end is fine");
    }

    #[test]
    fn naive_times_take_the_zone_and_dst_folds_are_inferred() {
        let tz = parse_zone("America/New_York").unwrap();
        let ns = |s: &str| barvault_csv::parse_timestamp(s.as_bytes()).unwrap();
        let mut ts = vec![ns("2024-01-02"), ns("2024-07-01")];
        localize(&mut ts, tz).unwrap();
        assert_eq!(ts, vec![ns("2024-01-02T05:00:00Z"), ns("2024-07-01T04:00:00Z")]);
        // 2024-11-03 01:30 happens twice in New York: first EDT, then EST.
        let mut fold =
            vec![ns("2024-11-03 01:00"), ns("2024-11-03 01:30"), ns("2024-11-03 01:00"), ns("2024-11-03 01:30")];
        localize(&mut fold, tz).unwrap();
        let utc = ["05:00", "05:30", "06:00", "06:30"].map(|t| ns(&format!("2024-11-03T{t}:00Z")));
        assert_eq!(fold, utc.to_vec());
        let mut gap = vec![ns("2024-03-10 01:59"), ns("2024-03-10 02:30")];
        assert_eq!(localize(&mut gap, tz).map_err(|(row, _)| row), Err(1));
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("IANA"));
    }
}

//! Bars -> barvault CSV bytes.

use std::io::{self, Write};

use barvault_domain::{Bars, CORE_COLUMNS};

use crate::number::write_f64;
use crate::timestamp::{TimestampWriter, fraction_digits};

/// Bytes gathered before each `write_all`: large enough to amortize the call, small enough
/// to stay in cache.
const CHUNK: usize = 256 * 1024;

/// From this many rows on, formatting runs on its own threads while the caller's writer
/// (which hashes and writes the bytes) consumes the chunks: the two halves of the work overlap.
const PIPELINE_MIN_ROWS: usize = 65_536;

/// Blocks in flight between each formatting thread and the writer.
const PIPELINE_DEPTH: usize = 4;

/// Rows per block handed from a formatting thread to the writer (about 0.8 MB of text).
const BLOCK_ROWS: usize = 16_384;

/// Formatting threads at most: formatting is the longest part of an encode, so on a
/// machine with two cores two threads halve it when the writer is light (an export) and
/// cost little when it is not (a store write, where the writer hashes).
const MAX_FORMATTERS: usize = 2;

/// How timestamps are written (numbers are always written the one way of [`write_f64`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Style {
    /// Each timestamp ends in `Z`: readers (pandas, polars) then type the column as UTC.
    pub(crate) utc_marker: bool,
}

/// The format barvault writes by default: timestamps with the UTC marker.
pub(crate) const DEFAULT_STYLE: Style = Style { utc_marker: true };

/// Writes `bars` as barvault CSV in the default format (timestamps marked `Z`): the core
/// header, then the extras in `Bars` order. Timestamps share one fraction width, the
/// narrowest that is exact for every row. The bytes are the same whether or not the work
/// is pipelined. [`crate::CsvCodec::with_utc_marker`] chooses the other format.
pub fn encode_bars<W: Write + ?Sized>(bars: &Bars, out: &mut W) -> io::Result<()> {
    encode_part(bars, 0..bars.len(), true, DEFAULT_STYLE, out)
}

/// The header line of `bars`' columns.
pub(crate) fn header_line(bars: &Bars) -> Vec<u8> {
    let mut header = Vec::with_capacity(256);
    header.extend_from_slice(CORE_COLUMNS.join(",").as_bytes());
    for extra in bars.extras() {
        header.push(b',');
        header.extend_from_slice(extra.name().as_bytes());
    }
    header.push(b'\n');
    header
}

/// Writes the header (with `header`) and rows `rows` of `bars`, byte for byte as they
/// appear in [`encode_bars`]' output: the fraction width is that of all of `bars`, so
/// `encode_part(0..k, true) ++ encode_part(k..n, false) == encode_bars`. Rows out of
/// range are not written.
pub(crate) fn encode_part<W: Write + ?Sized>(
    bars: &Bars,
    rows: std::ops::Range<usize>,
    header: bool,
    style: Style,
    out: &mut W,
) -> io::Result<()> {
    let end = rows.end.min(bars.len());
    let rows = rows.start.min(end)..end;
    let digits = fraction_digits(bars.timestamps());
    let head = if header { header_line(bars) } else { Vec::new() };
    if rows.len() < PIPELINE_MIN_ROWS {
        let mut buf = head;
        format_range(bars, digits, style, rows, |chunk| {
            buf.extend_from_slice(chunk);
            if buf.len() >= CHUNK {
                out.write_all(&buf)?;
                buf.clear();
            }
            Ok(())
        })?;
        return out.write_all(&buf);
    }
    out.write_all(&head)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_FORMATTERS);
    let (first_row, end) = (rows.start, rows.end);
    let blocks = rows.len().div_ceil(BLOCK_ROWS);
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(threads);
        for first in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
            receivers.push(rx);
            // Thread `first` formats blocks first, first + threads, ...; the writer takes
            // them round-robin, so the bytes come out in row order.
            scope.spawn(move || {
                for block in (first..blocks).step_by(threads) {
                    let from = first_row + block * BLOCK_ROWS;
                    let rows = from..(from + BLOCK_ROWS).min(end);
                    let mut buf = Vec::with_capacity(rows.len() * 64);
                    // Formatting into a Vec cannot fail.
                    let _ = format_range(bars, digits, style, rows, |chunk| {
                        buf.extend_from_slice(chunk);
                        Ok(())
                    });
                    // A send fails only when the writer stopped on an error; stop then.
                    if tx.send(buf).is_err() {
                        return;
                    }
                }
            });
        }
        // On an error `receivers` is dropped as this closure returns, before the scope joins
        // the threads: their next send fails and they stop instead of waiting forever.
        for block in 0..blocks {
            let chunk = receivers[block % threads].recv().map_err(|_| io::Error::other("formatting thread stopped"))?;
            out.write_all(&chunk)?;
        }
        Ok(())
    })
}

#[cfg(test)]
/// Formats every row of `bars`, handing `sink` chunks of about [`CHUNK`] bytes, in order.
fn format_rows(bars: &Bars, sink: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    format_range(bars, fraction_digits(bars.timestamps()), DEFAULT_STYLE, 0..bars.len(), sink)
}

/// Formats rows `range` of `bars` with `digits` fraction digits, handing `sink` chunks of
/// about [`CHUNK`] bytes, in order.
fn format_range(
    bars: &Bars,
    digits: usize,
    style: Style,
    range: std::ops::Range<usize>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + 1024);
    let extras: Vec<&[Option<f64>]> = bars.extras().iter().map(|e| e.values()).collect();
    let mut ts_writer = TimestampWriter::new(digits).utc_marker(style.utc_marker);
    let start = range.start;
    let rows = bars.timestamps()[range.clone()]
        .iter()
        .zip(&bars.open()[range.clone()])
        .zip(&bars.high()[range.clone()])
        .zip(&bars.low()[range.clone()])
        .zip(&bars.close()[range.clone()])
        .zip(&bars.volume()[range])
        .enumerate()
        .map(|(i, r)| (start + i, r));
    for (row, (((((&ts, &open), &high), &low), &close), &volume)) in rows {
        ts_writer.write(ts, &mut buf);
        for v in [open, high, low, close, volume] {
            buf.push(b',');
            write_f64(v, &mut buf);
        }
        for column in &extras {
            buf.push(b',');
            if let Some(Some(v)) = column.get(row) {
                write_f64(*v, &mut buf);
            }
        }
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            sink(&buf)?;
            buf.clear();
        }
    }
    if buf.is_empty() { Ok(()) } else { sink(&buf) }
}

/// [`encode_bars`] into memory.
pub fn encode_to_vec(bars: &Bars) -> Vec<u8> {
    encode_to_vec_styled(bars, DEFAULT_STYLE)
}

/// The whole encoding of `bars` in `style`, in memory.
pub(crate) fn encode_to_vec_styled(bars: &Bars, style: Style) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + bars.len() * (64 + 12 * bars.extras().len()));
    // Writing to a Vec cannot fail.
    let _ = encode_part(bars, 0..bars.len(), true, style, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use barvault_domain::ExtraColumn;

    #[test]
    fn writes_header_rows_and_missing_extras() {
        let bars = Bars::new(
            vec![0, 1_500_000_000],
            vec![100.0, 0.00000871],
            vec![101.5, 1e300],
            vec![-0.0, f64::NEG_INFINITY],
            vec![f64::NAN, f64::INFINITY],
            vec![1500.0, 0.5],
            vec![
                ExtraColumn::new("open_interest", vec![None, Some(7.0)]).unwrap(),
                ExtraColumn::new("adj_close", vec![Some(99.25), None]).unwrap(),
            ],
        )
        .unwrap();
        let text = String::from_utf8(encode_to_vec(&bars)).unwrap();
        assert_eq!(
            text,
            "timestamp,open,high,low,close,volume,adj_close,open_interest\n\
             1970-01-01 00:00:00.0Z,100.0,101.5,-0.0,NaN,1500.0,99.25,\n\
             1970-01-01 00:00:01.5Z,0.00000871,1e300,-inf,inf,0.5,,7.0\n"
        );
        let naive = String::from_utf8(encode_to_vec_styled(&bars, Style { utc_marker: false })).unwrap();
        assert_eq!(naive, text.replace("Z,", ","), "the naive format differs only by the marker");
    }

    #[test]
    fn pipelined_output_equals_the_sequential_one() {
        let n = PIPELINE_MIN_ROWS as i64 * 3 + 17;
        let ts: Vec<i64> = (0..n).map(|i| i * 60_000_000_000 + (i % 7) * 1_000_000).collect();
        let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 + 0.00000871).collect();
        let extra: Vec<Option<f64>> = (0..n).map(|i| (i % 3 != 0).then_some(i as f64 / 7.0)).collect();
        let bars = Bars::new(
            ts,
            v.clone(),
            v.clone(),
            v.clone(),
            v.clone(),
            v,
            vec![ExtraColumn::new("adj_close", extra).unwrap()],
        )
        .unwrap();
        let mut sequential = Vec::new();
        sequential.extend_from_slice(b"timestamp,open,high,low,close,volume,adj_close\n");
        format_rows(&bars, |c| {
            sequential.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(encode_to_vec(&bars), sequential);
        assert_eq!(crate::CsvCodec.decode_bytes(&sequential, None).unwrap().ts, bars.timestamps());
    }

    #[test]
    fn a_failing_writer_stops_the_pipeline_with_its_error() {
        let n = PIPELINE_MIN_ROWS * 2;
        let ts: Vec<i64> = (0..n as i64).collect();
        let v = vec![1.0; n];
        let bars = Bars::new(ts, v.clone(), v.clone(), v.clone(), v.clone(), v, vec![]).unwrap();
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 > 300_000 {
                    return Err(io::Error::from_raw_os_error(28));
                }
                self.0 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = encode_bars(&bars, &mut Full(0)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
    }

    /// Any split of the rows, pipelined or not, concatenates to the whole encoding, and
    /// the parts keep the fraction width of the whole (row 0 alone would need none).
    #[test]
    fn parts_concatenate_to_the_whole() {
        let n = PIPELINE_MIN_ROWS + BLOCK_ROWS + 5;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 60_000_000_000 + i64::from(i == 9) * 250_000_000).collect();
        let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 + 0.5).collect();
        let extra: Vec<Option<f64>> = (0..n).map(|i| (i % 2 == 0).then_some(i as f64)).collect();
        let bars =
            Bars::new(ts, v.clone(), v.clone(), v.clone(), v.clone(), v, vec![ExtraColumn::new("oi", extra).unwrap()])
                .unwrap();
        let whole = encode_to_vec(&bars);
        for k in [0, 1, 9, 10, 777, BLOCK_ROWS + 3, n - PIPELINE_MIN_ROWS, n - 1, n, n + 5] {
            let mut parts = Vec::new();
            encode_part(&bars, 0..k, true, DEFAULT_STYLE, &mut parts).unwrap();
            encode_part(&bars, k..n, false, DEFAULT_STYLE, &mut parts).unwrap();
            assert!(parts == whole, "split at {k}");
        }
        let mut one = Vec::new();
        encode_part(&bars, 0..1, false, DEFAULT_STYLE, &mut one).unwrap();
        assert_eq!(one, b"1970-01-01 00:00:00.00Z,0.5,0.5,0.5,0.5,0.5,0.0\n");
    }

    #[test]
    fn empty_bars_give_a_header_only() {
        assert_eq!(encode_to_vec(&Bars::empty()), b"timestamp,open,high,low,close,volume\n");
    }

    #[test]
    fn chunked_output_equals_one_buffer() {
        let n = 20_000;
        let ts: Vec<i64> = (0..n).map(|i| i * 60_000_000_000).collect();
        let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
        let bars = Bars::new(ts, v.clone(), v.clone(), v.clone(), v.clone(), v, vec![]).unwrap();
        struct Small(Vec<u8>, usize);
        impl Write for Small {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.1 += 1;
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Small(Vec::new(), 0);
        encode_bars(&bars, &mut w).unwrap();
        assert!(w.1 > 1, "output should arrive in several chunks");
        assert_eq!(w.0, encode_to_vec(&bars));
    }
}

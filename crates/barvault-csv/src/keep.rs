//! Which stored bytes of a CSV file the next version can keep.
//!
//! A CSV file is a header and one independent line per row, so a next version that starts
//! with the stored version's first `k` rows can keep the file's bytes up to the end of
//! line `k`. Three things must all hold, or nothing is kept and the file is encoded whole:
//! - the file starts with the header this codec writes for the new rows' columns;
//! - it ends with a line end, so counting line ends back from the end finds line `k`;
//! - the line that ends there is, byte for byte, this codec's encoding of row `k - 1` of
//!   the new version. Timestamps are unique, so this pins the row count, and it also
//!   catches a change of the timestamps' shared fraction width, which changes every line,
//!   and a file written by another encoder or style (`1500` beside `1500.0`, a naive
//!   timestamp beside one with `Z`): such a file is rewritten whole, in this codec's style.
//!
//! The caller vouches that those rows are value for value the stored ones; the store
//! vouches that the bytes are the file it read.

use std::io;

use barvault_domain::{Bars, MergePolicy, merge};
use barvault_ports::{CodecError, Continuation, Keep, KeptPrefix, StoredBytes};

use crate::encode::{Style, encode_part, header_line};

/// Bytes read at a time while counting line ends back from the end, at most.
const MAX_PIECE: usize = 256 * 1024;

/// The offset of the `n`-th `\n` (`n >= 1`) counted back from the end of `stored`.
fn newline_from_end(stored: &dyn StoredBytes, n: usize) -> io::Result<Option<u64>> {
    let mut remaining = n;
    let mut piece = 4096usize;
    let mut hi = stored.len();
    while hi > 0 && remaining > 0 {
        let lo = hi.saturating_sub(piece as u64);
        let chunk = stored.read(lo, usize::try_from(hi - lo).map_err(io::Error::other)?)?;
        for pos in memchr::memrchr_iter(b'\n', &chunk) {
            remaining -= 1;
            if remaining == 0 {
                return Ok(Some(lo + pos as u64));
            }
        }
        hi = lo;
        // Usually only the last few lines are wanted: start small, double up to the limit.
        piece = (piece * 2).min(MAX_PIECE);
    }
    Ok(None)
}

/// [`BarCodec::keepable`](barvault_ports::BarCodec::keepable) for CSV.
pub(crate) fn keepable(
    stored: &dyn StoredBytes,
    next: Continuation<'_>,
    keep: Keep,
    style: Style,
) -> Result<Option<KeptPrefix>, CodecError> {
    let k = keep.unchanged;
    // The last kept row is checked against its stored line, so it must be among the new rows.
    let Some(last) = k.checked_sub(1).and_then(|r| r.checked_sub(next.skipped)) else { return Ok(None) };
    let Some(after) = keep.stored_rows.checked_sub(k) else { return Ok(None) };
    let head = header_line(next.bars);
    let len = stored.len();
    if len < head.len() as u64 + 1 || *stored.read(0, head.len())? != head[..] {
        return Ok(None);
    }
    if *stored.read(len - 1, 1)? != b"\n"[..] {
        return Ok(None);
    }
    // One line per stored row after row k - 1, so its line ends at the line end that many
    // (plus one) from the end.
    let Some(end) = newline_from_end(stored, after + 1)? else { return Ok(None) };
    let mut line = Vec::new();
    encode_part(next.bars, last..last + 1, false, style, &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    let off = end + 1;
    let Some(start) = off.checked_sub(line.len() as u64 + 1).filter(|&s| s + 1 >= head.len() as u64) else {
        return Ok(None);
    };
    let found = stored.read(start, line.len() + 1)?;
    if found[0] != b'\n' || found[1..] != line[..] {
        return Ok(None);
    }
    Ok(Some(KeptPrefix { bytes: off, rows: k }))
}

/// [`BarCodec::encode_after`](barvault_ports::BarCodec::encode_after) for CSV: the lines
/// of the rows after the kept ones, as the whole encoding writes them.
pub(crate) fn encode_after(
    kept: KeptPrefix,
    next: Continuation<'_>,
    style: Style,
    out: &mut (dyn io::Write + Send),
) -> Result<(), CodecError> {
    let from = kept.rows.checked_sub(next.skipped).ok_or_else(|| {
        CodecError::Corrupt(format!("{} rows kept, fewer than the {} skipped", kept.rows, next.skipped))
    })?;
    encode_part(next.bars, from..next.bars.len(), false, style, out).map_err(CodecError::Io)
}

/// [`BarCodec::append_after`](barvault_ports::BarCodec::append_after) for CSV: the lines of
/// `bars` after a stored file that has this codec's header for their columns, ends in a
/// line end, and whose last line is, byte for byte, this codec's encoding of its row next
/// to `bars` (so the fraction width and the UTC marker are the stored file's; else `None`).
pub(crate) fn append_after(stored: &dyn StoredBytes, bars: &Bars, style: Style) -> Result<Option<Vec<u8>>, CodecError> {
    let head = header_line(bars);
    let len = stored.len();
    if bars.is_empty() || len < head.len() as u64 + 1 || *stored.read(0, head.len())? != head[..] {
        return Ok(None);
    }
    if *stored.read(len - 1, 1)? != b"\n"[..] {
        return Ok(None);
    }
    // The last line starts after the line end before the file's last one (the header's
    // at the latest: a file without rows has nothing to continue).
    let Some(before) = newline_from_end(stored, 2)? else { return Ok(None) };
    let start = before + 1;
    if start < head.len() as u64 {
        return Ok(None);
    }
    let line = stored.read(start, usize::try_from(len - start).map_err(io::Error::other)?)?;
    let mut text = head.clone();
    text.extend_from_slice(&line);
    let raw = crate::decode::decode_slice(&text, None)?;
    let (last, _) = raw.into_bars(MergePolicy::KeepLast).map_err(CodecError::Domain)?;
    match (last.last_timestamp(), bars.first_timestamp()) {
        (Some(a), Some(b)) if a < b && last.len() == 1 => {}
        _ => return Ok(None),
    }
    let (both, _) = merge(&last, bars, MergePolicy::KeepLast).map_err(CodecError::Domain)?;
    let mut again = Vec::with_capacity(line.len());
    encode_part(&both, 0..1, false, style, &mut again)?;
    if again[..] != line[..] {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bars.len() * line.len() + 64);
    encode_part(&both, 1..both.len(), false, style, &mut out)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use barvault_domain::{Bars, Instrument, Period, SeriesKey};
    use barvault_ports::{BarCodec, Continuation, Keep};

    use crate::CsvCodec;

    fn daily(n: i64) -> Bars {
        let day = 86_400_000_000_000;
        let p: Vec<f64> = (0..n).map(|i| 100.0 + i as f64).collect();
        Bars::new(
            (0..n).map(|i| i * day).collect(),
            p.clone(),
            p.clone(),
            p.clone(),
            p,
            vec![1500.0; n as usize],
            vec![],
        )
        .unwrap()
    }

    /// The next version is the stored one's rows plus one: a file of this codec's style keeps
    /// its bytes, a file of the other style (naive beside `Z` timestamps) keeps nothing and
    /// is rewritten whole, so a file never mixes the two.
    #[test]
    fn only_a_file_of_the_codecs_own_style_is_kept() {
        let series = SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1);
        let (stored, next) = (daily(5), daily(6));
        let keep = Keep { stored_rows: 5, unchanged: 5 };
        for (writer, reader, kept) in
            [(true, true, true), (false, false, true), (false, true, false), (true, false, false)]
        {
            let bytes = CsvCodec::with_utc_marker(writer).encode_to_vec(&stored);
            let codec = CsvCodec::with_utc_marker(reader);
            let cont = || Continuation { bars: &next, skipped: 0, series: &series };
            let prefix = codec.keepable(&bytes, cont(), keep).unwrap();
            assert_eq!(prefix.is_some(), kept, "written with Z: {writer}, kept by Z: {reader}");
            if let Some(prefix) = prefix {
                assert_eq!(prefix.bytes, bytes.len() as u64);
                let mut whole = bytes[..prefix.bytes as usize].to_vec();
                codec.encode_after(&bytes, prefix, cont(), &mut whole).unwrap();
                assert_eq!(whole, codec.encode_to_vec(&next));
            }
        }
    }

    /// Appending gives exactly the bytes of the whole encoding, for a file of the codec's
    /// own style only, and only for rows after the last stored one.
    #[test]
    fn appended_lines_make_the_whole_encoding_of_the_codecs_own_style_only() {
        let (stored, next) = (daily(5), daily(8));
        let new = next.slice_rows(5, 8);
        for (writer, reader, appended) in
            [(true, true, true), (false, false, true), (false, true, false), (true, false, false)]
        {
            let bytes = CsvCodec::with_utc_marker(writer).encode_to_vec(&stored);
            let codec = CsvCodec::with_utc_marker(reader);
            let tail = codec.append_after(&bytes, &new).unwrap();
            assert_eq!(tail.is_some(), appended, "written with Z: {writer}, appended by Z: {reader}");
            if let Some(tail) = tail {
                assert_eq!([bytes.clone(), tail].concat(), codec.encode_to_vec(&next));
            }
        }
        let codec = CsvCodec::new();
        let bytes = codec.encode_to_vec(&stored);
        // Not after the last row; no rows; a file without rows or without its last line end.
        assert!(codec.append_after(&bytes, &next.slice_rows(4, 6)).unwrap().is_none());
        assert!(codec.append_after(&bytes, &Bars::empty()).unwrap().is_none());
        assert!(codec.append_after(&codec.encode_to_vec(&Bars::empty()), &new).unwrap().is_none());
        assert!(codec.append_after(&&bytes[..bytes.len() - 1], &new).unwrap().is_none());
        // A sub-second new row would widen every stored timestamp: the file is written whole.
        let ms = 5 * 86_400_000_000_000 + 1_000_000;
        let fine = Bars::new(vec![ms], vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![]).unwrap();
        assert!(codec.append_after(&bytes, &fine).unwrap().is_none());
    }
}

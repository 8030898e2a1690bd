//! Bars -> barvault CSV bytes.

use std::io::{self, Write};

use barvault_domain::{Bars, CORE_COLUMNS};

use crate::number::write_f64;
use crate::timestamp::{TimestampWriter, fraction_digits};

/// Bytes gathered before each `write_all`: large enough to amortize the call, small enough
/// to stay in cache.
const CHUNK: usize = 256 * 1024;

/// Writes `bars` as barvault CSV: the core header, then the extras in `Bars` order.
/// Timestamps share one fraction width, the narrowest that is exact for every row.
pub fn encode_bars<W: Write + ?Sized>(bars: &Bars, out: &mut W) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + 1024);
    buf.extend_from_slice(CORE_COLUMNS.join(",").as_bytes());
    for extra in bars.extras() {
        buf.push(b',');
        buf.extend_from_slice(extra.name().as_bytes());
    }
    buf.push(b'\n');

    let extras: Vec<&[Option<f64>]> = bars.extras().iter().map(|e| e.values()).collect();
    let mut ts_writer = TimestampWriter::new(fraction_digits(bars.timestamps()));
    let rows = bars
        .timestamps()
        .iter()
        .zip(bars.open())
        .zip(bars.high())
        .zip(bars.low())
        .zip(bars.close())
        .zip(bars.volume())
        .enumerate();
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
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// [`encode_bars`] into memory.
pub fn encode_to_vec(bars: &Bars) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + bars.len() * (60 + 12 * bars.extras().len()));
    // Writing to a Vec cannot fail.
    let _ = encode_bars(bars, &mut out);
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
             1970-01-01 00:00:00.0,100,101.5,-0,NaN,1500,99.25,\n\
             1970-01-01 00:00:01.5,0.00000871,1e300,-inf,inf,0.5,,7\n"
        );
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

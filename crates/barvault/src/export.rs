//! JSON lines, one of `export`'s formats: one object per bar, its keys in the CSV's column
//! order (`timestamp`, `open`, `high`, `low`, `close`, `volume`, then the extras by name),
//! so that a reader that keeps key order (pandas, polars, jq) gets the columns it would get
//! from the CSV.

use std::io::Write;

use barvault_domain::{Bars, format_timestamp};
use barvault_ports::CodecError;

/// Writes `bars` as JSON lines: `{"timestamp":"2024-01-02T00:00:00Z","open":1.5,…}`.
/// Numbers are the shortest text that reads back to the same double (`2.0`, `1e300`); a
/// NaN (a missing volume) is `null`, as is a missing extra value; the infinities, which
/// JSON cannot hold (only stored with validation off), are the strings `"inf"`, `"-inf"`.
pub(crate) fn write_json_lines(bars: &Bars, w: &mut (dyn Write + Send)) -> Result<(), CodecError> {
    let names = bars.column_names();
    let core = [bars.open(), bars.high(), bars.low(), bars.close(), bars.volume()];
    let mut line = Vec::with_capacity(256);
    for i in 0..bars.len() {
        line.clear();
        line.extend_from_slice(b"{\"timestamp\":\"");
        line.extend_from_slice(format_timestamp(bars.timestamps()[i]).as_bytes());
        line.push(b'"');
        let values = core.iter().map(|col| Some(col[i])).chain(bars.extras().iter().map(|e| e.values()[i]));
        for (name, value) in names.iter().skip(1).zip(values) {
            line.push(b',');
            serde_json::to_writer(&mut line, name).map_err(|e| CodecError::Io(std::io::Error::other(e)))?;
            line.push(b':');
            push_number(value, &mut line);
        }
        line.extend_from_slice(b"}\n");
        w.write_all(&line)?;
    }
    Ok(())
}

fn push_number(value: Option<f64>, out: &mut Vec<u8>) {
    match value {
        None => out.extend_from_slice(b"null"),
        Some(v) if v.is_nan() => out.extend_from_slice(b"null"),
        Some(v) if v.is_infinite() => out.extend_from_slice(if v > 0.0 { b"\"inf\"" } else { b"\"-inf\"" }),
        Some(v) => {
            let mut buf = ryu::Buffer::new();
            out.extend_from_slice(buf.format_finite(v).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barvault_domain::ExtraColumn;

    #[test]
    fn keys_follow_the_csv_columns_and_values_round_trip() {
        let bars = Bars::new(
            vec![0, 86_400_000_000_000],
            vec![3602.0, 0.1],
            vec![3603.0, 1e300],
            vec![-0.0, 0.1],
            vec![3599.5, f64::INFINITY],
            vec![5699.0, f64::NAN],
            vec![ExtraColumn::new("adj_close", vec![Some(1.25), None]).unwrap()],
        )
        .unwrap();
        let mut out = Vec::new();
        write_json_lines(&bars, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"timestamp\":\"1970-01-01T00:00:00Z\",\"open\":3602.0,\"high\":3603.0,\"low\":-0.0,\"close\":3599.5,\
             \"volume\":5699.0,\"adj_close\":1.25}\n\
             {\"timestamp\":\"1970-01-02T00:00:00Z\",\"open\":0.1,\"high\":1e300,\"low\":0.1,\"close\":\"inf\",\
             \"volume\":null,\"adj_close\":null}\n"
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.is_object());
        }
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["low"].as_f64().map(f64::to_bits), Some((-0.0f64).to_bits()));
    }
}

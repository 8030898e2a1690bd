//! A small exact text codec for the tests (the real CSV and Parquet codecs live in other
//! crates): floats as their bit patterns in hex, and an `end {rows}` trailer so that a
//! truncated file can never parse.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;

use barvault_domain::{Bars, ExtraColumn, Instrument, Period, RawBars, SeriesKey, TimeRange};
use barvault_fs::FileStore;
use barvault_ports::{BarCodec, CodecError, CodecInput, Decoded, Rows};

#[derive(Debug, Clone, Copy, Default)]
pub struct TextCodec;

fn hex(v: f64) -> String {
    format!("{:016x}", v.to_bits())
}

fn unhex(line: u64, s: &str) -> Result<f64, CodecError> {
    u64::from_str_radix(s, 16)
        .map(f64::from_bits)
        .map_err(|e| CodecError::parse(Some(line), None, Some(s), format!("bad float: {e}")))
}

impl BarCodec for TextCodec {
    fn format(&self) -> &'static str {
        "bvt"
    }

    fn encode(&self, bars: &Bars, _series: &SeriesKey, out: &mut (dyn Write + Send)) -> Result<(), CodecError> {
        let names: Vec<&str> = bars.extras().iter().map(|e| e.name()).collect();
        writeln!(out, "bvt1 {}", names.join(" "))?;
        for i in 0..bars.len() {
            write!(
                out,
                "{} {} {} {} {} {}",
                bars.timestamps()[i],
                hex(bars.open()[i]),
                hex(bars.high()[i]),
                hex(bars.low()[i]),
                hex(bars.close()[i]),
                hex(bars.volume()[i])
            )?;
            for e in bars.extras() {
                match e.values()[i] {
                    Some(v) => write!(out, " {}", hex(v))?,
                    None => write!(out, " -")?,
                }
            }
            writeln!(out)?;
        }
        writeln!(out, "end {}", bars.len())?;
        Ok(())
    }

    fn decode(&self, input: CodecInput<'_>, rows: Rows) -> Result<Decoded, CodecError> {
        let range = match rows {
            Rows::Range(r) => Some(r),
            _ => None,
        };
        self.decode_range(input, range).map(Decoded::whole)
    }
}

impl TextCodec {
    fn decode_range(&self, input: CodecInput<'_>, range: Option<TimeRange>) -> Result<RawBars, CodecError> {
        let text = match input {
            CodecInput::File(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s)?;
                s
            }
            CodecInput::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|e| CodecError::Corrupt(e.to_string()))?,
            CodecInput::Shared(b) => String::from_utf8(b.to_vec()).map_err(|e| CodecError::Corrupt(e.to_string()))?,
        };
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| CodecError::Corrupt("empty file".into()))?;
        let names: Vec<&str> = header
            .strip_prefix("bvt1")
            .ok_or_else(|| CodecError::parse(Some(1), None, Some(header), "not a bvt1 file"))?
            .split_whitespace()
            .collect();
        let mut raw = RawBars::default();
        let mut extras: Vec<Vec<Option<f64>>> = vec![Vec::new(); names.len()];
        let mut finished = None;
        for (i, line) in lines.enumerate() {
            let no = i as u64 + 2;
            if finished.is_some() {
                return Err(CodecError::parse(Some(no), None, Some(line), "data after the trailer"));
            }
            if let Some(n) = line.strip_prefix("end ") {
                finished =
                    Some(n.parse::<usize>().map_err(|e| CodecError::parse(Some(no), None, Some(n), e.to_string()))?);
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 6 + names.len() {
                return Err(CodecError::parse(Some(no), None, Some(line), "wrong field count"));
            }
            let ts: i64 =
                f[0].parse().map_err(|_| CodecError::parse(Some(no), Some("timestamp"), Some(f[0]), "bad"))?;
            let (o, h, l, c, v) =
                (unhex(no, f[1])?, unhex(no, f[2])?, unhex(no, f[3])?, unhex(no, f[4])?, unhex(no, f[5])?);
            let mut row_extras = Vec::with_capacity(names.len());
            for s in &f[6..] {
                row_extras.push(if *s == "-" { None } else { Some(unhex(no, s)?) });
            }
            if range.is_none_or(|r| r.contains(ts)) {
                raw.push(ts, o, h, l, c, v);
                for (col, v) in extras.iter_mut().zip(row_extras) {
                    col.push(v);
                }
            }
        }
        match finished {
            None => return Err(CodecError::Corrupt("truncated: no trailer".into())),
            Some(n) if range.is_none() && n != raw.len() => {
                return Err(CodecError::Corrupt(format!("trailer says {n} rows, found {}", raw.len())));
            }
            Some(_) => {}
        }
        raw.extras = names
            .iter()
            .zip(extras)
            .map(|(n, v)| ExtraColumn::new(n, v))
            .collect::<Result<_, _>>()
            .map_err(CodecError::Domain)?;
        Ok(raw)
    }
}

pub fn stock(symbol: &str, period: Period) -> SeriesKey {
    SeriesKey::new(Instrument::stock(symbol).expect("test symbol"), period)
}

/// Bars with timestamps `ts` whose close is `close(ts)` (other prices follow it).
pub fn bars_with(ts: &[i64], close: impl Fn(i64) -> f64) -> Bars {
    let c: Vec<f64> = ts.iter().map(|&t| close(t)).collect();
    Bars::new(
        ts.to_vec(),
        c.clone(),
        c.iter().map(|x| x + 1.0).collect(),
        c.iter().map(|x| x - 1.0).collect(),
        c.clone(),
        ts.iter().map(|&t| t as f64).collect(),
        vec![],
    )
    .expect("valid test bars")
}

pub fn store(base: &Path) -> FileStore<TextCodec> {
    FileStore::new(base, TextCodec).expect("store")
}

/// Every file name in `dir` (not recursive).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

//! The bound on the length of a line (`source::MAX_LINE`): a longer line is refused as a
//! parse error naming its line and the length seen, from a slice and from a reader, on one
//! thread or several, also after a quoted field, and a line without an end is refused
//! without reading on.

use std::io::{self, Read};

use super::source::MAX_LINE;
use super::*;

/// Every way of decoding `input` that these tests compare: (name, outcome).
fn every_way(input: &[u8]) -> Vec<(String, Result<RawBars, CodecError>)> {
    let mut out = Vec::new();
    out.push(("slice, default".to_string(), decode_slice(input, None)));
    out.push(("reader, default".to_string(), decode_reader(input, input.len(), None)));
    for chunk in [4096, CHUNK, 3 * CHUNK] {
        for workers in [1, 2] {
            let t = Tuning { chunk, workers, parallel_min: 0 };
            out.push((format!("slice, chunk {chunk}, {workers} workers"), decode_slice_with(input, None, t)));
            out.push((format!("reader, chunk {chunk}, {workers} workers"), decode_reader_with(input, 0, None, t)));
        }
    }
    out
}

/// The line and reason of a parse error.
fn refusal(r: &Result<RawBars, CodecError>) -> Option<(u64, String)> {
    match r {
        Err(CodecError::Parse { line: Some(line), reason, .. }) => Some((*line, reason.clone())),
        _ => None,
    }
}

/// `input` is refused every way naming `line`, a line of `length` bytes: by that length, or
/// by the more than `MAX_LINE` bytes seen of it when the rest was not read.
fn assert_refused_every_way(input: &[u8], line: u64, length: usize) {
    for (way, r) in every_way(input) {
        let (got, reason) = refusal(&r).unwrap_or_else(|| panic!("{way}: {r:?}"));
        assert_eq!(got, line, "{way}: {reason}");
        let rest = reason.strip_prefix("line of ").unwrap_or_default();
        let (at_least, rest) = rest.strip_prefix("at least ").map_or((false, rest), |r| (true, r));
        let seen: usize = rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let fits = if at_least { seen > MAX_LINE && seen <= length } else { seen == length };
        assert!(fits && reason.ends_with(": a line may have at most 1048576 bytes (1 MiB)"), "{way}: {reason}");
    }
}

fn rows(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("2024-01-02 00:{:02}:00,{i},{i},{i},{i},{i}\n", i % 60)).collect()
}

const HEADER: &str = "timestamp,open,high,low,close,volume";

#[test]
fn a_line_of_the_bound_is_read_and_one_byte_more_is_refused_naming_its_line() {
    // The spaces inside a header name fold into one `_`: `a_b`, a valid extra column.
    let header = |len: usize| {
        let prefix = format!("{HEADER},a");
        format!("{prefix}{}b\n", " ".repeat(len - prefix.len() - 1))
    };
    let ok = format!("{}{}", header(MAX_LINE), rows(0, 3).replace('\n', ",1\n"));
    for (way, r) in every_way(ok.as_bytes()) {
        assert_eq!(r.map(|b| b.len()).ok(), Some(3), "{way}");
    }
    let long = format!("{}{}", header(MAX_LINE + 1), rows(0, 3).replace('\n', ",1\n"));
    assert_refused_every_way(long.as_bytes(), 1, MAX_LINE + 1);
}

#[test]
fn a_long_data_line_is_refused_with_its_line_number_after_many_pieces() {
    // About 6 MiB of rows before and after it, so that readers with pieces of 4 KiB and
    // 1 MiB meet it in the middle of their pieces, on one thread and on two.
    let before = rows(0, 120_000);
    let input = format!("{HEADER}\n{before}{}\n{}", "7".repeat(MAX_LINE + 10), rows(0, 120_000));
    assert_refused_every_way(input.as_bytes(), 120_002, MAX_LINE + 10);
}

#[test]
fn a_long_line_after_a_quoted_field_is_refused_naming_its_line() {
    let input = format!(
        "\"timestamp\",open,high,low,close,volume\n{}{}\n{}",
        rows(0, 10),
        "x".repeat(2 * MAX_LINE),
        rows(10, 10)
    );
    assert_refused_every_way(input.as_bytes(), 12, 2 * MAX_LINE);
    // A quote late in a large input: the pieces from it on go to csv's reader.
    let input =
        format!("{HEADER}\n{}2024-01-03 00:00:00,\"1\",1,1,1,1\n{}\n", rows(0, 100_000), "x".repeat(MAX_LINE + 1));
    assert_refused_every_way(input.as_bytes(), 100_003, MAX_LINE + 1);
}

/// A reader that never ends, counting the bytes it gives.
struct Endless<'a> {
    head: &'a [u8],
    given: usize,
}

impl Read for Endless<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.head.get(self.given + i).copied().unwrap_or(b'x');
        }
        self.given += n;
        Ok(n)
    }
}

#[test]
fn a_line_without_an_end_is_refused_without_reading_on() {
    let plain = format!("{HEADER}\n{}", rows(0, 5));
    let quoted = format!("\"timestamp\",open,high,low,close,volume\n{}", rows(0, 5));
    for (head, line) in [("", 1), (plain.as_str(), 7), (quoted.as_str(), 7)] {
        for t in [Tuning::default(), Tuning { chunk: 4096, workers: 2, parallel_min: 0 }] {
            let mut reader = Endless { head: head.as_bytes(), given: 0 };
            let r = decode_reader_with(&mut reader, 0, None, t);
            let (got, reason) = refusal(&r).unwrap_or_else(|| panic!("{r:?}"));
            assert_eq!(got, line, "{reason}");
            assert!(reason.starts_with("line of at least ") && reason.contains("the rest is not read"), "{reason}");
            // At most a few reads past the bound (one piece ahead per thread).
            assert!(reader.given <= 4 * MAX_LINE + 8 * t.chunk, "{} bytes read", reader.given);
        }
    }
}

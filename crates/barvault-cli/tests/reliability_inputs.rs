//! Hostile inputs through the real binary: every file of the corpus in `tests/data/bad/`,
//! plus a few built at test time (a 10 MB field and a 1 MB one, a million columns, Parquet files with the
//! wrong schema or column types), is imported into a store that already holds a good
//! series. Each must be refused with exit code 1 and one `error:` line naming the file, the
//! line or row (group) where that applies, and the reason, and the store must be byte
//! for byte what it was. `header_only.csv` is the one accepted input: zero bars, nothing
//! written (docs/RELIABILITY.md).

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::{bv, code, err, ok, out, row, snapshot, write_batch};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/bad")
}

/// The reason each corpus file must be refused for (a fragment of the error line).
const REASONS: &[(&str, &str)] = &[
    ("bad_magic.parquet", "not a readable Parquet file"),
    ("bad_utc_offset.csv", "invalid UTC offset"),
    ("binary_garbage.csv", "binary data, not CSV text"),
    ("binary_garbage.parquet", "not a readable Parquet file"),
    ("close_above_high.csv", "high < max(open, close)"),
    ("corrupted_pages.parquet", "Parquet"),
    ("csv_named_parquet.parquet", "not a readable Parquet file"),
    ("duplicate_headers.csv", "duplicate column"),
    ("empty.csv", "empty input"),
    ("empty.parquet", "too small"),
    ("empty_price_cell.csv", "empty value in a required column"),
    ("empty_timestamp_cell.csv", "empty timestamp"),
    ("extra_field.csv", "expected 6 fields, found 7"),
    ("high_below_low.csv", "high < low"),
    ("impossible_date.csv", "invalid day of month"),
    ("inf_price.csv", "finite"),
    ("invalid_utf8.csv", "invalid UTF-8 at offset"),
    ("invalid_utf8_header.csv", "invalid UTF-8 at offset"),
    ("missing_close_column.csv", "missing close column"),
    ("missing_timestamp_column.csv", "missing timestamp column"),
    ("mixed_date_formats.csv", "not a timestamp"),
    ("nan_price.csv", "finite"),
    ("neg_inf_close.csv", "finite"),
    ("negative_volume.csv", "volume must be finite and >= 0"),
    ("non_numeric_price.csv", "not a number"),
    ("non_numeric_volume.csv", "not a number"),
    ("nul_bytes.csv", "a NUL byte"),
    ("only_newlines.csv", "empty input"),
    ("overflow_to_inf.csv", "finite"),
    ("semicolon_delimited.csv", "missing timestamp column"),
    ("timestamp_after_2262.csv", "outside the range"),
    ("timestamp_before_1677.csv", "outside the range"),
    ("truncated.parquet", "not a readable Parquet file"),
    ("truncated_footer.parquet", "not a readable Parquet file"),
    ("truncated_mid_field.csv", "expected 6 fields, found 3"),
    ("truncated_row.csv", "expected 6 fields, found 5"),
    ("unknown_header.csv", "missing timestamp column"),
    ("unparseable_timestamp.csv", "not a timestamp"),
    ("unterminated_quote.csv", "expected 6 fields"),
    ("utf16.csv", "UTF-16 text"),
];

/// Inputs the store accepts as "no bars" (documented in docs/RELIABILITY.md).
const ACCEPTED_EMPTY: &[&str] = &["header_only.csv"];

fn import(store: &Path, file: &Path, symbol: &str) -> std::process::Output {
    bv(store, &["import", "--type", "stock", "--symbol", symbol, "--period", "1m", file.to_str().unwrap()])
}

/// The store with one good series, and its snapshot.
fn good_store(tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    let good = tmp.join("good.csv");
    write_batch(&good, &(0..300).map(|m| (m, row(1, m))).collect::<Vec<_>>());
    ok(import(&store, &good, "GOOD"));
    store
}

/// Checks a refusal: exit 1, one error line with the file name, a location and the reason.
#[track_caller]
fn assert_refused(o: &std::process::Output, file: &Path, reason: &str) {
    let name = file.file_name().unwrap().to_str().unwrap();
    let e = err(o);
    assert_eq!(code(o), 1, "{name}: exit {} (stdout {} stderr {e})", code(o), out(o));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "{name}: expected one error line, got {e}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{name}: {line}");
    assert!(line.len() < 2000, "{name}: error line of {} bytes", line.len());
    for bad in ["panicked", "backtrace"] {
        assert!(!line.contains(bad), "{name}: {line}");
    }
    assert!(line.contains(name), "{name}: the error does not name the file: {line}");
    // Where: `file:LINE:` for a CSV problem at a line, `row N` for a bar that breaks a rule,
    // a row group or the file itself for Parquet damage.
    let at_line = line.split(&format!("{name}:")).nth(1).is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let located = at_line || line.contains(" row ") || line.contains("row group") || name.ends_with(".parquet");
    assert!(located, "{name}: the error names no line or row: {line}");
    assert!(line.contains(reason), "{name}: the error does not give the reason {reason:?}: {line}");
}

fn parquet_file(path: &Path, fields: Vec<Field>, columns: Vec<ArrayRef>) {
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Inputs too big (or needing a Parquet writer) to keep in the repository, with their reason.
fn generated(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let header = "timestamp,open,high,low,close,volume\n";
    let mut out = Vec::new();

    // A 10 MB single field, and one of a million digits (its line within the 1 MiB bound).
    for (name, len, reason) in
        [("ten_mb_field.csv", 10 << 20, "a line may have at most"), ("million_digit_field.csv", 1_000_000, "finite")]
    {
        let p = dir.join(name);
        let mut s = String::from(header);
        s.push_str("2024-01-01 00:00:00,");
        s.push_str(&"9".repeat(len));
        s.push_str(",11,9,10.5,100\n");
        std::fs::write(&p, s).unwrap();
        out.push((p, reason));
    }

    // A 10 MB single field of text, quoted, and one of a million characters.
    for (name, len, reason) in [
        ("ten_mb_text_field.csv", 10 << 20, "a line may have at most"),
        ("million_char_text_field.csv", 1_000_000, "not a number"),
    ] {
        let p = dir.join(name);
        let mut s = String::from(header);
        s.push_str("2024-01-01 00:00:00,\"");
        s.push_str(&"x".repeat(len));
        s.push_str("\",11,9,10.5,100\n");
        std::fs::write(&p, s).unwrap();
        out.push((p, reason));
    }

    // A million columns: the bar columns plus 999,994 extras, one short row.
    let p = dir.join("million_columns.csv");
    let mut s = String::from("timestamp,open,high,low,close,volume");
    for i in 6..1_000_000 {
        s.push_str(&format!(",x{i}"));
    }
    s.push_str("\n2024-01-01 00:00:00,10,11,9,10.5,100\n");
    std::fs::write(&p, s).unwrap();
    out.push((p, "at most"));

    // 5,000 columns with a full row: well-formed, but far wider than any bar series.
    let p = dir.join("wide_full_row.csv");
    let mut s = String::from("timestamp,open,high,low,close,volume");
    for i in 6..5000 {
        s.push_str(&format!(",x{i}"));
    }
    s.push_str("\n2024-01-01 00:00:00,10,11,9,10.5,100");
    s.push_str(&",1".repeat(5000 - 6));
    s.push('\n');
    std::fs::write(&p, s).unwrap();
    out.push((p, "at most"));

    // Parquet with a schema that is not bars at all.
    let p = dir.join("wrong_schema.parquet");
    parquet_file(
        &p,
        vec![Field::new("date", DataType::Utf8, false), Field::new("price", DataType::Float64, false)],
        vec![
            Arc::new(StringArray::from(vec!["2024-01-01", "2024-01-02"])) as ArrayRef,
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    );
    out.push((p, "timestamp"));

    // Parquet with the right names but the timestamp stored as text and no volume.
    let p = dir.join("wrong_types.parquet");
    let mut fields = vec![Field::new("timestamp", DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["2024-01-01 00:00:00"]))];
    for name in ["open", "high", "low", "close"] {
        fields.push(Field::new(name, DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from(vec![10.0])));
    }
    parquet_file(&p, fields, cols);
    out.push((p, "timestamp"));
    out
}

#[test]
fn every_hostile_input_is_refused_with_its_reason_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = good_store(tmp.path());
    let before = snapshot(&store);
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") || n.ends_with(".parquet"))
        .collect();
    names.sort();
    for n in &names {
        if ACCEPTED_EMPTY.contains(&n.as_str()) {
            continue;
        }
        let reason = REASONS.iter().find(|(f, _)| f == n).map(|(_, r)| *r);
        let reason = reason.unwrap_or_else(|| panic!("{n}: a corpus file without an expected reason in REASONS"));
        files.push((corpus_dir().join(n), reason));
    }
    assert!(files.len() >= 30, "the corpus has only {} refused files", files.len());
    let gen_dir = tmp.path().join("generated");
    std::fs::create_dir_all(&gen_dir).unwrap();
    files.extend(generated(&gen_dir));

    let mut refused = 0;
    for (file, reason) in &files {
        // Into the existing series, and into a series that does not exist yet.
        for symbol in ["GOOD", "FRESH"] {
            let o = import(&store, file, symbol);
            assert_refused(&o, file, reason);
            assert!(snapshot(&store) == before, "{}: the store changed (symbol {symbol})", file.display());
            refused += 1;
        }
    }
    // Accepted as "no bars": exit 0, nothing written, the store byte-identical, verify clean.
    for n in ACCEPTED_EMPTY {
        for symbol in ["GOOD", "FRESH"] {
            let o = ok(import(&store, &corpus_dir().join(n), symbol));
            assert!(out(&o).contains("nothing written") || out(&o).contains("added 0"), "{}", out(&o));
            assert!(snapshot(&store) == before, "{n}: the store changed (symbol {symbol})");
        }
    }
    ok(bv(&store, &["verify", "--all", "--deep"]));
    println!(
        "reliability_inputs: {} hostile inputs ({} corpus + {} generated) refused {refused} times, store byte-identical after each; {} accepted as empty",
        files.len(),
        names.len() - ACCEPTED_EMPTY.len(),
        files.len() + ACCEPTED_EMPTY.len() - names.len(),
        ACCEPTED_EMPTY.len()
    );
}

/// `--on-invalid drop` leaves bad bars out but never lets one in, and a file that fails to
/// parse is still refused whole.
#[test]
fn drop_policy_keeps_invalid_bars_out() {
    let tmp = tempfile::tempdir().unwrap();
    let store = good_store(tmp.path());
    let good_before = common::export(&store, "stock", "GOOD", "1m").unwrap();
    for n in ["nan_price.csv", "high_below_low.csv", "negative_volume.csv", "inf_price.csv"] {
        let f = corpus_dir().join(n);
        let o = ok(bv(
            &store,
            &[
                "import",
                "--type",
                "stock",
                "--symbol",
                "DROP",
                "--period",
                "1m",
                "--on-invalid",
                "drop",
                f.to_str().unwrap(),
            ],
        ));
        assert!(out(&o).contains("dropped 1") || out(&o).contains("1 dropped"), "{n}: {}", out(&o));
        let served = common::export(&store, "stock", "DROP", "1m").unwrap();
        for r in served.values() {
            assert!(r.iter().all(|v| v.is_finite()) && r[1] >= r[2] && r[4] >= 0.0, "{n}: invalid bar stored {r:?}");
        }
    }
    let before = snapshot(&store);
    let f = corpus_dir().join("truncated_row.csv");
    let o = bv(
        &store,
        &[
            "import",
            "--type",
            "stock",
            "--symbol",
            "GOOD",
            "--period",
            "1m",
            "--on-invalid",
            "drop",
            f.to_str().unwrap(),
        ],
    );
    assert_refused(&o, &f, "expected 6 fields");
    assert!(snapshot(&store) == before);
    assert!(common::export(&store, "stock", "GOOD", "1m").unwrap() == good_before);
    ok(bv(&store, &["verify", "--all"]));
}

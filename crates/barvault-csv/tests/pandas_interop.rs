//! pandas must read a barvault CSV with a plain `read_csv(index_col='timestamp',
//! parse_dates=True)` and get every value bit-for-bit. Needs `BARVAULT_PYTHON` (a Python
//! with pandas); skipped locally without it, an error in CI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use barvault_csv::{encode_to_vec, parse_timestamp};
use barvault_domain::{Bars, ExtraColumn};

fn python() -> Option<String> {
    match std::env::var("BARVAULT_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BARVAULT_PYTHON is not set: CI must point it at a Python with pandas installed")
        }
        _ => {
            // Straight to the process's stderr, past the test harness's capture, so that a
            // local `cargo test` says what it did not run instead of reporting it passed.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED pandas interop (barvault-csv): BARVAULT_PYTHON is not set; point it at a Python \
                 with pandas to run it (CI does: .ci/run)"
            );
            None
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pandas_check.py")
}

fn tricky_bars() -> Bars {
    let ts = |s: &str| parse_timestamp(s.as_bytes()).unwrap();
    Bars::new(
        vec![
            ts("1969-12-31 23:59:59.5"),
            ts("2024-01-02 00:00:00"),
            ts("2024-01-02 00:00:00.000000001"),
            ts("2262-04-11 23:47:16.854775807"),
        ],
        vec![0.00000871, 1.0, 5e-324, 20.559999],
        vec![1e300, 2.0, f64::NEG_INFINITY, 1.0 / 3.0],
        vec![-0.0, 3.5, f64::INFINITY, 0.1 + 0.2],
        vec![0.1, f64::NAN, f64::MAX, -1e-300],
        vec![1500.0, 0.0, 7.0, 9_007_199_254_740_993.0],
        vec![
            ExtraColumn::new("adj_close", vec![None, Some(1.25), None, Some(2.2250738585072014e-308)]).unwrap(),
            ExtraColumn::new("open_interest", vec![Some(0.0), Some(12.0), Some(1e22), Some(-0.5)]).unwrap(),
        ],
    )
    .unwrap()
}

/// The expected values as JSON: f64 bit patterns as decimal strings, missing as null.
fn expected_json(bars: &Bars) -> String {
    let col = |values: Vec<Option<f64>>| {
        let cells: Vec<String> =
            values.iter().map(|v| v.map_or("null".to_string(), |v| format!("\"{}\"", v.to_bits()))).collect();
        format!("[{}]", cells.join(","))
    };
    let mut columns = vec![
        ("open", col(bars.open().iter().copied().map(Some).collect())),
        ("high", col(bars.high().iter().copied().map(Some).collect())),
        ("low", col(bars.low().iter().copied().map(Some).collect())),
        ("close", col(bars.close().iter().copied().map(Some).collect())),
        ("volume", col(bars.volume().iter().copied().map(Some).collect())),
    ];
    for e in bars.extras() {
        columns.push((e.name(), col(e.values().to_vec())));
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let values: Vec<String> = columns.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
    let index: Vec<String> = bars.timestamps().iter().map(i64::to_string).collect();
    format!(
        "{{\"columns\":[{}],\"index_ns\":[{}],\"values\":{{{}}}}}",
        names.join(","),
        index.join(","),
        values.join(",")
    )
}

fn run_check(python: &str, csv: &Path, expected: &Path) -> (bool, String) {
    let out = Command::new(python).arg(script()).arg(csv).arg(expected).output().expect("run BARVAULT_PYTHON");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Bars of whole numbers only (a futures contract's prices, volumes): pandas must still
/// type every column float64, as it does reading the Parquet copy, and the index UTC.
#[test]
fn pandas_types_whole_numbers_as_float64_and_the_index_as_utc() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000_000_000;
    let bars = Bars::new(
        vec![1_136_160_000_000_000_000, 1_136_160_000_000_000_000 + day],
        vec![3602.0, 3600.0],
        vec![3603.0, 3601.0],
        vec![3597.0, 3598.0],
        vec![3599.0, 3599.0],
        vec![5699.0, 0.0],
        vec![ExtraColumn::new("openinterest", vec![Some(0.0), Some(0.0)]).unwrap()],
    )
    .unwrap();
    let csv = dir.path().join("whole.csv");
    std::fs::write(&csv, encode_to_vec(&bars)).unwrap();
    let expected = dir.path().join("expected.json");
    std::fs::write(&expected, expected_json(&bars)).unwrap();
    let (ok, text) = run_check(&python, &csv, &expected);
    assert!(ok, "pandas disagrees with barvault:\n{text}");
    // The check fails on what the encoder wrote before: `3602` and naive timestamps.
    let old = "timestamp,open,high,low,close,volume,openinterest\n\
               2006-01-02 00:00:00,3602,3603,3597,3599,5699,0\n2006-01-03 00:00:00,3600,3601,3598,3599,0,0\n";
    std::fs::write(&csv, old).unwrap();
    let (ok, text) = run_check(&python, &csv, &expected);
    assert!(!ok && text.contains("int64") && text.contains("UTC"), "checker missed int64 columns:\n{text}");
}

#[test]
fn pandas_reads_barvault_csv_exactly() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bars = tricky_bars();
    let csv = dir.path().join("bars.csv");
    std::fs::write(&csv, encode_to_vec(&bars)).unwrap();
    let expected = dir.path().join("expected.json");
    std::fs::write(&expected, expected_json(&bars)).unwrap();

    let (ok, text) = run_check(&python, &csv, &expected);
    assert!(ok, "pandas disagrees with barvault:\n{text}");

    // The checker must be able to fail: one ulp off in one cell is caught.
    let mut off = bars.open().to_vec();
    off[0] = f64::from_bits(off[0].to_bits() + 1);
    let wrong = Bars::new(
        bars.timestamps().to_vec(),
        off,
        bars.high().to_vec(),
        bars.low().to_vec(),
        bars.close().to_vec(),
        bars.volume().to_vec(),
        bars.extras().to_vec(),
    )
    .unwrap();
    std::fs::write(&expected, expected_json(&wrong)).unwrap();
    let (ok, text) = run_check(&python, &csv, &expected);
    assert!(!ok && text.contains("open[0]"), "checker missed a one-ulp difference:\n{text}");
}

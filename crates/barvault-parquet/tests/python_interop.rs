//! Files barvault writes must read exactly in the Python tools users reach for:
//! `pd.read_parquet`, pyarrow and polars. Runs `tests/python_check.py` with the
//! interpreter named by `BARVAULT_PYTHON` (skipped without it, except under CI).

use std::path::Path;
use std::process::Command;

use barvault_domain::{Bars, ExtraColumn, Instrument, Period, SeriesKey};
use barvault_parquet::{ParquetCodec, ParquetCompression};
use barvault_ports::BarCodec;
use serde_json::{Value, json};

const TRICKY: [f64; 16] = [
    1e-12,
    1e300,
    -37.63,
    0.1 + 0.2,
    0.00000871,
    5e-324,
    -0.0,
    0.0,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    -1.5e-308,
    4503599627370497.0,
];

/// Tricky rows first, then enough off-grid rows for several row groups and for the
/// dictionary of the price columns to overflow into plain pages.
fn interop_bars() -> Bars {
    // i64::MIN is pandas' NaT, so the earliest instant pandas can show is one above it.
    let mut ts = vec![i64::MIN + 1, -1_000_000_000_000_000_000, -1, 0, 1, 1_700_000_000_123_456_789];
    ts.extend((0..20_000i64).map(|i| 1_800_000_000_000_000_000 + i * 60_000_000_000));
    ts.push(i64::MAX);
    let n = ts.len();
    let value = |i: usize, k: usize| {
        if i < 6 || i == n - 1 {
            TRICKY[(i * 5 + k * 3) % TRICKY.len()]
        } else {
            100.0 + ((i * 7919 + k * 104_729) % 65_521) as f64 / 997.0
        }
    };
    let col = |k: usize| (0..n).map(|i| value(i, k)).collect::<Vec<f64>>();
    let adj = (0..n).map(|i| (i % 4 != 1).then(|| value(i, 5))).collect();
    let sparse = (0..n).map(|i| (i == 3).then_some(-0.0)).collect();
    Bars::new(
        ts,
        col(0),
        col(1),
        col(2),
        col(3),
        col(4),
        vec![ExtraColumn::new("adj_close", adj).unwrap(), ExtraColumn::new("open_interest", sparse).unwrap()],
    )
    .unwrap()
}

fn expected(bars: &Bars, series: &SeriesKey) -> Value {
    let bits = |v: &[f64]| v.iter().map(|x| json!(x.to_bits())).collect::<Vec<_>>();
    let mut values = serde_json::Map::new();
    for (name, col) in [
        ("open", bars.open()),
        ("high", bars.high()),
        ("low", bars.low()),
        ("close", bars.close()),
        ("volume", bars.volume()),
    ] {
        values.insert(name.into(), json!(bits(col)));
    }
    for e in bars.extras() {
        values.insert(e.name().into(), json!(e.values().iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>()));
    }
    json!({
        "columns": bars.column_names(),
        "timestamp_ns": bars.timestamps(),
        "values": values,
        "metadata": {
            "barvault_version": env!("CARGO_PKG_VERSION"),
            "instrument_symbol": series.instrument.symbol().as_str(),
            "instrument_type": "future",
            "period": "1M",
        },
    })
}

#[test]
fn pandas_pyarrow_and_polars_read_exact_values() {
    let Some(python) = std::env::var_os("BARVAULT_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!("BARVAULT_PYTHON is not set; CI must point it at a Python with pandas, pyarrow (and polars)");
        }
        // Straight to the process's stderr, past the harness's capture: a local `cargo test`
        // says what it did not run instead of only reporting it passed.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED pandas/pyarrow/polars interop (barvault-parquet): BARVAULT_PYTHON is not set; point it at \
              a Python with pandas, pyarrow and polars to run it (CI does: .ci/run)\n",
        );
        return;
    };
    let series = SeriesKey::new(Instrument::future("CL", None).unwrap(), Period::Mo1);
    let bars = interop_bars();
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec(&expected(&bars, &series)).unwrap()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("python_check.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script);
    for compression in ParquetCompression::ALL {
        let path = dir.path().join(format!("CL-{compression}.parquet"));
        let mut file = std::fs::File::create(&path).unwrap();
        ParquetCodec::new(compression).with_row_group_rows(8192).encode(&bars, &series, &mut file).unwrap();
        cmd.arg(&path).arg(&expected_path);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "python check failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("pandas ok") && stdout.contains("pyarrow ok"), "{stdout}");
}

//! The first day of a new user, through the built binary: each trap of issue 19 (a
//! cleanup that empties history, off-grid bars merged silently, counts that hide what
//! happened, names and zones guessed wrong, exports pandas mistypes, inputs refused for no
//! reason, no way to delete or rename a series, Ctrl-C leaving temp files, messages that
//! mislead) is reproduced here as the user would meet it, and must stay fixed.

#[path = "reliability_common/mod.rs"]
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barvault::{Instrument, Period, RealFs, SeriesKey};
use barvault_fs::FileLocks;
use common::{bv, cmd, code, err, ok, out, snapshot, temp_files};
use tempfile::TempDir;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `barvault --data-dir STORE ARGS` with extra environment variables.
fn bv_env(store: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    common::retry_exec(|| {
        let mut c = cmd(store);
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output()
    })
}

/// Writes a raw message straight to the process's stderr, past the test harness's
/// capture, so a skipped check is visible in a plain `cargo test`.
fn say_skipped(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {what} (barvault-cli e2e_first_day): {why}");
}

/// A Python 3 for the pseudo-terminal helper (any Python: only its standard library).
fn python3() -> Option<String> {
    let candidate = std::env::var("BARVAULT_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or("python3".into());
    let works = Command::new(&candidate).arg("-c").arg("import pty").output().is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI must have a python3 (for the pseudo-terminal helper)");
    }
    say_skipped("terminal checks", "no python3 with the pty module on PATH");
    None
}

/// The Python with pandas and polars that CI provides as `BARVAULT_PYTHON`.
fn data_python() -> Option<String> {
    match std::env::var("BARVAULT_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BARVAULT_PYTHON is not set: CI must point it at a Python with pandas and polars")
        }
        _ => {
            say_skipped("pandas/polars reading of exports", "BARVAULT_PYTHON is not set (CI sets it: .ci/run)");
            None
        }
    }
}

/// Runs the binary with its `stream` ("stdout" or "stderr") on a pseudo-terminal: what
/// it wrote there and its exit code.
fn on_terminal(python: &str, stream: &str, store: &Path, args: &[&str]) -> (String, i32) {
    let helper = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pty_run.py");
    let o = common::retry_exec(|| {
        Command::new(python)
            .arg(&helper)
            .arg(stream)
            .arg(common::BIN)
            .arg("--data-dir")
            .arg(store)
            .args(args)
            .env_remove("BARVAULT_VALIDATION")
            .output()
    });
    let e = err(&o);
    let exit = e.lines().last().and_then(|l| l.strip_prefix("exit=")).and_then(|c| c.parse().ok()).unwrap_or(-1);
    (out(&o), exit)
}

fn import_daily(store: &Path) {
    ok(bv(store, &["import", "--type", "stock", "--period", "1d", s(&data("daily"))]));
}

/// The first `rows` data lines of `file` with its header.
fn head(file: &Path, rows: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().take(rows + 1).map(|l| format!("{l}\n")).collect()
}

/// NVDA's daily file as a pandas user writes it after `tz_localize("America/New_York")`:
/// every date becomes midnight New York time with its offset, 04:00 or 05:00 UTC.
fn with_new_york_offsets(rows: usize) -> String {
    let mut text = String::new();
    for (i, line) in head(&data("daily/NVDA.csv"), rows).lines().enumerate() {
        if i == 0 {
            text.push_str(line);
        } else {
            let (date, rest) = line.split_once(',').unwrap();
            let month: u32 = date[5..7].parse().unwrap();
            let offset = if (4..=10).contains(&month) { "-04:00" } else { "-05:00" };
            text.push_str(&format!("{date} 00:00:00{offset},{rest}"));
        }
        text.push('\n');
    }
    text
}

fn rows_of(store: &Path, symbol: &str, period: &str) -> u64 {
    let list = json(&out(&ok(bv(store, &["list", "--json"]))));
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["symbol"] == symbol && e["period"] == period)
        .and_then(|e| e["rows"].as_u64())
        .unwrap_or(0)
}

/// Without `retention_days` cleanup deletes nothing and says how to opt in; with a
/// retention that would empty a series it refuses until confirmed.
#[test]
fn cleanup_keeps_history_unless_retention_is_asked_for_and_confirmed() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let config = json(&out(&ok(bv(&store, &["config", "--json"]))));
    assert_eq!(config["retention_days"]["value"], "none");
    let before = snapshot(&store);
    for args in [&["cleanup", "--dry-run"][..], &["cleanup", "--force"]] {
        let o = bv(&store, args);
        assert_eq!(code(&o), 3, "{args:?}: {}", err(&o));
        assert!(err(&o).contains("retention_days") && err(&o).contains("removes nothing"), "{}", err(&o));
    }
    let retention = [("BARVAULT_RETENTION_DAYS", "365")];
    let dry = bv_env(&store, &retention, &["cleanup", "--dry-run"]);
    assert_eq!(code(&dry), 0);
    assert!(out(&dry).contains("would remove 4012 rows, 0 kept (the whole series)"), "{}", out(&dry));
    assert!(out(&dry).contains("needs --confirm-removal"), "{}", out(&dry));
    let refused = bv_env(&store, &retention, &["cleanup", "--force"]);
    assert_eq!(code(&refused), 2, "{}", err(&refused));
    assert!(err(&refused).contains("refused, nothing changed") && err(&refused).contains("every row of 2 series"));
    assert!(snapshot(&store) == before, "a refused cleanup changed the store");
    let done = bv_env(&store, &retention, &["cleanup", "--force", "--confirm-removal", "--json"]);
    assert_eq!(code(&done), 0, "{}", err(&done));
    assert_eq!(json(&out(&done))["applied"], true);
    assert_eq!(rows_of(&store, "NVDA", "1d"), 0);
    ok(bv(&store, &["verify", "--all"]));
}

/// Daily bars at 05:00 UTC (a pandas CSV with New York offsets) do not merge into a series
/// of midnight bars, ticks do not go into a minute series, and each refusal names lines.
#[test]
fn off_grid_bars_are_refused_dropped_or_kept_by_the_policy() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let ny = tmp.path().join("nvda_ny.csv");
    std::fs::write(&ny, with_new_york_offsets(40)).unwrap();
    let args = ["import", "--type", "stock", "--symbol", "NVDA", "--period", "1d", s(&ny)];
    let before = snapshot(&store);
    let o = bv(&store, &args);
    assert_eq!(code(&o), 1);
    let e = err(&o);
    assert!(e.contains(&format!("{}:2: 40 bar(s) are off the time grid of stock:NVDA@1d", ny.display())), "{e}");
    assert!(e.contains("1d bars at 00:00:00 UTC") && e.contains("line 2 (1999-01-22T05:00:00Z)"), "{e}");
    assert!(snapshot(&store) == before, "a refused import changed the store");

    let o = ok(bv(&store, &[&args[..], &["--on-invalid", "drop"]].concat()));
    assert!(out(&o).contains("read 40, added 0, replaced 0, unchanged 0, dropped 40"), "{}", out(&o));
    let w = err(&o);
    assert!(w.contains("warning:") && w.contains("dropped 40 row(s) (not on the series' time grid: 40)"), "{w}");
    assert!(w.contains("line 3 (1999-01-25T05:00:00Z)") && !w.contains("RuleViolation"), "{w}");
    assert_eq!(rows_of(&store, "NVDA", "1d"), 4012);

    let ticks = data("real/ticks-2015-09-23.csv");
    let tick_args = ["import", "--type", "future", "--symbol", "ES", "--period", "1m", s(&ticks)];
    let o = bv(&store, &tick_args);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("133 bar(s) are off the time grid of future:ES@1m") && err(&o).contains("ticks"));
    ok(bv(&store, &[&tick_args[..], &["--on-invalid", "keep"]].concat()));
    assert_eq!(rows_of(&store, "ES", "1m"), 134);

    // Rule violations name file lines and timestamps too, counted as the file counts them.
    let bad = tmp.path().join("AAA.csv");
    std::fs::write(
        &bad,
        "Date,Open,High,Low,Close,Volume\n\n2020-01-02,1,2,0.5,1.5,100\n2020-01-03,1,0.2,0.5,1.5,100\n",
    )
    .unwrap();
    let o = bv(&store, &["import", "--type", "stock", "--period", "1d", s(&bad)]);
    let e = err(&o);
    assert!(e.contains(&format!("{}:4: 1 bar(s) break validation rules", bad.display())), "{e}");
    assert!(e.contains("line 4 (2020-01-03T00:00:00Z): high < low"), "{e}");
}

/// Repeated timestamps in one file, rows a replace removes and a missing volume are all
/// reported as what they are.
#[test]
fn counts_say_what_happened() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let ticks = data("real/ticks-2015-09-23.csv");
    let keep = ["import", "--type", "future", "--symbol", "ES", "--period", "1m", "--on-invalid", "keep"];
    let o = ok(bv(&store, &[&keep[..], &[s(&ticks)]].concat()));
    assert!(out(&o).contains("read 135, added 134, replaced 0, unchanged 0, duplicates 1"), "{}", out(&o));
    let fewer = tmp.path().join("fewer.csv");
    std::fs::write(&fewer, head(&ticks, 20)).unwrap();
    let o = ok(bv(&store, &[&keep[..], &["--replace", s(&fewer)]].concat()));
    assert!(out(&o).contains("read 20, added 0, replaced 0, unchanged 20, removed 114"), "{}", out(&o));
    assert_eq!(rows_of(&store, "ES", "1m"), 20);

    // No volume column, or an empty volume cell: the volume is missing, never 0.
    let fx = tmp.path().join("EURUSD.csv");
    std::fs::write(&fx, "timestamp,open,high,low,close\n2024-01-02,1.1,1.2,1.0,1.15\n2024-01-03,1.1,1.2,1.0,1.15\n")
        .unwrap();
    ok(bv(&store, &["import", "--type", "forex", "--period", "1d", s(&fx)]));
    let csv = out(&ok(bv(&store, &["export", "--type", "forex", "--symbol", "EURUSD"])));
    assert!(csv.contains("2024-01-02 00:00:00Z,1.1,1.2,1.0,1.15,NaN"), "{csv}");
    let lines = out(&ok(bv(&store, &["export", "--type", "forex", "--symbol", "EURUSD", "--format", "json"])));
    assert_eq!(json(lines.lines().next().unwrap())["volume"], serde_json::Value::Null);
    // A later file with volumes fills them; a missing one never erases a stored one.
    let with = tmp.path().join("with.csv");
    std::fs::write(&with, "timestamp,open,high,low,close,volume\n2024-01-02,1.1,1.2,1.0,1.15,500\n").unwrap();
    ok(bv(&store, &["import", "--type", "forex", "--symbol", "EURUSD", "--period", "1d", s(&with)]));
    let o = ok(bv(&store, &["import", "--type", "forex", "--period", "1d", s(&fx)]));
    assert!(out(&o).contains("unchanged 2"), "{}", out(&o));
    let csv = out(&ok(bv(&store, &["export", "--type", "forex", "--symbol", "EURUSD"])));
    assert!(csv.contains("2024-01-02 00:00:00Z,1.1,1.2,1.0,1.15,500.0\n"), "{csv}");
    ok(bv(&store, &["verify", "--all", "--deep"]));
}

/// `NVDA-1d.csv` is NVDA, compressed or not, and `--symbol` over files of different names
/// says what it merges.
#[test]
fn symbols_from_file_names_and_one_symbol_for_many_files() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(data("daily/NVDA.csv"), dir.join("NVDA-1d.csv")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(data("daily/ORCL.csv")).unwrap()).unwrap();
    std::fs::write(dir.join("ORCL_1D.csv.gz"), gz.finish().unwrap()).unwrap();
    let o = ok(bv(&store, &["import", "--type", "stock", "--period", "daily", s(&dir)]));
    assert!(out(&o).contains("NVDA-1d.csv: stock:NVDA@1d: read 4012"), "{}", out(&o));
    assert!(out(&o).contains("ORCL_1D.csv.gz: stock:ORCL@1d: read 5036"), "{}", out(&o));

    let o = ok(bv(
        &store,
        &[
            "import",
            "--type",
            "stock",
            "--symbol",
            "MIXED",
            "--period",
            "1d",
            s(&dir.join("NVDA-1d.csv")),
            s(&dir.join("ORCL_1D.csv.gz")),
        ],
    ));
    let w = err(&o);
    assert!(w.contains("warning: --symbol MIXED puts 2 files whose names give 2 different symbols"), "{w}");
    assert!(w.contains("NVDA-1d.csv (NVDA)") && w.contains("ORCL_1D.csv.gz (ORCL)"), "{w}");
}

/// Naive local times take `--tz`; the CSV copy carries the UTC marker that makes pandas
/// type it as the Parquet copy; a store written before keeps working.
#[test]
fn zones_the_utc_marker_and_a_store_written_by_0_1() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let estx = tmp.path().join("FESX.txt");
    std::fs::write(&estx, head(&data("real/ESTX50-2006-01-02-1m.txt"), 600)).unwrap();
    let args = ["import", "--type", "future", "--period", "1m", "--tz", "Europe/Berlin", s(&estx)];
    ok(bv(&store, &args));
    let csv = std::fs::read_to_string(store.join("futures/1m/FESX.csv")).unwrap();
    assert!(
        csv.lines().nth(1).unwrap().starts_with("2006-01-02 08:01:00Z,3602.0,3603.0,3597.0,3599.0,5699.0"),
        "{csv:.200}"
    );
    let ny = tmp.path().join("ny.csv");
    std::fs::write(&ny, with_new_york_offsets(5)).unwrap();
    let o = bv(&store, &["import", "--type", "stock", "--period", "1d", "--tz", "America/New_York", s(&ny)]);
    assert!(err(&o).contains(":2: --tz America/New_York applies to naive timestamps"), "{}", err(&o));
    let o = bv(&store, &["import", "--type", "stock", "--period", "1d", "--tz", "Mars/Base", s(&ny)]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("IANA"), "{}", err(&o));

    // The marker is a setting: off, the CSV is naive as in 0.1.
    let naive = tmp.path().join("naive");
    ok(bv_env(&naive, &[("BARVAULT_CSV_UTC_MARKER", "false")], &args));
    let csv = std::fs::read_to_string(naive.join("futures/1m/FESX.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("2006-01-02 08:01:00,3602.0"), "{csv:.200}");

    // A store written by barvault 0.1 (commit f3a35d0) opens, verifies, merges and
    // verifies again; its NVDA series holds the first 329 rows of daily/NVDA.csv.
    let old = tmp.path().join("old");
    copy_dir(&data("store-f3a35d0"), &old);
    ok(bv(&old, &["verify", "--all"]));
    ok(bv(&old, &["verify", "--all", "--deep"]));
    let before = std::fs::read_to_string(old.join("stocks/1d/NVDA.csv")).unwrap();
    assert!(before.lines().nth(1).unwrap().starts_with("1999-01-22 00:00:00,"), "the fixture is in the 0.1 format");
    let next = tmp.path().join("NVDA.csv");
    let all = head(&data("daily/NVDA.csv"), 339);
    let mut lines: Vec<&str> = all.lines().collect();
    lines.drain(1..325);
    std::fs::write(&next, lines.join("\n") + "\n").unwrap();
    let o = ok(bv(&old, &["import", "--type", "stock", "--period", "1d", s(&next)]));
    assert!(out(&o).contains("read 15, added 10, replaced 0, unchanged 5"), "{}", out(&o));
    ok(bv(&old, &["verify", "--all", "--deep"]));
    let after = std::fs::read_to_string(old.join("stocks/1d/NVDA.csv")).unwrap();
    assert_eq!(after.lines().count(), 340);
    assert!(after.lines().all(|l| l.starts_with("timestamp") || l.contains("Z,")), "one timestamp form per file");
    let exported = out(&ok(bv(&old, &["export", "--type", "stock", "--symbol", "NVDA", "--to", "1999-01-22"])));
    assert_eq!(
        exported.lines().nth(1),
        Some("1999-01-22 00:00:00Z,1.75,1.953125,1.552083,1.640625,67867200.0,1.518424")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "README.md" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `-o x.parquet` writes Parquet, JSON lines keep the CSV's column order, whole numbers
/// read as floats, Parquet never goes to a terminal, and pandas and polars agree.
#[test]
fn exports_are_what_their_names_and_readers_expect() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let estx = tmp.path().join("FESX.txt");
    std::fs::write(&estx, head(&data("real/ESTX50-2006-01-02-1m.txt"), 300)).unwrap();
    ok(bv(&store, &["import", "--type", "future", "--period", "1m", s(&estx)]));
    let series = ["export", "--type", "future", "--symbol", "FESX"];
    let pq = tmp.path().join("fesx.parquet");
    let o = ok(bv(&store, &[&series[..], &["-o", s(&pq)]].concat()));
    assert!(out(&o).contains("(parquet)"), "{}", out(&o));
    assert_eq!(&std::fs::read(&pq).unwrap()[..4], b"PAR1");
    let jl = tmp.path().join("fesx.jsonl");
    ok(bv(&store, &[&series[..], &["-o", s(&jl)]].concat()));
    let first = std::fs::read_to_string(&jl).unwrap().lines().next().unwrap().to_string();
    assert!(
        first.starts_with("{\"timestamp\":\"2006-01-02T09:01:00Z\",\"open\":3602.0,\"high\":3603.0,\"low\":3597.0,\"close\":3599.0,\"volume\":5699.0,"),
        "{first}"
    );
    let csv_path = tmp.path().join("fesx.csv");
    ok(bv(&store, &[&series[..], &["-o", s(&csv_path)]].concat()));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().nth(1), Some("2006-01-02 09:01:00Z,3602.0,3603.0,3597.0,3599.0,5699.0,0.0"));
    // Exact round trip: the CSV export imports back to the same bytes.
    let again = tmp.path().join("again");
    ok(bv(&again, &["import", "--type", "future", "--symbol", "FESX", "--period", "1m", s(&csv_path)]));
    assert_eq!(out(&ok(bv(&again, &series))), csv);

    if let Some(python) = python3() {
        let (seen, exit) = on_terminal(&python, "stdout", &store, &[&series[..], &["--format", "parquet"]].concat());
        assert_eq!(exit, 2, "{seen}");
        assert!(!seen.contains("PAR1"), "binary output reached the terminal");
        let (seen, exit) = on_terminal(&python, "stdout", &store, &series);
        assert_eq!(exit, 0);
        assert!(seen.contains("3602.0"), "{seen}");
    }
    if let Some(python) = data_python() {
        let check = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/first_day_check.py");
        let o = Command::new(&python).arg(&check).arg(&csv_path).arg(&pq).output().unwrap();
        assert!(o.status.success(), "{}{}", out(&o), err(&o));
    }
}

/// Standard input, gzip and zstd are inputs like files; a binary file is refused without
/// its bytes in the message.
#[test]
fn inputs_from_stdin_gzip_zstd_and_binary_files() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let nvda = std::fs::read(data("daily/NVDA.csv")).unwrap();
    let mut child = cmd(&store)
        .args(["import", "--type", "stock", "--symbol", "NVDA", "--period", "1d", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&nvda).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("-: stock:NVDA@1d: read 4012, added 4012"), "{}", out(&o));
    let o = bv(&store, &["import", "--type", "stock", "--period", "1d", "-"]);
    assert!(err(&o).contains("give --symbol"), "{}", err(&o));

    let zst = tmp.path().join("ORCL.csv.zst");
    std::fs::write(&zst, zstd::encode_all(std::fs::read(data("daily/ORCL.csv")).unwrap().as_slice(), 3).unwrap())
        .unwrap();
    ok(bv(&store, &["import", "--type", "stock", "--period", "1d", s(&zst)]));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&nvda).unwrap();
    let gz_path = tmp.path().join("NVDA.csv.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    let o = ok(bv(&store, &["import", "--type", "stock", "--period", "1d", s(&gz_path)]));
    assert!(out(&o).contains("stock:NVDA@1d: read 4012, added 0, replaced 0, unchanged 4012"), "{}", out(&o));
    assert_eq!(rows_of(&store, "ORCL", "1d"), 5036);

    for (file, reason) in [("binary_garbage.csv", "binary data, not CSV text"), ("utf16.csv", "UTF-16")] {
        let o = bv(&store, &["import", "--type", "stock", "--period", "1d", s(&data(&format!("bad/{file}")))]);
        let e = err(&o);
        assert_eq!(code(&o), 1);
        assert!(e.contains(reason), "{e}");
        assert!(!e.contains('\u{fffd}') && e.chars().all(|c| c == '\n' || !c.is_control()), "raw bytes in {e:?}");
    }
}

/// Periods as people write them, and periods of seconds with their own directories.
#[test]
fn periods_are_spelled_as_people_write_them() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let nvda = data("daily/NVDA.csv");
    for spelling in ["1D", "daily", "24h"] {
        ok(bv(&store, &["import", "--type", "stock", "--period", spelling, s(&nvda)]));
    }
    assert_eq!(json(&out(&ok(bv(&store, &["list", "--json"])))).as_array().unwrap().len(), 1);
    let bars: String =
        (0..120).map(|i| format!("2024-01-02 09:{:02}:{:02},1,2,0.5,1.5,10\n", i * 5 / 60, i * 5 % 60)).collect();
    let fives = tmp.path().join("FIVE.csv");
    std::fs::write(&fives, format!("timestamp,open,high,low,close,volume\n{bars}")).unwrap();
    ok(bv(&store, &["import", "--type", "stock", "--period", "5S", s(&fives)]));
    assert!(store.join("stocks/5s/FIVE.csv").is_file());
    let o = bv(&store, &["import", "--type", "stock", "--period", "1m", s(&fives)]);
    assert!(err(&o).contains("off the time grid"), "5-second bars are not minute bars: {}", err(&o));
    let o = ok(bv(&store, &["list", "--period", "60m", "--json"]));
    assert_eq!(json(&out(&o)).as_array().unwrap().len(), 0);
    let o = bv(&store, &["list", "--period", "2h"]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("daily, weekly") && err(&o).contains("1m is a minute, 1M a month"), "{}", err(&o));
    ok(bv(&store, &["verify", "--all"]));
}

/// A series can be deleted (dry run first), renamed, and forgotten once its files were
/// deleted by hand.
#[test]
fn delete_rename_and_forget_a_series() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let nvda = ["--type", "stock", "--symbol", "NVDA", "--period", "1d"];
    let before = snapshot(&store);
    let o = ok(bv(&store, &[&["delete"][..], &nvda, &["--dry-run"]].concat()));
    assert!(out(&o).contains("would delete") && out(&o).contains("NVDA.csv.meta"), "{}", out(&o));
    assert!(snapshot(&store) == before, "a dry run changed the store");
    ok(bv(&store, &[&["delete"][..], &nvda].concat()));
    let left: Vec<String> =
        snapshot(&store).into_keys().map(|p| p.display().to_string()).filter(|p| p.contains("NVDA")).collect();
    assert!(left.is_empty(), "{left:?}");
    ok(bv(&store, &["verify", "--all"]));
    let o = bv(&store, &[&["delete"][..], &nvda].concat());
    assert_eq!(code(&o), 1);

    let o =
        ok(bv(&store, &["rename", "--type", "stock", "--symbol", "ORCL", "--period", "1d", "--to-symbol", "ORACLE"]));
    assert!(out(&o).contains("stock:ORCL@1d is now stock:ORACLE@1d (5036 rows)"), "{}", out(&o));
    assert_eq!(rows_of(&store, "ORACLE", "1d"), 5036);
    assert_eq!(rows_of(&store, "ORCL", "1d"), 0);
    ok(bv(&store, &["verify", "--all", "--deep"]));
    // Minute bars are not daily bars: a rename to 1d is refused and changes nothing.
    let minutes = tmp.path().join("FESX.txt");
    std::fs::write(&minutes, head(&data("real/ESTX50-2006-01-02-1m.txt"), 100)).unwrap();
    ok(bv(&store, &["import", "--type", "future", "--period", "1m", s(&minutes)]));
    let o = bv(&store, &["rename", "--type", "future", "--symbol", "FESX", "--period", "1m", "--to-period", "1d"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("cannot become future:FESX@1d") && err(&o).contains("off the series' time grid"),
        "{}",
        err(&o)
    );
    assert_eq!(rows_of(&store, "FESX", "1m"), 100);

    // Files deleted by hand: verify and health say so in one vocabulary, recover offers to
    // forget the series, and --forget-missing does.
    for ext in ["csv", "parquet", "csv.backup", "parquet.backup"] {
        let _ = std::fs::remove_file(store.join(format!("stocks/1d/ORACLE.{ext}")));
    }
    let o = bv(&store, &["verify", "--all"]);
    assert!(out(&o).contains("missing_file"), "{}", out(&o));
    let o = bv(&store, &["health"]);
    assert!(out(&o).contains("missing_file:") && !out(&o).contains("MissingFile"), "{}", out(&o));
    let o = bv(&store, &["recover", "--all"]);
    assert_eq!(code(&o), 1);
    assert!(out(&o).contains("--forget-missing"), "{}", out(&o));
    ok(bv(&store, &["recover", "--all", "--forget-missing"]));
    ok(bv(&store, &["verify", "--all"]));
}

/// SIGINT or SIGTERM during a large import: exit 130 / 143, no temp file left, the series
/// as it was before.
#[test]
fn an_interrupted_import_removes_its_temp_files() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let small = tmp.path().join("BIG.csv");
    let row = |m: i64| {
        let t = chrono::DateTime::from_timestamp(1_704_067_200 + m * 60, 0).unwrap();
        format!(
            "{},{}.25,{}.75,{}.0,{}.5,{}\n",
            t.format("%Y-%m-%d %H:%M:%S"),
            100 + m % 50,
            101 + m % 50,
            99 + m % 50,
            100 + m % 50,
            m
        )
    };
    std::fs::write(&small, format!("timestamp,open,high,low,close,volume\n{}", (0..100).map(row).collect::<String>()))
        .unwrap();
    ok(bv(&store, &["import", "--type", "stock", "--period", "1m", s(&small)]));
    let stored = out(&ok(bv(&store, &["export", "--type", "stock", "--symbol", "BIG"])));
    let series_dir = store.join("stocks/1m");
    for (signal, expected) in [("-INT", 130), ("-TERM", 143)] {
        let mut rows = 200_000;
        let interrupted = loop {
            let big = tmp.path().join("BIG.csv");
            let mut text = String::from("timestamp,open,high,low,close,volume\n");
            (0..rows).for_each(|m| text.push_str(&row(m)));
            std::fs::write(&big, text).unwrap();
            let mut child = common::retry_exec(|| {
                cmd(&store)
                    .args(["import", "--type", "stock", "--period", "1m", s(&big)])
                    .stderr(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
            });
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut sent = false;
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if !temp_files(&series_dir).is_empty() {
                    let k = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
                    assert!(k.success());
                    sent = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let o = child.wait_with_output().unwrap();
            if sent && code(&o) == expected {
                break o;
            }
            // The import finished before a temp file was seen: try a longer one.
            assert!(rows < 3_200_000, "could not catch an import in the middle of its write");
            rows *= 2;
            ok(bv(&store, &["import", "--type", "stock", "--period", "1m", "--replace", s(&small)]));
        };
        assert!(
            err(&interrupted).contains("interrupted") && err(&interrupted).contains("temp file(s)"),
            "{}",
            err(&interrupted)
        );
        assert!(temp_files(&store).is_empty(), "{signal}: temp files left: {:?}", temp_files(&store));
        ok(bv(&store, &["verify", "--all"]));
        assert_eq!(out(&ok(bv(&store, &["export", "--type", "stock", "--symbol", "BIG"]))), stored, "{signal}");
    }
    // A command blocked on its output (an export into a pipe nobody reads) stops at once too.
    let pipe = tmp.path().join("PIPE.csv");
    std::fs::write(&pipe, format!("timestamp,open,high,low,close,volume\n{}", (0..5000).map(row).collect::<String>()))
        .unwrap();
    ok(bv(&store, &["import", "--type", "stock", "--period", "1m", s(&pipe)]));
    let mut blocked = common::retry_exec(|| {
        cmd(&store)
            .args(["export", "--type", "stock", "--symbol", "PIPE"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(blocked.try_wait().unwrap().is_none(), "the export should wait on the full pipe");
    assert!(Command::new("kill").arg("-INT").arg(blocked.id().to_string()).status().unwrap().success());
    let started = Instant::now();
    while blocked.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "Ctrl-C did not stop a blocked export");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(blocked.wait().unwrap().code(), Some(130));
}

/// `verify` of one series reports that series' stale temp files (and only its own), and
/// `recover` of that series removes them.
#[test]
fn verify_of_one_series_reports_its_stale_temp_files() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let stale = store.join("stocks/1d/.NVDA.csv.tmp.999999999.abcdef0123456789");
    std::fs::write(&stale, b"partial").unwrap();
    let o = bv(&store, &["verify", "--type", "stock", "--symbol", "NVDA", "--period", "1d", "--json"]);
    assert_eq!(code(&o), 1, "{}", out(&o));
    let report = json(&out(&o));
    assert_eq!(report["issues"][0]["kind"], "stale_temp");
    assert_eq!(report["issues"][0]["series"], "stock:NVDA@1d");
    ok(bv(&store, &["verify", "--type", "stock", "--symbol", "ORCL", "--period", "1d"]));
    ok(bv(&store, &["recover", "--type", "stock", "--symbol", "NVDA", "--period", "1d"]));
    assert!(!stale.exists());
    ok(bv(&store, &["verify", "--all"]));
}

/// One large file shows progress in bytes while it is imported (here: while it waits for
/// the lock another writer holds), never `0/1`.
#[test]
fn progress_of_one_file_counts_bytes() {
    let Some(python) = python3() else { return };
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let series = SeriesKey::new(Instrument::stock("NVDA").unwrap(), Period::D1);
    let locks = FileLocks::new(Arc::new(RealFs), store.clone());
    let guard = locks.lock_blocking(&series, Duration::from_secs(5)).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        drop(guard);
    });
    let nvda = data("daily/NVDA.csv");
    let (seen, exit) =
        on_terminal(&python, "stderr", &store, &["import", "--type", "stock", "--period", "1d", s(&nvda)]);
    release.join().unwrap();
    assert_eq!(exit, 0, "{seen}");
    assert!(seen.contains("KiB/266.18 KiB") || seen.contains("266.18 KiB"), "no byte progress: {seen:?}");
    assert!(!seen.contains("0/1"), "{seen:?}");
}

/// The small errors of a first day: a file given as the store, `info` without the one
/// period stored, a symbol mistyped.
#[test]
fn messages_for_first_day_mistakes() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    import_daily(&store);
    let readme = tmp.path().join("README.md");
    std::fs::write(&readme, "# notes\n").unwrap();
    let o = bv(&readme, &["list"]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("README.md (from command line) is a file, not a store directory"), "{}", err(&o));
    let o = ok(bv(&store, &["info", "--type", "stock", "--symbol", "nvda", "--json"]));
    assert_eq!(json(&out(&o))["rows"], 4012);
    ok(bv(
        &store,
        &[
            "import",
            "--type",
            "stock",
            "--symbol",
            "NVDA",
            "--period",
            "1W",
            s(&data("daily/NVDA.csv")),
            "--on-invalid",
            "keep",
        ],
    ));
    let o = bv(&store, &["info", "--type", "stock", "--symbol", "NVDA"]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("stored at 2 periods (1d, 1W): give --period"), "{}", err(&o));
    let o = bv(&store, &["info", "--type", "stock", "--symbol", "NVD", "--period", "1d"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("did you mean NVDA@1W, NVDA@1d?") || err(&o).contains("did you mean NVDA@1d, NVDA@1W?"),
        "{}",
        err(&o)
    );
    let o = bv(&store, &["export", "--type", "stock", "--symbol", "NVDA", "--period", "1h"]);
    assert!(err(&o).contains("stock NVDA is stored at 1d, 1W"), "{}", err(&o));
    let o = bv(&store, &["export", "--type", "future", "--symbol", "NVDA", "--period", "1d"]);
    assert!(err(&o).contains("NVDA is stored as stock"), "{}", err(&o));
}

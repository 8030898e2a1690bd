//! End-to-end runs of the built `barvault` binary against temporary stores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use barvault::{Instrument, Period, RealFs, SeriesKey};
use barvault_fs::FileLocks;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_barvault");

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

/// A command with no `BARVAULT_*` variables inherited and a working directory without a
/// `barvault.toml`, so only what a test sets is configured; `health` has no free-space
/// threshold (its exit code must not depend on the test machine's disk).
fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BARVAULT_") {
            c.env_remove(k);
        }
    }
    c.env("BARVAULT_MIN_FREE_SPACE_GB", "0");
    c.env("RUST_BACKTRACE", "1").current_dir(cwd);
    c
}

/// Runs `barvault --data-dir store ARGS`.
fn bv(store: &Path, args: &[&str]) -> Output {
    let cwd = store.parent().unwrap_or(store);
    cmd(cwd).arg("--data-dir").arg(store).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert_eq!(code(&o), 0, "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    o
}

/// An error is one line, with no panic and no backtrace.
#[track_caller]
fn assert_one_line_error(o: &Output) {
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for bad in ["panicked", "backtrace", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!err.contains(bad), "{err}");
    }
}

fn store(tmp: &TempDir) -> PathBuf {
    tmp.path().join("store")
}

fn import_daily(store: &Path) -> Output {
    ok(bv(store, &["import", "--type", "stock", "--period", "1d", data("daily").to_str().unwrap()]))
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), barvault_fs::md5_hex(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn imports_the_real_files() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    let out = stdout(&import_daily(&s));
    assert!(out.contains("stock:NVDA@1d: read 4012, added 4012, replaced 0, unchanged 0"), "{out}");
    assert!(out.contains("stock:ORCL@1d: read 5036, added 5036, replaced 0, unchanged 0"), "{out}");
    assert!(out.contains("total: 2 file(s) imported, 0 failed: read 9048, added 9048"), "{out}");
    assert!(s.join("stocks/1d/NVDA.csv").is_file() && s.join("stocks/1d/ORCL.parquet").is_file());

    // The same files again change nothing.
    let out = stdout(&import_daily(&s));
    assert!(out.contains("read 4012, added 0, replaced 0, unchanged 4012"), "{out}");

    let estx = data("real/ESTX50-2006-01-02-1m.txt");
    let out = stdout(&ok(bv(
        &s,
        &["import", "--type", "future", "--symbol", "FESX", "--period", "1m", estx.to_str().unwrap()],
    )));
    assert!(out.contains("futures:FESX@1m") || out.contains("future:FESX@1m"), "{out}");
    assert!(out.contains("read 30889, added 30889"), "{out}");
    let ticks = data("real/ticks-2015-09-23.csv");
    // Ticks are not minute bars: kept as they are only when asked to.
    let args = ["import", "--type", "future", "--symbol", "ES_TICKS", "--period", "1m", ticks.to_str().unwrap()];
    assert_eq!(code(&bv(&s, &args)), 1);
    let out = stdout(&ok(bv(&s, &[&args[..], &["--on-invalid", "keep"]].concat())));
    // One timestamp repeats in the file: the later row is kept, and the repeat is counted as such.
    assert!(out.contains("read 135, added 134, replaced 0, unchanged 0, duplicates 1"), "{out}");

    let list = json(&stdout(&ok(bv(&s, &["list", "--json"]))));
    let rows: BTreeMap<String, u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["symbol"].as_str().unwrap().to_string(), e["rows"].as_u64().unwrap()))
        .collect();
    let expected: BTreeMap<String, u64> =
        [("ES_TICKS", 134), ("FESX", 30889), ("NVDA", 4012), ("ORCL", 5036)].map(|(k, v)| (k.into(), v)).into();
    assert_eq!(rows, expected);
    let stocks = json(&stdout(&ok(bv(&s, &["list", "--type", "stock", "--period", "1d", "--json"]))));
    assert_eq!(stocks.as_array().unwrap().len(), 2);
    let table = stdout(&ok(bv(&s, &["list"])));
    assert!(table.contains("NVDA") && table.contains("1999-01-22T00:00:00Z"), "{table}");

    let info = json(&stdout(&ok(bv(&s, &["info", "--type", "stock", "--symbol", "nvda", "--period", "1d", "--json"]))));
    assert_eq!(info["rows"], 4012);
    assert_eq!(info["last"], "2014-12-31T00:00:00Z");
    assert_eq!(info["files"].as_array().unwrap().len(), 2);
    assert_eq!(info["files"][0]["record"]["generation"], 1);
    assert_eq!(info["files"][0]["record"]["checksum"].as_str().unwrap().len(), 32);

    ok(bv(&s, &["verify", "--all"]));
    ok(bv(&s, &["verify", "--all", "--deep"]));
}

#[test]
fn export_round_trips() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files = [data("daily/NVDA.csv"), data("daily/ORCL.csv")];
    let mut args = vec!["import", "--type", "stock", "--period", "1d"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    ok(bv(&a, &args));
    let series = ["--type", "stock", "--symbol", "NVDA", "--period", "1d"];
    let export = |store: &Path, extra: &[&str]| {
        let mut args = vec!["export"];
        args.extend(series);
        args.extend(extra);
        ok(bv(store, &args))
    };

    let a_csv = tmp.path().join("a.csv");
    let out = stdout(&export(&a, &["-o", a_csv.to_str().unwrap()]));
    assert!(out.contains("exported 4012 rows"), "{out}");
    let a_bytes = std::fs::read(&a_csv).unwrap();
    assert_eq!(export(&a, &[]).stdout, a_bytes, "stdout and file exports are the same bytes");
    assert_eq!(export(&a, &["-o", "-"]).stdout, a_bytes);

    ok(bv(&b, &["import", "--type", "stock", "--symbol", "NVDA", "--period", "1d", a_csv.to_str().unwrap()]));
    assert_eq!(export(&b, &[]).stdout, a_bytes, "re-imported export exports the same bytes");

    // Parquet parses: importing it into a fresh store gives the same CSV export.
    let pq = tmp.path().join("a.parquet");
    export(&a, &["--format", "parquet", "-o", pq.to_str().unwrap()]);
    assert_eq!(&std::fs::read(&pq).unwrap()[..4], b"PAR1");
    let c = tmp.path().join("c");
    ok(bv(&c, &["import", "--type", "stock", "--symbol", "NVDA", "--period", "1d", pq.to_str().unwrap()]));
    assert_eq!(export(&c, &[]).stdout, a_bytes);

    // JSON lines, with an inclusive range given in each accepted form.
    let j = stdout(&export(&a, &["--format", "json", "--from", "2014-12-29", "--to", "2014-12-31"]));
    let lines: Vec<serde_json::Value> = j.lines().map(json).collect();
    assert_eq!(lines.len(), 3, "{j}");
    assert_eq!(lines[0]["timestamp"], "2014-12-29T00:00:00Z");
    assert_eq!(lines[2]["close"], 20.049999);
    assert_eq!(lines[2]["adj_close"], 19.425875);
    let j2 =
        stdout(&export(&a, &["--format", "json", "--from", "2014-12-29T00:00:00Z", "--to", "2014-12-31 00:00:00"]));
    assert_eq!(j, j2);
    let all = stdout(&export(&a, &["--format", "json"]));
    assert_eq!(all.lines().count(), 4012);
}

#[test]
fn verify_finds_a_flipped_byte_and_recover_restores_it() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    import_daily(&s);
    let csv = s.join("stocks/1d/NVDA.csv");
    let original = std::fs::read(&csv).unwrap();
    let mut damaged = original.clone();
    let i = damaged.len() / 2;
    damaged[i] ^= 0x01;
    std::fs::write(&csv, &damaged).unwrap();

    let o = bv(&s, &["verify", "--all"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("checksum_mismatch") && stdout(&o).contains("NVDA.csv"), "{}", stdout(&o));
    let o = bv(&s, &["verify", "--type", "stock", "--symbol", "NVDA", "--period", "1d", "--json"]);
    assert_eq!(code(&o), 1);
    let report = json(&stdout(&o));
    let issue = &report["issues"][0];
    assert_eq!(issue["kind"], "checksum_mismatch");
    assert!(issue["path"].as_str().unwrap().ends_with("NVDA.csv"));
    assert!(!issue["detail"].as_str().unwrap().is_empty());
    // The other series is untouched.
    ok(bv(&s, &["verify", "--type", "stock", "--symbol", "ORCL", "--period", "1d"]));

    let o = ok(bv(&s, &["recover", "--all"]));
    assert!(stdout(&o).contains("NVDA.csv"), "{}", stdout(&o));
    ok(bv(&s, &["verify", "--all"]));
    assert!(std::fs::read(&csv).unwrap() == original, "the CSV is byte-identical to before the damage");
    assert_eq!(stdout(&ok(bv(&s, &["recover", "--all"]))).trim(), "nothing to repair");
}

#[test]
fn health_reports_json_with_an_overall_status() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    import_daily(&s);
    let o = bv(&s, &["health", "--json"]);
    let report = json(&stdout(&o));
    assert_eq!(report["overall_status"], "healthy", "{report}");
    assert_eq!(code(&o), 0, "{report}");
    assert_eq!(report["issues"], serde_json::json!([]), "{report}");
    assert_eq!(report["csv_files"], 2);
    assert_eq!(report["parquet_files"], 2);

    // Under the free-space threshold: warning, exit 1, the figure and the threshold named.
    let o = cmd(tmp.path())
        .env("BARVAULT_MIN_FREE_SPACE_GB", "1000000")
        .arg("--data-dir")
        .arg(&s)
        .args(["health", "--json"])
        .output()
        .unwrap();
    let report = json(&stdout(&o));
    assert_eq!((code(&o), report["overall_status"].as_str()), (1, Some("warning")), "{report}");
    let issues = report["issues"].as_array().unwrap();
    assert!(
        issues.len() == 1 && issues[0].as_str().unwrap().contains("GB available (min_free_space_gb = 1000000)"),
        "{report}"
    );
    // An impossible threshold is a configuration error naming the field and its origin.
    let o = cmd(tmp.path())
        .env("BARVAULT_MIN_FREE_SPACE_GB", "-1")
        .arg("--data-dir")
        .arg(&s)
        .args(["health"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 3, "{err}");
    assert!(err.contains("min_free_space_gb") && err.contains("BARVAULT_MIN_FREE_SPACE_GB"), "{err}");

    // A store that does not exist is an error status, and is not created.
    let missing = tmp.path().join("missing");
    let o = bv(&missing, &["health", "--json"]);
    assert_eq!(code(&o), 2);
    assert_eq!(json(&stdout(&o))["overall_status"], "error");
    assert!(!missing.exists());
}

#[test]
fn a_malformed_file_is_reported_with_its_line_and_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    import_daily(&s);
    let before = snapshot(&s);
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "Date,Open,High,Low,Close,Volume\n2015-01-02,1,2,0.5,1.5,100\n2015-01-05,1,x2,0.5,1.5,100\n")
        .unwrap();

    let o = bv(&s, &["import", "--type", "stock", "--symbol", "NVDA", "--period", "1d", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert_one_line_error(&o);
    assert!(stderr(&o).contains(&format!("{}:3:", bad.display())), "{}", stderr(&o));
    assert_eq!(snapshot(&s), before, "the store is byte-identical");

    // The bad file is skipped, the good one still goes in.
    let good = tmp.path().join("GOOD.csv");
    std::fs::write(&good, "Date,Open,High,Low,Close,Volume\n2015-01-02,1,2,0.5,1.5,100\n").unwrap();
    let o = bv(&s, &["import", "--type", "stock", "--period", "1d", bad.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("stock:GOOD@1d: read 1, added 1"), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 file(s) imported, 1 failed"), "{}", stdout(&o));
    assert!(s.join("stocks/1d/GOOD.csv").is_file());
}

#[test]
fn invalid_rows_are_refused_or_dropped() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    let f = tmp.path().join("AAA.csv");
    std::fs::write(
        &f,
        "Date,Open,High,Low,Close,Volume\n2020-01-01,1,2,0.5,1.5,100\n2020-01-02,1,0.2,0.5,1.5,100\n2020-01-03,1,2,0.5,1.5,100\n",
    )
    .unwrap();
    let args = ["import", "--type", "stock", "--period", "1d", f.to_str().unwrap()];
    let o = bv(&s, &args);
    assert_eq!(code(&o), 1);
    assert_one_line_error(&o);
    assert!(stderr(&o).contains("high < low"), "{}", stderr(&o));
    assert!(!s.join("stocks/1d/AAA.csv").exists());

    let o = ok(bv(&s, &[&args[..], &["--on-invalid", "drop", "-q"]].concat()));
    assert!(stdout(&o).contains("read 3, added 2, replaced 0, unchanged 0, dropped 1"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("total: 1 file(s) imported, 0 failed: read 3, added 2, replaced 0, unchanged 0, dropped 1")
    );

    // --replace makes the file the whole series.
    let one = tmp.path().join("one.csv");
    std::fs::write(&one, "Date,Open,High,Low,Close,Volume\n2021-01-04,1,2,0.5,1.5,100\n").unwrap();
    ok(bv(&s, &["import", "--type", "stock", "--symbol", "AAA", "--period", "1d", "--replace", one.to_str().unwrap()]));
    let info = json(&stdout(&ok(bv(&s, &["info", "--type", "stock", "--symbol", "AAA", "--period", "1d", "--json"]))));
    assert_eq!(info["rows"], 1);
}

#[test]
fn data_dir_beats_environment_beats_config_file() {
    let tmp = TempDir::new().unwrap();
    let (from_file, from_env, from_flag) = (tmp.path().join("f"), tmp.path().join("e"), tmp.path().join("g"));
    let cfg = tmp.path().join("custom.toml");
    std::fs::write(&cfg, format!("output_directory = {:?}\nretention_days = 30\n", from_file.to_str().unwrap()))
        .unwrap();
    let nvda = data("daily/NVDA.csv");
    let run = |env: bool, flag: bool, args: &[&str]| {
        let mut c = cmd(tmp.path());
        c.arg("--config").arg(&cfg);
        if env {
            c.env("BARVAULT_OUTPUT_DIRECTORY", &from_env);
        }
        if flag {
            c.arg("--data-dir").arg(&from_flag);
        }
        ok(c.args(args).output().unwrap())
    };
    let cases = [(false, false, &from_file, "file"), (true, false, &from_env, "env"), (true, true, &from_flag, "flag")];
    for (i, (env, flag, expected_dir, source)) in cases.iter().enumerate() {
        let cfg_json = json(&stdout(&run(*env, *flag, &["config", "--json"])));
        assert_eq!(cfg_json["output_directory"]["value"], expected_dir.to_str().unwrap());
        assert_eq!(cfg_json["output_directory"]["origin"]["source"], *source);
        assert_eq!(cfg_json["retention_days"]["value"], "30");
        assert_eq!(cfg_json["backup_enabled"]["origin"]["source"], "default");
        run(*env, *flag, &["import", "--type", "stock", "--period", "1d", nvda.to_str().unwrap()]);
        assert!(expected_dir.join("stocks/1d/NVDA.csv").is_file(), "{source}");
        for (_, _, later, _) in &cases[i + 1..] {
            assert!(!later.exists(), "{source}: {} was written", later.display());
        }
    }
    let text = stdout(&run(false, true, &["config"]));
    assert!(text.contains("# command line") && text.contains("# file"), "{text}");
}

#[test]
fn exit_codes() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);

    // 2: usage errors.
    for args in [
        &["import", "--type", "stock", "x.csv"][..],
        &["verify"],
        &["import", "--type", "bond", "--period", "1d", "x.csv"],
        &["export", "--type", "stock", "--symbol", "A", "--period", "1d", "--from", "someday"],
        &["export", "--type", "stock", "--symbol", "A", "--period", "7x"],
        &["export", "--type", "stock", "--symbol", "../etc", "--period", "1d"],
        &["list", "--no-such-flag"],
    ] {
        let o = bv(&s, args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }

    // 3: an invalid configuration value, from the environment or a file.
    let o = cmd(tmp.path()).arg("--data-dir").arg(&s).arg("list").env("BARVAULT_RETENTION_DAYS", "0").output().unwrap();
    assert_eq!(code(&o), 3);
    assert_one_line_error(&o);
    assert!(stderr(&o).contains("retention_days") && stderr(&o).contains("BARVAULT_RETENTION_DAYS"));
    let bad_cfg = tmp.path().join("bad.toml");
    std::fs::write(&bad_cfg, "compression = \"rar\"\n").unwrap();
    let o = cmd(tmp.path()).arg("--config").arg(&bad_cfg).arg("config").output().unwrap();
    assert_eq!(code(&o), 3);
    assert_one_line_error(&o);
    import_daily(&s);
    let o = bv(&s, &["cleanup"]);
    assert_eq!(code(&o), 3, "there is no retention by default");
    assert!(stderr(&o).contains("retention_days"));
    let o =
        cmd(tmp.path()).arg("--data-dir").arg(&s).arg("cleanup").env("BARVAULT_RETENTION_DAYS", "30").output().unwrap();
    assert_eq!(code(&o), 3, "cleanup is disabled by default");
    assert!(stderr(&o).contains("cleanup_enabled"));
    let mut dry = cmd(tmp.path());
    dry.args(["--data-dir", s.to_str().unwrap(), "cleanup", "--dry-run"]).env("BARVAULT_RETENTION_DAYS", "30");
    assert_eq!(code(&dry.output().unwrap()), 0);

    // 1: a storage failure, one line, no backtrace; -v shows the chain on one line too.
    let o = bv(&s, &["export", "--type", "stock", "--symbol", "MSFT", "--period", "1d"]);
    assert_eq!(code(&o), 1);
    assert_one_line_error(&o);
    assert!(stderr(&o).contains("stock:MSFT@1d (") && stderr(&o).contains("): not found"), "{}", stderr(&o));
    let o = bv(&s, &["-v", "import", "--type", "stock", "--period", "1d", "/no/such/FILE.csv"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    let err_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(err_lines.len(), 1, "{}", stderr(&o));
    assert!(err_lines[0].contains("/no/such/FILE.csv"), "{}", err_lines[0]);

    // 4: another process holds the series lock.
    let series = SeriesKey::new(Instrument::stock("NVDA").unwrap(), Period::D1);
    let locks = FileLocks::new(Arc::new(RealFs), s.clone());
    let guard = locks.lock_blocking(&series, Duration::from_secs(5)).unwrap();
    let nvda = data("daily/NVDA.csv");
    let o = cmd(tmp.path())
        .arg("--data-dir")
        .arg(&s)
        .args(["import", "--type", "stock", "--period", "1d", nvda.to_str().unwrap()])
        .env("BARVAULT_LOCK_TIMEOUT_SECS", "0.2")
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_one_line_error(&o);
    assert!(stderr(&o).contains("locked by another writer"), "{}", stderr(&o));
    drop(guard);
    ok(bv(&s, &["import", "--type", "stock", "--period", "1d", nvda.to_str().unwrap()]));
}

#[test]
fn help_explains_exit_codes_and_every_flag() {
    let tmp = TempDir::new().unwrap();
    let o = ok(cmd(tmp.path()).arg("--help").output().unwrap());
    let help = stdout(&o);
    assert!(help.contains("Exit codes:") && help.contains("4  the series is locked"), "{help}");
    // verify looks again under a series lock, which may create the lock file: its help
    // says exactly that much, not that it changes nothing.
    let o = ok(cmd(tmp.path()).args(["verify", "--help"]).output().unwrap());
    let verify = stdout(&o);
    assert!(verify.contains("writes no data or metadata") && verify.contains("lock file"), "{verify}");
    for sub in
        ["import", "export", "info", "delete", "rename", "list", "verify", "recover", "health", "cleanup", "config"]
    {
        let o = ok(cmd(tmp.path()).args([sub, "--help"]).output().unwrap());
        assert!(stdout(&o).contains("Exit codes:"), "{sub}");
        // In the short help every option line has its sentence beside it.
        let o = ok(cmd(tmp.path()).args([sub, "-h"]).output().unwrap());
        let help = stdout(&o);
        for line in help.lines().filter(|l| l.trim_start().starts_with("--") || l.trim_start().starts_with('-')) {
            let has_text = line.trim().split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
            assert!(has_text, "{sub}: flag without an explanation: {line:?}");
        }
    }
}

#[test]
fn json_logs_carry_the_correlation_id() {
    let tmp = TempDir::new().unwrap();
    let s = store(&tmp);
    let nvda = data("daily/NVDA.csv");
    let o = ok(bv(
        &s,
        &[
            "-v",
            "--log-format",
            "json",
            "--correlation-id",
            "req-42",
            "import",
            "--type",
            "stock",
            "--period",
            "1d",
            nvda.to_str().unwrap(),
        ],
    ));
    let lines: Vec<serde_json::Value> = stderr(&o).lines().map(json).collect();
    assert!(!lines.is_empty());
    let persisted = lines.iter().find(|l| l["message"] == "persisted").expect("a persisted event");
    assert_eq!(persisted["span"]["correlation_id"], "req-42");
    assert_eq!(persisted["span"]["instrument"], "stock:NVDA");
    assert_eq!(persisted["span"]["period"], "1d");
    // Without -v nothing is logged on success.
    let o =
        ok(bv(&s, &["--log-format", "json", "import", "--type", "stock", "--period", "1d", nvda.to_str().unwrap()]));
    assert_eq!(stderr(&o), "");
}

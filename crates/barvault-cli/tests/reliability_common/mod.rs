//! Helpers shared by the `reliability_*` tests: running the binary, generating batches,
//! the keep-last model of a series, snapshots of a store and a small seeded PRNG.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use barvault::ports::{BarCodec, CodecInput};
use barvault::{CsvCodec, ParquetCodec};

pub const BIN: &str = env!("CARGO_BIN_EXE_barvault");

/// Whether the heavy variants run (CI sets `BARVAULT_SLOW_TESTS=1`).
pub fn slow() -> bool {
    std::env::var("BARVAULT_SLOW_TESTS").is_ok_and(|v| v == "1")
}

/// `barvault --data-dir STORE` with no inherited `BARVAULT_*` variable and a working
/// directory without a `barvault.toml`; `health` has no free-space threshold, so its exit
/// code does not depend on the test machine's disk.
pub fn cmd(store: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BARVAULT_") {
            c.env_remove(k);
        }
    }
    c.env("BARVAULT_MIN_FREE_SPACE_GB", "0");
    c.current_dir(store.parent().unwrap_or(store)).arg("--data-dir").arg(store);
    c
}

pub fn bv(store: &Path, args: &[&str]) -> Output {
    retry_exec(|| cmd(store).args(args).output())
}

/// Runs `f` (a spawn of the binary), retrying while the binary is briefly missing or busy
/// because a concurrent `cargo build` in the same target directory is replacing it.
pub fn retry_exec<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let mut tries = 0;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if tries < 100 && (e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(26)) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("cannot run {BIN}: {e}"),
        }
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn ok(o: Output) -> Output {
    assert_eq!(code(&o), 0, "stdout: {}\nstderr: {}", out(&o), err(&o));
    o
}

/// One bar as text cells: open, high, low, close, volume.
pub type Row = [f64; 5];
/// A series as the model sees it: timestamp (minutes from the epoch of the test) → values.
pub type Model = BTreeMap<i64, Row>;

/// Minute `m` after 2024-01-01 00:00:00 as the CSV timestamp text.
pub fn ts(m: i64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("date");
    (base + chrono::Duration::minutes(m)).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A valid bar whose values identify `tag` (a batch or process) and the minute.
pub fn row(tag: u32, m: i64) -> Row {
    let p = f64::from(tag) * 10.0 + 100.0 + (m % 7) as f64 * 0.25;
    [p, p + 1.5, p - 1.5, p + 0.5, (m * 10 + i64::from(tag)) as f64]
}

pub fn write_batch(path: &Path, rows: &[(i64, Row)]) {
    let mut s = String::from("timestamp,open,high,low,close,volume\n");
    for (m, r) in rows {
        s.push_str(&format!("{},{},{},{},{},{}\n", ts(*m), r[0], r[1], r[2], r[3], r[4]));
    }
    std::fs::write(path, s).expect("write batch");
}

/// Keep-last merge of `rows` into `model`.
pub fn merge_into(model: &mut Model, rows: &[(i64, Row)]) {
    for (m, r) in rows {
        model.insert(*m, *r);
    }
}

/// Parses `barvault export` CSV output into the model's shape.
pub fn parse_export(text: &str) -> Model {
    let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("date");
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("timestamp,open,high,low,close,volume"), "unexpected header {header:?}");
    let mut model = Model::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        // The store writes the UTC marker `Z` (csv_utc_marker, on by default).
        let t = chrono::NaiveDateTime::parse_from_str(cells[0].trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("bad exported timestamp {line:?}: {e}"));
        let m = (t - base).num_minutes();
        let mut r = [0.0; 5];
        for (i, v) in r.iter_mut().enumerate() {
            *v = cells[i + 1].parse().unwrap_or_else(|e| panic!("bad exported value {line:?}: {e}"));
        }
        assert!(model.insert(m, r).is_none(), "timestamp exported twice: {line}");
    }
    model
}

/// The series as `barvault export` serves it (`None` when export fails).
pub fn export(store: &Path, kind: &str, symbol: &str, period: &str) -> Result<Model, String> {
    let o = bv(store, &["export", "--type", kind, "--symbol", symbol, "--period", period]);
    if code(&o) != 0 {
        return Err(format!("export exit {}: {}", code(&o), err(&o)));
    }
    Ok(parse_export(&out(&o)))
}

/// Every regular file under `dir` (hidden ones included) with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
                files.insert(p.strip_prefix(dir).expect("prefix").join(""), b"<dir>".to_vec());
            } else {
                files.insert(p.strip_prefix(dir).expect("prefix").to_path_buf(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    files
}

/// Paths under `dir` whose file name marks a temp file of an atomic write.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".tmp.")))
        .collect()
}

/// Decodes every `.csv`, `.parquet` and `.backup` data file under `dir` with the store's
/// codecs; returns how many were checked, panicking on the first one that does not parse.
pub fn assert_every_data_file_parses(dir: &Path) -> usize {
    let mut n = 0;
    for rel in snapshot(dir).into_keys() {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with('.') || rel.starts_with(".barvault") {
            continue;
        }
        let stem = name.strip_suffix(".backup").unwrap_or(&name);
        let path = dir.join(&rel);
        let file = std::fs::File::open(&path).expect("open data file");
        let decoded = if stem.ends_with(".csv") {
            CsvCodec.decode(CodecInput::File(file), barvault::ports::Rows::All).map(|d| d.raw).map(|_| ())
        } else if stem.ends_with(".parquet") {
            ParquetCodec::default()
                .decode(CodecInput::File(file), barvault::ports::Rows::All)
                .map(|d| d.raw)
                .map(|_| ())
        } else {
            continue;
        };
        if let Err(e) = decoded {
            panic!("{} does not parse: {e}", path.display());
        }
        n += 1;
    }
    n
}

/// The issue kinds `verify --all --json` reports, and its exit code.
pub fn verify_kinds(store: &Path) -> (i32, Vec<String>, String) {
    let o = bv(store, &["verify", "--all", "--json"]);
    let text = out(&o);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("verify json: {e}: {text}"));
    let kinds = v["issues"]
        .as_array()
        .map(|a| a.iter().map(|i| i["kind"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    (code(&o), kinds, text)
}

/// A small xorshift generator: reproducible from the seed each test prints.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `BARVAULT_RELIABILITY_SEED` or the clock.
    pub fn from_env() -> Self {
        let seed = std::env::var("BARVAULT_RELIABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("BARVAULT_RELIABILITY_SEED={seed}");
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A generator for another thread, derived from this one (so one seed replays all).
    pub fn fork(&mut self) -> Self {
        Self(self.next() | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Copies the tree `from` (hidden files included) to `to`, which must not exist yet.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read tree").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|err| panic!("copy {}: {err}", src.display()));
        }
    }
}

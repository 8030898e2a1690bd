//! The binary against a store on object storage (`--data-dir s3://BUCKET/PREFIX`), on a
//! local S3 server the tests start (moto on 127.0.0.1; skipped, saying why, without one),
//! and the same commands on a local store, so both targets are held to one scenario.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use barvault_s3::testing::MotoServer;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_barvault");

fn data(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel).display().to_string()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Where the store of a run lives.
enum Target<'a> {
    Local(PathBuf),
    Bucket { server: &'a MotoServer, bucket: String, prefix: String },
}

/// A store and how to run the binary against it: no `BARVAULT_*` or `AWS_*` variables
/// inherited, a working directory of its own.
struct Store<'a> {
    target: Target<'a>,
    cwd: TempDir,
    env: Vec<(String, String)>,
}

impl<'a> Store<'a> {
    fn local() -> Self {
        let cwd = TempDir::new().unwrap();
        Store { target: Target::Local(cwd.path().join("store")), cwd, env: Vec::new() }
    }

    fn bucket(server: &'a MotoServer, bucket: &str, prefix: &str) -> Self {
        server.create_bucket(bucket);
        let target = Target::Bucket { server, bucket: bucket.into(), prefix: prefix.into() };
        Store { target, cwd: TempDir::new().unwrap(), env: server.env() }
    }

    fn address(&self) -> String {
        match &self.target {
            Target::Local(p) => p.display().to_string(),
            Target::Bucket { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("BARVAULT_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v))).current_dir(self.cwd.path()).arg("--data-dir").arg(self.address());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn client(&self) -> Option<barvault_s3::Bucket> {
        match &self.target {
            Target::Local(_) => None,
            Target::Bucket { server, bucket, prefix } => Some(server.bucket(bucket, prefix)),
        }
    }

    /// The bytes of one file of the store (`stocks/1d/NVDA.csv`).
    fn read(&self, relative: &str) -> Vec<u8> {
        match (&self.target, self.client()) {
            (Target::Local(p), _) => std::fs::read(p.join(relative)).unwrap(),
            (_, Some(b)) => block(b.read_object(relative)).unwrap_or_else(|| panic!("no object {relative}")),
            _ => unreachable!("a bucket target has a client"),
        }
    }

    /// Replaces one file of the store with `bytes`, as a stray tool would.
    fn overwrite(&self, relative: &str, bytes: &[u8]) {
        match (&self.target, self.client()) {
            (Target::Local(p), _) => std::fs::write(p.join(relative), bytes).unwrap(),
            (_, Some(b)) => block(b.upload(relative, bytes.to_vec())),
            _ => unreachable!("a bucket target has a client"),
        }
    }
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", o.status.code(), stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

/// Days from 2010-01-01 to now: a retention that keeps the daily samples' last five years.
fn retention_from_2010() -> String {
    let since = chrono::Utc::now()
        - chrono::DateTime::parse_from_rfc3339("2010-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    since.num_days().to_string()
}

/// import, list, export, info, verify, health; garbage over an object named by verify and
/// repaired by recover; cleanup dry run and for real.
fn every_command(store: &Store<'_>) {
    let o = ok(store.run(&["import", "--type", "stock", "--period", "1d", &data("daily")]));
    assert!(stdout(&o).contains("2 file(s) imported, 0 failed"), "{}", text(&o));
    let listed = stdout(&ok(store.run(&["list"])));
    assert!(listed.contains("NVDA") && listed.contains("4012") && listed.contains("csv,parquet"), "{listed}");
    let out = store.cwd.path().join("nvda.csv");
    let o = ok(store.run(&[
        "export",
        "--type",
        "stock",
        "--symbol",
        "NVDA",
        "--period",
        "1d",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(stdout(&o).contains("exported 4012 rows"), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), store.read("stocks/1d/NVDA.csv"), "export is the stored CSV");
    let info = stdout(&ok(store.run(&["info", "--type", "stock", "--symbol", "NVDA", "--period", "1d"])));
    assert!(info.contains("rows:        4012") && info.contains("stocks/1d/NVDA.parquet"), "{info}");
    assert!(stdout(&ok(store.run(&["verify", "--all", "--deep"]))).contains("clean"));
    let health = stdout(&ok(store.run(&["health"])));
    assert!(health.contains("status:      healthy") && health.contains("writable:    yes"), "{health}");

    let original = store.read("stocks/1d/NVDA.csv");
    store.overwrite("stocks/1d/NVDA.csv", b"\x00\x01garbage, not bars\n\xff");
    let o = store.run(&["verify", "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stdout(&o).contains("unparsable") && stdout(&o).contains("stocks/1d/NVDA.csv"), "{}", text(&o));
    let o = ok(store.run(&["recover", "--all"]));
    assert!(stdout(&o).contains("NVDA.csv") && stdout(&o).contains("rewrote"), "{}", text(&o));
    assert_eq!(store.read("stocks/1d/NVDA.csv"), original, "recover restored the CSV byte for byte");
    assert!(stdout(&ok(store.run(&["verify", "--all", "--deep"]))).contains("clean"));

    let days = retention_from_2010();
    let mut dry = store.command();
    dry.env("BARVAULT_RETENTION_DAYS", &days).args(["cleanup", "--dry-run"]);
    let o = ok(dry.output().unwrap());
    assert!(stdout(&o).contains("dry run"), "{}", text(&o));
    let mut cleanup = store.command();
    cleanup.env("BARVAULT_RETENTION_DAYS", &days).args(["cleanup", "--force", "--confirm-removal"]);
    let o = ok(cleanup.output().unwrap());
    assert!(stdout(&o).contains("stock:NVDA@1d: removed"), "{}", text(&o));
    let listed = stdout(&ok(store.run(&["list", "--json"])));
    let series: serde_json::Value = serde_json::from_str(&listed).unwrap();
    for s in series.as_array().unwrap() {
        assert!(s["first"].as_str().unwrap() >= "2010-01-01", "{listed}");
    }
    assert!(stdout(&ok(store.run(&["verify", "--all"]))).contains("clean"));

    let orcl = ["--type", "stock", "--symbol", "ORCL", "--period", "1d"];
    let o = ok(store.run(&[&["delete"][..], &orcl, &["--dry-run"]].concat()));
    assert!(stdout(&o).contains("would delete") && stdout(&o).contains("ORCL.csv.meta"), "{}", text(&o));
    assert!(stdout(&o).contains("stocks/1d/ORCL.parquet"), "{}", text(&o));
    ok(store.run(&[&["delete"][..], &orcl].concat()));
    let o = ok(store.run(&["rename", "--type", "stock", "--symbol", "NVDA", "--period", "1d", "--to-symbol", "NVDX"]));
    assert!(stdout(&o).contains("stock:NVDX@1d"), "{}", text(&o));
    let listed = stdout(&ok(store.run(&["list"])));
    assert!(listed.contains("NVDX") && !listed.contains("NVDA") && !listed.contains("ORCL"), "{listed}");
    assert!(stdout(&ok(store.run(&["verify", "--all", "--deep"]))).contains("clean"));
    let missing = match &store.target {
        Target::Bucket { server, bucket, .. } => Store::bucket(server, bucket, "no/such/prefix"),
        Target::Local(_) => Store::local(),
    };
    let o = missing.run(&["list"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no store at"), "{}", text(&o));
}

#[test]
fn every_command_works_on_a_local_store() {
    every_command(&Store::local());
}

#[test]
fn every_command_works_on_a_bucket() {
    let Some(server) = MotoServer::start() else { return };
    every_command(&Store::bucket(&server, "desk", "team/bars"));
}

/// `bytes` with the time a Parquet file was written (its `created_at` key-value metadata,
/// a seed field: two writes of the same bars on disk differ there too) zeroed.
fn without_write_time(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(key) = bytes.windows(10).position(|w| w == b"created_at") else { return bytes };
    let start = (key + 10..key + 26).find(|&i| {
        bytes
            .get(i..i + 27)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok())
    });
    let start = start.expect("a created_at value after its key");
    bytes[start..start + 27].fill(0);
    bytes
}

/// The objects are the files a local store holds for the same imports, byte for byte (but
/// for the time each Parquet file was written, which two writes on disk do not share).
#[test]
fn objects_are_byte_identical_to_the_local_files() {
    let Some(server) = MotoServer::start() else { return };
    let local = Store::local();
    let bucket = Store::bucket(&server, "same", "x");
    for s in [&local, &bucket] {
        ok(s.run(&["import", "--type", "stock", "--period", "1d", &data("daily")]));
    }
    for file in ["stocks/1d/NVDA.csv", "stocks/1d/NVDA.parquet", "stocks/1d/ORCL.csv", "stocks/1d/ORCL.parquet"] {
        let (a, b) = (without_write_time(local.read(file)), without_write_time(bucket.read(file)));
        assert!(a == b, "{file} differs between the disk and the bucket");
    }
}

/// A missing bucket and a bucket the client may not reach give one line naming the bucket.
#[test]
fn a_missing_bucket_is_one_line_naming_it() {
    let Some(server) = MotoServer::start() else { return };
    let store = Store {
        target: Target::Bucket { server: &server, bucket: "absent".into(), prefix: "p".into() },
        cwd: TempDir::new().unwrap(),
        env: server.env(),
    };
    for args in [&["list"][..], &["import", "--type", "stock", "--period", "1d", &data("daily/NVDA.csv")][..]] {
        let o = store.run(args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(line.contains("bucket \"absent\" does not exist"), "{}", text(&o));
    }
}

/// Bars `first..first + n` minutes, every value tagged, as a CSV file.
fn minute_bars(path: &Path, first: i64, n: i64, tag: u32) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "timestamp,open,high,low,close,volume").unwrap();
    for m in first..first + n {
        let t = chrono::DateTime::from_timestamp(1_600_000_000 + m * 60, 0).unwrap();
        let p = 100.0 + f64::from(tag) + (m % 97) as f64 / 100.0;
        writeln!(w, "{},{p},{},{},{p},{tag}", t.format("%Y-%m-%d %H:%M:%S"), p + 1.0, p - 1.0).unwrap();
    }
}

/// Eight processes import at once into one series of a bucket, each its own new minutes
/// and all of them the same overlapping minutes with their own values: every new minute is
/// stored, and the overlap holds one process's values throughout (keep-last of the one
/// that committed last), with nothing left inconsistent.
#[test]
fn eight_processes_into_one_series_of_a_bucket_give_the_keep_last_union() {
    let Some(server) = MotoServer::start() else { return };
    let store = Store::bucket(&server, "race", "desk");
    let seed = store.cwd.path().join("seed.csv");
    minute_bars(&seed, 0, 200, 0);
    ok(store.run(&["import", "--type", "stock", "--symbol", "RACE", "--period", "1m", seed.to_str().unwrap()]));
    let children: Vec<Child> = (1..=8u32)
        .map(|p| {
            let file = store.cwd.path().join(format!("batch{p}.csv"));
            // The shared minutes 100..200, then minutes of this process only.
            minute_bars(&file, 100, 100, p);
            let own = store.cwd.path().join(format!("own{p}.csv"));
            minute_bars(&own, 1000 * i64::from(p), 50, p);
            let files = [file, own];
            let mut args = vec!["import", "--type", "stock", "--symbol", "RACE", "--period", "1m"];
            let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            args.extend(paths.iter().map(String::as_str));
            store.spawn(&args)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(Instant::now() < deadline, "the imports took more than 5 minutes");
        ok(o);
    }
    let out = store.cwd.path().join("race.csv");
    ok(store.run(&["export", "--type", "stock", "--symbol", "RACE", "--period", "1m", "-o", out.to_str().unwrap()]));
    let exported = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Vec<&str>> = exported.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 200 + 8 * 50, "every process's minutes are stored once");
    let overlap_tags: std::collections::BTreeSet<&str> = rows[100..200].iter().map(|r| r[5]).collect();
    assert_eq!(overlap_tags.len(), 1, "the overlap mixes the values of several processes: {overlap_tags:?}");
    assert!(rows[..100].iter().all(|r| r[5].parse::<f64>() == Ok(0.0)), "the seed's own minutes were changed");
    assert!(stdout(&ok(store.run(&["verify", "--all", "--deep"]))).contains("clean"));
}

/// A server stopped in the middle of a multipart upload (and the writer killed while it is):
/// the previous version stays readable, verify names the pending upload, recover aborts it.
#[test]
fn a_server_stopped_during_a_multipart_upload_leaves_the_old_version_and_recover_aborts_it() {
    let Some(server) = MotoServer::start() else { return };
    let store = Store::bucket(&server, "stopped", "desk");
    // Pending uploads count as left behind at once, and requests give up quickly.
    let config = store.cwd.path().join("barvault.toml");
    std::fs::write(
        &config,
        "[object_store]\nstale_upload_secs = 0\ntimeout = \"5 seconds\"\nmax_retries = 1\nretry_timeout_secs = 5\n",
    )
    .unwrap();
    let client = store.client().unwrap();
    let small = store.cwd.path().join("small.csv");
    minute_bars(&small, 0, 1000, 1);
    ok(store.run(&["import", "--type", "stock", "--symbol", "BIG", "--period", "1m", small.to_str().unwrap()]));
    let before = store.read("stocks/1m/BIG.csv");
    let big = store.cwd.path().join("big.csv");
    // About 40 MB of CSV: five parts.
    minute_bars(&big, 0, 700_000, 2);
    let mut caught = false;
    for _ in 0..3 {
        let mut writer =
            store.spawn(&["import", "--type", "stock", "--symbol", "BIG", "--period", "1m", big.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && writer.try_wait().unwrap().is_none() {
            if !block(client.pending()).is_empty() {
                server.pause();
                caught = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if caught {
            std::thread::sleep(Duration::from_millis(500));
            writer.kill().unwrap();
            let _ = writer.wait();
            server.resume();
            break;
        }
        let o = writer.wait_with_output().unwrap();
        // The upload finished before it could be caught: put the small version back.
        ok(o);
        ok(store.run(&[
            "import",
            "--replace",
            "--type",
            "stock",
            "--symbol",
            "BIG",
            "--period",
            "1m",
            small.to_str().unwrap(),
        ]));
    }
    assert!(caught, "no multipart upload was ever seen pending");
    assert_eq!(store.read("stocks/1m/BIG.csv"), before, "the previous version is what the bucket holds");
    let out = store.cwd.path().join("back.csv");
    ok(store.run(&["export", "--type", "stock", "--symbol", "BIG", "--period", "1m", "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1001, "the old version reads whole");
    let o = store.run(&["verify", "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stdout(&o).contains("stale_temp") && stdout(&o).contains("uploadId="), "{}", text(&o));
    let o = ok(store.run(&["recover", "--all"]));
    assert!(stdout(&o).contains("uploadId="), "{}", text(&o));
    assert!(block(client.pending()).is_empty(), "a pending upload is left after recover");
    assert!(stdout(&ok(store.run(&["verify", "--all"]))).contains("clean"));
}

/// `config` shows every object storage option and where it came from, secrets masked.
#[test]
fn config_shows_the_object_store_options_with_their_origins_and_secrets_masked() {
    let cwd = TempDir::new().unwrap();
    std::fs::write(
        cwd.path().join("barvault.toml"),
        "output_directory = \"s3://desk/bars\"\n[object_store]\nregion = \"eu-west-1\"\nsecret_access_key = \"file-secret-value-xyz\"\n",
    )
    .unwrap();
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BARVAULT_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    let o = ok(c
        .current_dir(cwd.path())
        .env("AWS_REGION", "us-east-2")
        .env("AWS_ACCESS_KEY_ID", "AKID")
        .arg("config")
        .output()
        .unwrap());
    let out = stdout(&o);
    assert!(out.contains("output_directory = s3://desk/bars"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("object_store.region = us-east-2") && l.contains("environment AWS_REGION")),
        "{out}"
    );
    let secret = out.lines().find(|l| l.starts_with("object_store.secret_access_key")).unwrap_or_default();
    assert!(secret.contains("****yz") && secret.contains("barvault.toml"), "{out}");
    assert!(!out.contains("file-secret-value"), "{out}");
}

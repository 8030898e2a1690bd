//! Multi-process tests: children are this binary re-executed with `BARVAULT_FS_CHILD`
//! naming their role. SIGKILL at random moments must never leave a series that does not
//! parse or that holds anything but the previous or the new version; two processes
//! merging into one series must lose no batch; a killed lock holder must block no one.
//! `BARVAULT_SLOW_TESTS=1` raises the kill count from 50 to 500.

mod common;

use barvault_ports::BarStoreExt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use barvault_domain::{Bars, MergePolicy, Period, SeriesKey, merge};
use barvault_fs::{FileLocks, FileStore, FsHousekeeping, RealFs};
use barvault_ports::{
    BarCodec, BarStore, CodecInput, EntryKind, Housekeeping, LoadOptions, OpContext, PutOptions, Revision, Rows,
    StorageError,
};
use common::{TextCodec, bars_with, stock};

const ROLE: &str = "BARVAULT_FS_CHILD";
const DIR: &str = "BARVAULT_FS_CHILD_DIR";
const PROC: &str = "BARVAULT_FS_CHILD_PROC";
/// Wall-clock start (ms since the epoch) for writers, so both start merging together.
const START_AT: &str = "BARVAULT_FS_CHILD_START_AT";
/// Each crash-test batch spans this many timestamps.
const WIDTH: i64 = 64;
const BATCHES: u32 = 50;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(ROLE).as_deref() {
        Ok("crash") => crash_child(),
        Ok("writer") => writer_child(),
        Ok("holder") => holder_child(),
        Ok(other) => panic!("unknown child role {other:?}"),
        Err(_) => {
            let slow = std::env::var("BARVAULT_SLOW_TESTS").is_ok_and(|v| v == "1");
            run("sigkill_never_leaves_a_mixed_or_broken_file", || crash_loop(if slow { 500 } else { 50 }));
            run("two_processes_merging_lose_no_batch", two_processes_merge);
            run("a_killed_lock_holder_blocks_no_one", killed_holder);
        }
    }
}

fn run(name: &str, test: impl FnOnce()) {
    let start = Instant::now();
    test();
    println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime")
}

fn spawn(role: &str, dir: &Path, proc_id: u32) -> Child {
    spawn_at(role, dir, proc_id, epoch_ms() + 400)
}

fn spawn_at(role: &str, dir: &Path, proc_id: u32, start_at: u64) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE, role)
        .env(DIR, dir)
        .env(PROC, proc_id.to_string())
        .env(START_AT, start_at.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("child dir"))
}

fn crash_series() -> SeriesKey {
    stock("CRASH", Period::D1)
}

/// The keep-last merge of crash batches 1..=k: batch j holds timestamps [j, j+WIDTH)
/// with close j, so timestamp t ends with close min(t, k).
fn crash_state(k: i64) -> Bars {
    let ts: Vec<i64> = (1..k + WIDTH).collect();
    bars_with(&ts, |t| t.min(k) as f64)
}

/// The version a stored crash series holds (checked exactly against `crash_state`).
fn version_of(bars: &Bars) -> i64 {
    bars.last_timestamp().map_or(0, |last| last - WIDTH + 1)
}

/// Read → keep-last merge → write against the version read, again on a conflict; the
/// rows the committed merge found stored.
async fn merge_into(store: &FileStore<TextCodec>, s: &SeriesKey, batch: &Bars, ctx: &OpContext) -> usize {
    loop {
        let loaded = store.load(s, &LoadOptions::default(), ctx).await.expect("load");
        let (stored, options) = match loaded {
            Some(l) => (l.bars.clone().unwrap_or_default(), PutOptions::update(l.info.version)),
            None => (Bars::empty(), PutOptions::create()),
        };
        let (next, _) = merge(&stored, batch, MergePolicy::KeepLast).expect("merge");
        match store.persist(s, &Revision::whole(next), &options, ctx).await {
            Ok(_) => return stored.len(),
            Err(StorageError::VersionConflict { .. }) => continue,
            Err(e) => panic!("persist: {e}"),
        }
    }
}

fn crash_child() {
    let rt = runtime();
    let store = FileStore::new(child_dir(), TextCodec).expect("store");
    let s = crash_series();
    let ctx = OpContext::new();
    rt.block_on(async {
        let stored = store.load(&s, &LoadOptions::default(), &ctx).await.expect("load");
        let mut k = stored.map(|l| l.into_bars()).as_ref().map_or(0, version_of);
        println!("ready {k}");
        loop {
            k += 1;
            let batch = bars_with(&(k..k + WIDTH).collect::<Vec<_>>(), |_| k as f64);
            merge_into(&store, &s, &batch, &ctx).await;
            println!("committed {k}");
        }
    })
}

/// xorshift64*, seeded from the clock: kill moments differ between runs.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Loads the crash series straight from disk (no store state) and checks it is exactly
/// some version; returns that version.
fn check_crash_file(path: &Path, what: &str) -> Option<i64> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{what} cannot be read: {e}"),
    };
    let raw = match TextCodec.decode(CodecInput::Bytes(&bytes), Rows::All) {
        Ok(d) => d.raw,
        Err(e) => panic!("{what} does not parse: {e}"),
    };
    let (bars, folded) = raw.into_bars(MergePolicy::KeepLast).expect("stored bars");
    assert_eq!(folded, 0, "{what} has repeated timestamps");
    let k = version_of(&bars);
    assert!(k >= 1, "{what} holds no version");
    assert!(bars == crash_state(k), "{what} is not exactly version {k}");
    Some(k)
}

fn crash_loop(kills: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(dir.path(), TextCodec).expect("store");
    let s = crash_series();
    let (path, backup) = (store.path_of(&s), store.backup_path_of(&s));
    let mut rng = Rng::new();
    let mut version = 0;
    let mut mid_write_kills = 0;
    for round in 0..kills {
        let mut child = spawn("crash", dir.path(), 0);
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), format!("ready {version}"), "round {round}: child saw another version");
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in out.lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("committed ").and_then(|k| k.parse::<i64>().ok()) {
                    last = Some(k);
                }
            }
            last
        });
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let reported = reader.join().expect("reader").unwrap_or(version);
        let what = format!("round {round}: data file");
        let now = check_crash_file(&path, &what).unwrap_or(0);
        // The last reported commit, or the one in flight whose rename beat the report.
        assert!(now == reported || now == reported + 1, "round {round}: file at v{now}, last commit v{reported}");
        assert!(now >= version, "round {round}: went back from v{version} to v{now}");
        if now == reported + 1 {
            mid_write_kills += 1;
        }
        if let Some(b) = check_crash_file(&backup, &format!("round {round}: backup")) {
            assert!(b <= now, "round {round}: backup v{b} newer than data v{now}");
        }
        version = now;
    }
    assert!(version >= 1, "no child ever committed in {kills} rounds");
    let housekeeping = FsHousekeeping::new(dir.path(), std::sync::Arc::new(RealFs), Duration::from_secs(1));
    let survey = runtime().block_on(housekeeping.survey(&OpContext::new())).expect("survey");
    let leftovers: Vec<_> = survey.of(EntryKind::Leftover).collect();
    println!(
        "  {kills} kills, final version {version}, {mid_write_kills} killed after rename before report, {} stale temp files",
        leftovers.len()
    );
}

/// Batch `b` of process `p`: ten shared timestamps (the overlap keep-last decides) plus
/// one timestamp no other batch has.
fn writer_batch(p: u32, b: u32) -> Bars {
    let mut ts: Vec<i64> = (0..10).collect();
    ts.push(1_000 + i64::from(p) * 1_000 + i64::from(b));
    bars_with(&ts, |t| f64::from(p) * 10_000.0 + f64::from(b) * 10.0 + t as f64 * 0.001)
}

fn writer_child() {
    let p: u32 = std::env::var(PROC).expect("proc").parse().expect("proc id");
    let rt = runtime();
    let store = FileStore::new(child_dir(), TextCodec).expect("store");
    let s = stock("SHARED", Period::M1);
    let ctx = OpContext::new();
    let start_at: u64 = std::env::var(START_AT).expect("start").parse().expect("start ms");
    std::thread::sleep(Duration::from_millis(start_at.saturating_sub(epoch_ms())));
    rt.block_on(async {
        for b in 0..BATCHES {
            let existing = merge_into(&store, &s, &writer_batch(p, b), &ctx).await;
            println!("{p} {b} {existing}");
        }
    });
}

fn two_processes_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start_at = epoch_ms() + 400;
    let children: Vec<Child> = (0..2).map(|p| spawn_at("writer", dir.path(), p, start_at)).collect();
    let mut commits: Vec<(usize, u32, u32)> = Vec::new();
    for mut child in children {
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        for line in out.lines() {
            let line = line.expect("line");
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "bad child line {line:?}");
            commits.push((f[2].parse().expect("rows"), f[0].parse().expect("p"), f[1].parse().expect("b")));
        }
        assert!(child.wait().expect("wait").success(), "writer failed");
    }
    assert_eq!(commits.len(), 2 * BATCHES as usize);
    commits.sort();
    assert!(commits.windows(2).all(|w| w[0].0 < w[1].0), "existing_rows not strictly increasing: {commits:?}");
    let mut expected = Bars::empty();
    for &(existing, p, b) in &commits {
        assert_eq!(existing, expected.len(), "batch {p}/{b} saw {existing} rows, commit order says {}", expected.len());
        expected = merge(&expected, &writer_batch(p, b), MergePolicy::KeepLast).expect("merge").0;
    }
    let store = FileStore::new(dir.path(), TextCodec).expect("store");
    let stored = runtime()
        .block_on(store.load(&stock("SHARED", Period::M1), &LoadOptions::default(), &OpContext::new()))
        .expect("load")
        .map(|l| l.into_bars());
    assert!(stored == Some(expected), "final file differs from the merge of all batches in commit order");
    let interleaved = commits.windows(2).filter(|w| w[0].1 != w[1].1).count();
    println!("  100 commits, {interleaved} switches between processes");
}

fn holder_child() {
    let locks = FileLocks::new(std::sync::Arc::new(RealFs), child_dir());
    let _guard = locks.lock_blocking(&stock("HOLD", Period::D1), Duration::from_secs(5)).expect("lock");
    println!("locked");
    std::thread::sleep(Duration::from_secs(120));
}

fn killed_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn("holder", dir.path(), 0);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("line");
    assert_eq!(line.trim(), "locked");
    let s = stock("HOLD", Period::D1);
    let bars = bars_with(&[1, 2, 3], |t| t as f64);
    let rt = runtime();
    let short = FileStore::builder(dir.path(), TextCodec).lock_timeout(Duration::from_millis(150)).build().unwrap();
    let revision = Revision::whole(bars);
    let held = rt.block_on(short.persist(&s, &revision, &PutOptions::overwrite(), &OpContext::new()));
    assert!(matches!(held, Err(StorageError::Locked { .. })), "lock of a live holder not honoured: {held:?}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let patient = FileStore::builder(dir.path(), TextCodec).lock_timeout(Duration::from_secs(10)).build().unwrap();
    let start = Instant::now();
    let r = rt.block_on(patient.persist(&s, &revision, &PutOptions::overwrite(), &OpContext::new())).expect("persist");
    assert_eq!(r.rows, 3);
    assert!(start.elapsed() < Duration::from_secs(2), "waited {:?} for a dead holder", start.elapsed());
}
